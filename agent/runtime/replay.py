"""Replay recorded MQTT traffic through the daemon's ingest, detection and alert code.

The clock follows the data: every message's ``ts`` sets the wall and the
monotonic time the Ingestor stamps the reading with, and the periodic rule
tick (silence, escalation) runs on the same clock, once every ``tick_s`` of
data time, before the first message at or after it. Nothing waits on a real
clock, so a month of a barn replays as fast as the CPU parses and judges it.

Input lines (``MESSAGES.jsonl``), one MQTT message each::

    {"ts": "2024-06-01T10:00:00Z", "topic": "barn/climate/c1", "payload": "{...}"}
    {"ts": 1717236000.0, "topic": "barn/collar/k7", "payload_b64": "Q0wB..."}

``ts`` is when the gateway received the message (ISO 8601, or epoch seconds).
Readings whose device sends its own timestamp are judged on that clock by the
rule engine (see ``agent.detect.rules.engine``), so a backlog delivered in a
burst is judged at the times the sensor measured it.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config.model import Config
from agent.detect.farm_events import (
    FARM_EVENT_TYPES,
    FarmEvent,
    FarmEventError,
    event_ts,
    iso,
    parse_event,
    parse_lines,
)
from agent.errors import ConfigError, InvalidPayload
from agent.ingest.pipeline import Ingestor
from agent.records import Alert
from agent.runtime.detection import Detection, calibration_check

BOOT = "replay"
DEFAULT_TICK_S = 60.0
__all__ = ["FARM_EVENT_TYPES", "FarmEvent", "Replayer", "load_farm_events", "replay_lines"]


class BadLine(ValueError):
    """An input line that is not a message: not JSON, no topic, no time, bad base64."""


class ReplayClock:
    """The data's clock: wall and monotonic time are the current message's ``ts``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return int(self.now * 1e9)

    def synced(self) -> bool:
        return True


def parse_ts(value: Any) -> float:
    """Epoch seconds from ISO 8601 text (``Z`` or an offset; naive means UTC) or a
    number: the farm events' reading of a time, as a BadLine when it is none."""
    try:
        return event_ts(value)
    except FarmEventError as err:
        raise BadLine(str(err)) from None


# A line is decoded by the C scanner alone when it is one JSON object and nothing
# but a line end after it (the recorded form); json.loads, which also checks the
# encoding and skips whitespace first, costs four times as much. Anything else
# goes through json.loads, which gives the same object or the error to report.
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_fromiso = datetime.fromisoformat
_OPEN = (b"{", "{")  # how a recorded line starts: not blank


def _json_line(line: str | bytes) -> Any:
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        if text[:1] == "{":
            obj, end = _scan(text, 0)
            if end == len(text) or text[end:] in ("\n", "\r\n"):
                return obj
    except (ValueError, StopIteration):
        pass  # json.loads says what is wrong
    return json.loads(line)


def _line_ts(value: Any) -> float:
    """parse_ts, with the recorded form (ISO 8601 in UTC, ``Z``) read directly."""
    if type(value) is str and value[-1:] == "Z":
        try:
            ts = _fromiso(value).timestamp()
        except ValueError:
            pass
        else:
            if ts >= 0:
                return ts
    return parse_ts(value)


def decode_line(line: str | bytes) -> tuple[float, str, bytes]:
    """(ts, topic, payload bytes) of one input line; BadLine says what is wrong."""
    try:
        obj = _json_line(line)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadLine(f"not JSON ({err})") from None
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    ts = _line_ts(obj.get("ts"))
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic:
        raise BadLine("topic is missing or not text")
    if "payload_b64" in obj:
        raw = obj["payload_b64"]
        if not isinstance(raw, str):
            raise BadLine("payload_b64 is not text")
        try:  # b64decode(raw, validate=True) without its wrappers
            payload = binascii.a2b_base64(raw, strict_mode=True)
        except (binascii.Error, ValueError):
            raise BadLine("payload_b64 is not valid base64") from None
    elif "payload" in obj:
        text = obj["payload"]
        if isinstance(text, str):
            payload = text.encode("utf-8", "surrogatepass")
        elif isinstance(text, dict | list):  # a JSON payload written as an object
            payload = json.dumps(text, separators=(",", ":")).encode()
        else:
            raise BadLine("payload is not text")
    else:
        raise BadLine("no payload or payload_b64")
    return ts, topic, payload


