"""Detection inside the runtime: anomaly scores and dairy rules, per reading.

Runs on the processing thread, between parsing and the store: each reading
gets its per-metric anomaly scores (kept with the reading in
``attributes["anomaly"]``, so they are stored and synced with it), then the
dairy rules turn readings into alerts. Learnt state (detector baselines, rule
and alert state) is saved to the buffer periodically and at stop, and
restored at start, so a restart does not relearn for days.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.clock import Clock
from agent.config.model import Config, DetectConfig
from agent.config.rules import RulesConfig
from agent.detect.farm_events import FarmEvent
from agent.detect.rules.base import Finding
from agent.detect.rules.body_condition import BcsLossParams, BcsLossRule, MilkParams, MilkRule
from agent.detect.rules.engine import RuleEngine
from agent.errors import InvalidPayload
from agent.records.types import (
    Alert,
    BodyCondition,
    Event,
    MilkCheck,
    Reading,
    Stamp,
    stable_id,
)

if TYPE_CHECKING:
    from agent.detect.anomaly.engine import AnomalyEngine
    from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

ANOMALY_PREFIX = "anomaly:"
RULES_KEY = "rules"
BCS_KEY = "bcs_trend"
_SEP = "\x1f"  # between sensor id and metric in a state key; never in a valid id


class Detection:
    def __init__(
        self,
        config: DetectConfig,
        clock: Clock,
        calibration: Callable[[str], float | None] | None = None,
        anomaly_scores: bool = True,
        value_range: Callable[[str, str, str], tuple[float, float] | None] | None = None,
    ) -> None:
        """``value_range(firmware, sensor_id, metric)``: a stream's valid range,
        for the anomaly detectors that bin values (asked once per stream)."""
        self.config = config
        # The daemon stores each reading with its anomaly scores; a replay only
        # wants the alerts, which the scores do not feed.
        self.anomaly_scores = anomaly_scores
        self.clock = clock
        # Made now for the daemon (before its threads start); a replay without
        # scores never needs it, nor numpy, which it imports.
        self._anomaly: AnomalyEngine | None = self._new_anomaly() if anomaly_scores else None
        self._value_range = value_range if config.anomaly_detector != "default" else None
        self.rules = RuleEngine(config, clock, calibration=calibration)
        self.bcs_loss = BcsLossRule(BcsLossParams())
        self.milk = MilkRule(MilkParams())
        self._skip = frozenset(config.anomaly_skip)
        self._score_faults: set[tuple[str, str]] = set()  # logged once per stream
        # The processing thread scores; the event loop ticks and saves.
        self._lock = threading.Lock()

    def _new_anomaly(self) -> AnomalyEngine:
        from agent.detect.anomaly.engine import AnomalyEngine

        return AnomalyEngine(detector=self.config.anomaly_detector)

    @property
    def anomaly(self) -> AnomalyEngine:
        """The anomaly detectors (made on first use when not scoring)."""
        if self._anomaly is None:
            self._anomaly = self._new_anomaly()
        return self._anomaly

    def on_reading(self, reading: Reading) -> list[Alert]:
        if not self.config.enabled:
            return []
        if not self.anomaly_scores:
            with self._lock:
                return self.rules.on_reading(reading)
        ts = reading.source_ts if reading.source_ts is not None else reading.stamp.wall_ts
        ranged = self._value_range
        engine = self.anomaly
        sid = reading.sensor_id
        with self._lock:
            scores = {}
            for metric, value in reading.values.items():
                if metric in self._skip:
                    continue
                key = (sid, metric)
                # The range is asked once, when the stream is new.
                rng = ranged(reading.firmware, sid, metric) if ranged and key not in engine else None
                try:
                    scores[metric] = round(engine.score(key, ts, value, rng), 4)
                except Exception:  # a detector fault must never cost the reading
                    if key not in self._score_faults:
                        self._score_faults.add(key)
                        log.exception("anomaly score failed for %s/%s; stored without it",
                                      sid, metric)
            reading.attributes["anomaly"] = scores
            return self.rules.on_reading(reading)

    def on_rejected(self, source: tuple[str, str] | None, err: InvalidPayload) -> list[Alert]:
        """A message ingest refused (quarantined), from ``source`` = (firmware, sensor
        id): the sensor checks count impossible values (``sensor.range``) and note
        that the sensor is alive. On the arrival clock, moved back as late as this
        sensor's readings come."""
        if not self.config.enabled or source is None or not self.rules.cfg.enabled:
            return []
        firmware, sensor_id = source
        with self._lock:
            rules = self.rules
            arrival = max(rules.last_t, self.clock.monotonic() + rules.offset)
            out: list[Alert] = []
            for f in rules.sensors.on_rejected(sensor_id, firmware, err.reason, err.detail,
                                               arrival):
                out += rules.alerts.process(f)
            return out

    def on_farm_event(self, event: FarmEvent) -> list[Alert]:
        """A farm event (from the farm events topic or a replay's ``--farm`` file),
        dated when it happened: on the wall clock, when that is synced."""
        if not self.config.enabled:
            return []
        late = self.clock.wall() - event.ts if self.clock.synced() else 0.0
        with self._lock:
            return self.rules.on_farm_event(event, late_s=late)

    def reconfigure_rules(self, cfg: RulesConfig) -> None:
        """New rule thresholds (a runtime profile); learnt state and open alerts stay."""
        with self._lock:
            self.rules.reconfigure(cfg)

    def rules_config(self) -> RulesConfig:
        """The rule thresholds in effect (the active profile's)."""
        with self._lock:
            return self.rules.cfg

    def configure_vision(self, bcs: BcsLossParams, milk: MilkParams) -> None:
        """The camera rules' thresholds (from the vision section of the config)."""
        with self._lock:
            self.bcs_loss.p, self.milk.p = bcs, milk

    def on_vision(self, record: BodyCondition | MilkCheck) -> list[Alert]:
        """A body condition or milk check from the vision worker: the per-cow
        trend and the milk rule, through the same alert lifecycle as readings."""
        if not self.config.enabled or not self.rules.cfg.enabled:
            return []
        with self._lock:
            # Engine time: the rules' clock, never behind the latest reading's.
            at = max(self.rules.last_t, self.clock.monotonic() + self.rules.offset)
            finding: Finding | None
            if isinstance(record, BodyCondition):
                if record.animal_id is None:
                    return []  # a trend needs the cow
                finding = self.bcs_loss.on_score(record.animal_id, record.stamp.wall_ts,
                                                 record.bcs, record.quality, at)
            else:
                finding = self.milk.on_check(record.result, record.confidence, at,
                                             animal=record.animal_id, quarter=record.quarter,
                                             camera=record.camera_id)
            return self.rules.alerts.process(finding) if finding is not None else []

    def tick(self, now_mono: float) -> list[Alert]:
        if not self.config.enabled:
            return []
        with self._lock:
            return self.rules.tick(now_mono)

    def feedback(self, alert_record_id: str, verdict: str) -> None:
        with self._lock:
            self.rules.feedback(alert_record_id, verdict)

    def precision(self) -> dict[str, float | None]:
        with self._lock:
            return self.rules.precision()

    def snooze(self, alert_id: str, seconds: float) -> bool:
        with self._lock:
            return self.rules.snooze(alert_id, seconds)

    def acknowledge(self, alert_id: str) -> bool:
        with self._lock:
            return self.rules.acknowledge(alert_id)

    def open_alerts(self) -> list[dict[str, Any]]:
        """Open alerts with their live state and any technician verdict (status page)."""
        with self._lock:
            verdicts = self.rules.alerts.verdicts
            return [{**a, "verdict": verdicts.get(a["alert_id"], (None, None))[1]}
                    for a in self.rules.open_alerts()]

    # -- persistence ---------------------------------------------------------
    def restore(self, store_path: Path) -> None:
        from agent.store.state import load_states  # the daemon's; a replay has no store

        states = load_states(store_path)
        anomaly = [
            (tuple(key[len(ANOMALY_PREFIX):].split(_SEP, 1)), state)
            for key, state in states.items()
            if key.startswith(ANOMALY_PREFIX) and _SEP in key
        ]
        with self._lock:
            loaded = self.anomaly.restore(anomaly)  # type: ignore[arg-type]
            self._restore_rules(states)
        if states:
            log.info("restored %d anomaly baselines and %s rule state", loaded,
                     "the" if RULES_KEY in states else "no")

    def _restore_rules(self, states: dict[str, Any]) -> None:
        if RULES_KEY in states:
            try:
                self.rules.from_state(states[RULES_KEY])
            except (KeyError, TypeError, ValueError) as err:
                log.warning("rule state could not be restored (%s); relearning", err)
        if BCS_KEY in states:
            try:
                self.bcs_loss.from_state(states[BCS_KEY])
            except (KeyError, TypeError, ValueError) as err:
                log.warning("body condition trends could not be restored (%s)", err)

    def rule_states(self) -> dict[str, Any]:
        """The rules' state (alert lifecycle included) and the body condition
        trends', without the anomaly baselines: what a detection worker sends
        the daemon now and then, for a fallback fresher than the last save."""
        with self._lock:
            states: dict[str, Any] = {RULES_KEY: self.rules.to_state()}
            if self.bcs_loss.cows:
                states[BCS_KEY] = self.bcs_loss.to_state()
        return states

    def restore_rule_states(self, states: dict[str, Any]) -> None:
        """Put back what :meth:`rule_states` gave (after :meth:`restore`)."""
        with self._lock:
            self._restore_rules(states)

    def save(self, writer: StoreWriter, boot: str) -> None:
        """Queue the changed state on the writer (non-blocking)."""
        from agent.store.state import save_states

        states = self.states()
        mono_ns = self.clock.monotonic_ns()
        writer.call(lambda conn: save_states(conn, states, mono_ns, boot))

    def states(self) -> dict[str, Any]:
        """The state to save: the anomaly baselines changed since the last call,
        the rules' and the body condition trends'."""
        with self._lock:
            states: dict[str, Any] = {
                f"{ANOMALY_PREFIX}{sensor}{_SEP}{metric}": state
                for (sensor, metric), state in self.anomaly.take_dirty().items()
            }
            states[RULES_KEY] = self.rules.to_state()
            if self.bcs_loss.cows:
                states[BCS_KEY] = self.bcs_loss.to_state()
        return states


def farm_events_topic(config: Config) -> str:
    """The topic the farm system publishes its events to."""
    return (config.detect.rules.farm_events_topic
            or f"{config.ingest.topic_prefix or 'barn'}/farm/events")


def farm_event_record(event: FarmEvent, stamp: Stamp) -> Event:
    """The stored (and synced) record of a farm event. Its id comes from the event,
    so a message the broker delivers twice is stored once."""
    data = event.to_dict()
    rid = stable_id("farm_event", data["ts"], event.type, event.animal or "",
                    repr(sorted(event.detail.items())))
    what = f"{event.type} {event.animal}" if event.animal else event.type
    return Event(record_id=rid, event="farm_event", detail=f"{what} at {data['ts']}",
                 stamp=stamp, data=data)


def calibration_check(
    due_by_sensor: dict[str, float], clock: Clock
) -> Callable[[str], float | None]:
    """Days a sensor's calibration is overdue, or None; only with a synced clock."""

    def overdue_days(sensor_id: str) -> float | None:
        due = due_by_sensor.get(sensor_id)
        if due is None or not clock.synced():
            return None
        late = clock.wall() - due
        return late / 86400.0 if late > 0 else None

    return overdue_days