def load_farm_events(path: Path) -> list[FarmEvent]:
    """Farm events from a file in the format of ``agent.detect.farm_events``: JSON
    lines, one event each (a JSON array of the same objects is read too). Sorted
    by time; a bad event is a ConfigError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {why}") from err
    try:
        if text.lstrip().startswith("["):
            try:
                items = json.loads(text)
            except ValueError as err:
                raise ConfigError(f"{path}: not a JSON array: {err}") from None
            events = []
            for n, item in enumerate(items, 1):
                try:
                    events.append(parse_event(item))
                except FarmEventError as err:
                    raise FarmEventError(f"{path}: event {n}: {err}") from None
            return sorted(events)
        return parse_lines(text.splitlines(), source=str(path))
    except FarmEventError as err:
        raise ConfigError(str(err)) from None


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    messages: int = 0
    readings: int = 0
    bad_lines: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    alerts_raised: int = 0
    farm_events: int = 0
    first_ts: float | None = None
    last_ts: float | None = None


class Replayer:
    """One replay: feed messages in file order, collect the alerts they raise."""

    def __init__(self, config: Config, farm_events: Iterable[FarmEvent] = (),
                 tick_s: float = DEFAULT_TICK_S, anomaly_scores: bool = False) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.clock = ReplayClock()
        self.ingestor = Ingestor(config.gateway.firmware_dir, config.gateway.calibration_dir,
                                 config.ingest, self.clock, BOOT)
        due = {c.sensor_id: c.due_ts for c in self.ingestor.calibrations.entries()}
        # Anomaly scores decorate stored readings and raise nothing: off unless asked.
        self.detection = Detection(config.detect, self.clock,
                                   calibration=calibration_check(due, self.clock),
                                   anomaly_scores=anomaly_scores)
        self.tick_s = tick_s
        self.next_tick: float | None = None
        self.events = sorted(farm_events)
        self._event_i = 0
        self.stats = ReplayStats()

    def feed(self, ts: float, topic: str, payload: bytes) -> list[Alert]:
        """One message received at ``ts``: ticks due before it, farm events, then it."""
        st = self.stats
        st.messages += 1
        if st.first_ts is None:
            st.first_ts = ts
        out = self.advance(ts)
        try:
            reading = self.ingestor.parse(topic, payload)
        except InvalidPayload as err:
            st.quarantined[err.reason] = st.quarantined.get(err.reason, 0) + 1
            return out + self.detection.on_rejected(self.ingestor.source_of(topic), err)
        st.readings += 1
        out += self.detection.on_reading(reading)
        return out

    def advance(self, ts: float) -> list[Alert]:
        """Move the data clock to ``ts`` (never back), ticking on the way."""
        out: list[Alert] = []
        clock = self.clock
        ts = max(ts, clock.now)  # a message out of order: the clock does not go back
        if self.next_tick is None:
            self.next_tick = math.floor(ts / self.tick_s) * self.tick_s + self.tick_s
        while self.next_tick <= ts:
            clock.now = self.next_tick
            out += self._events_until(clock.now)
            out += self.detection.tick(clock.now)
            self.next_tick += self.tick_s
        clock.now = ts
        if self._event_i < len(self.events):
            out += self._events_until(ts)
        self.stats.last_ts = ts
        return out

    def finish(self) -> list[Alert]:
        """The tick at the end of the data (alerts still due then)."""
        if self.next_tick is None:
            return []
        self.clock.now = max(self.clock.now, self.next_tick)
        return self.detection.tick(self.clock.now)

    def _events_until(self, ts: float) -> list[Alert]:
        """Farm events up to the data clock, at the time each happened."""
        out: list[Alert] = []
        events = self.events
        while self._event_i < len(events) and events[self._event_i].ts <= ts:
            ev = events[self._event_i]
            self._event_i += 1
            self.stats.farm_events += 1
            out += self.detection.on_farm_event(ev)
        return out


def subject_of(alert: Alert) -> str:
    """The device, the cow (``cow/quarter`` when the rule names one quarter) or the
    climate node, as the firmware reported it."""
    subject = str(alert.details.get("subject", ""))
    _, _, name = subject.partition(":")
    name = name or subject
    if subject.startswith("cow:"):
        name = alert.animal_id or name
        quarters = alert.details.get("quarters")
        if isinstance(quarters, list) and len(quarters) == 1:
            name = f"{name}/{quarters[0]}"
    return name


def alert_line(alert: Alert) -> dict[str, Any]:
    """The output record of one raised alert."""
    detail: dict[str, Any] = {"message": alert.message}
    for key in ("signals", "phase", "profile", "quarters", "thi", "episode_start_s"):
        if key in alert.details:
            detail[key] = alert.details[key]
    if alert.sensor_id:
        detail["sensor_id"] = alert.sensor_id
    if "episode_start_s" in detail:
        detail["episode_start"] = iso(max(0.0, float(detail.pop("episode_start_s"))))
    return {
        "ts": iso(alert.stamp.mono_ns / 1e9),  # the data clock: mono = wall = data time
        "rule": alert.rule,
        "subject": subject_of(alert),
        "severity": alert.severity,
        "alert_id": alert.details.get("alert_id", alert.record_id),
        "detail": detail,
    }


def replay_lines(replayer: Replayer, lines: Iterable[bytes | str],
                 on_bad: Callable[[int, str], None] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 progress_every: int = 8192) -> Iterator[dict[str, Any]]:
    """Output records for input lines; ``on_bad(line_number, reason)`` for each bad
    one, ``on_progress(lines)`` every ``progress_every`` lines."""
    st = replayer.stats
    for number, line in enumerate(lines, 1):
        st.lines = number
        if on_progress is not None and number % progress_every == 0:
            on_progress(number)
        if line[:1] not in _OPEN and not line.strip():  # a blank line
            continue
        try:
            ts, topic, payload = decode_line(line)
        except BadLine as err:
            st.bad_lines += 1
            if on_bad is not None:
                on_bad(number, str(err))
            continue
        for alert in replayer.feed(ts, topic, payload):
            if alert.state == "raised":
                st.alerts_raised += 1
                yield alert_line(alert)
    for alert in replayer.finish():
        if alert.state == "raised":
            st.alerts_raised += 1
            yield alert_line(alert)
