"""Farm events: what the herd management system records, as input to the rules.

One format, used for a file (``dairy-edge replay --farm FILE``) and for the MQTT
topic the farm system publishes to (``detect.rules.farm_events_topic``): one
JSON object per event, one event per line in a file, one per message on the
topic::

    {"ts": "2024-06-03T06:10:00Z", "type": "calving", "animal": "1042"}
    {"ts": "2024-06-03T09:00:00Z", "type": "pen_move", "animal": "1042", "pen": "fresh"}
    {"ts": 1717405200, "type": "milking", "tank": "tank-1", "duration_s": 5400}

``ts`` is when it happened (ISO 8601, ``Z`` or an offset, naive means UTC; or
epoch seconds), ``type`` one of FARM_EVENT_TYPES, ``animal`` the cow's id as the
collars and milk meters report it (required for the cow events, text or a
number). Any other key is kept in ``detail``. Blank lines and lines starting
with ``#`` are skipped in a file.

``FarmContext`` keeps the latest event of each kind per cow, and answers what
the rules ask: is this cow in a quiet spell after a calving or a move, is she
dry, did the herd system record a heat or an insemination near now.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Cow events need ``animal``; the rest are about the parlour or the tank.
COW_EVENTS = ("calving", "dry_off", "pen_move", "insemination", "heat")
HERD_EVENTS = ("milking", "milking_schedule", "collection")
FARM_EVENT_TYPES = COW_EVENTS + HERD_EVENTS
# Older names still read: "move" was the replay loader's name for a pen move.
ALIASES = {"move": "pen_move", "group_move": "pen_move", "dryoff": "dry_off"}
DAY_S = 86400.0
CYCLE_S = 21 * DAY_S  # an open cow returns to heat about this long after the last
MILKING_S = 2 * 3600.0  # a recorded milking that does not say how long it took
MAX_MILKING_S = 8 * 3600.0


class FarmEventError(ValueError):
    """An event that cannot be read: says what is wrong (the caller adds where)."""


@dataclass(slots=True, order=True)
class FarmEvent:
    """Something the herd system recorded: a calving, a move, a milking..."""

    ts: float
    type: str = field(compare=False)
    animal: str | None = field(default=None, compare=False)
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": iso(self.ts), "type": self.type}
        if self.animal is not None:
            out["animal"] = self.animal
        out.update(self.detail)
        return out


def iso(ts: float) -> str:
    stamp = datetime.fromtimestamp(ts, UTC)
    text = stamp.isoformat(timespec="milliseconds" if stamp.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def event_ts(value: Any) -> float:
    """Epoch seconds from ISO 8601 text or a number; FarmEventError otherwise."""
    if isinstance(value, bool) or value is None:
        raise FarmEventError("ts is missing or not a time")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            try:
                ts = float(value)
            except ValueError:
                raise FarmEventError(
                    f"ts {value[:40]!r} is not ISO 8601 or epoch seconds") from None
        else:
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            ts = stamp.timestamp()
    else:
        raise FarmEventError("ts is not a time")
    if not math.isfinite(ts) or ts < 0:
        raise FarmEventError("ts is not a finite time after 1970")
    return ts


def parse_event(obj: Any) -> FarmEvent:
    """One event from its decoded JSON object."""
    if not isinstance(obj, dict):
        raise FarmEventError("an event is a JSON object")
    kind = obj.get("type")
    kind = ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in FARM_EVENT_TYPES:
        raise FarmEventError(f"type {obj.get('type')!r} is not one of "
                             f"{', '.join(FARM_EVENT_TYPES)}")
    ts = event_ts(obj.get("ts"))
    animal = obj.get("animal")
    if isinstance(animal, bool) or not (animal is None or isinstance(animal, str | int)):
        raise FarmEventError("animal is not text or a number")
    animal = None if animal is None else str(animal).strip() or None
    if kind in COW_EVENTS and animal is None:
        raise FarmEventError(f"a {kind} event needs the animal")
    detail = {k: v for k, v in obj.items() if k not in ("ts", "type", "animal")}
    return FarmEvent(ts, str(kind), animal, detail)


def parse_payload(payload: bytes | str) -> FarmEvent:
    """One event from an MQTT payload (one JSON object, UTF-8)."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise FarmEventError(f"not JSON ({err})") from None
    return parse_event(obj)


def parse_lines(lines: Iterable[str], source: str = "<farm events>") -> list[FarmEvent]:
    """Events from JSON lines, sorted by time; an error names ``source:line``."""
    out: list[FarmEvent] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            out.append(parse_payload(text))
        except FarmEventError as err:
            raise FarmEventError(f"{source}:{number}: {err}") from None
    return sorted(out)


@dataclass(slots=True)
class FarmContext:
    """The latest farm event of each kind per cow (engine time), for the rules."""

    last: dict[str, dict[str, float]] = field(default_factory=dict)
    # Herd-level, for the cooling rule: the latest milking (its start and length)
    # and collection per tank ("" = any tank), and the milking schedule as given
    # ({"times": ["05:00", "17:00"], "tank": ...}; times of day in UTC).
    milkings: dict[str, float] = field(default_factory=dict)
    collections: dict[str, float] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    milking_s: dict[str, float] = field(default_factory=dict)

    def note(self, event: FarmEvent, t: float) -> None:
        if event.animal is not None and event.type in COW_EVENTS:
            cow = self.last.setdefault(event.animal, {})
            cow[event.type] = max(t, cow.get(event.type, -math.inf))
        elif event.type == "milking":
            tank = str(event.detail.get("tank", ""))
            self.milkings[tank] = t
            self.milking_s[tank] = _seconds(event.detail.get("duration_s"), MILKING_S)
        elif event.type == "collection":
            self.collections[str(event.detail.get("tank", ""))] = t
        elif event.type == "milking_schedule":
            self.schedule = dict(event.detail)

    def knows_milkings(self, tank: str, planned: bool = False) -> bool:
        """Does the herd system tell this tank's milkings: a schedule, or (unless
        ``planned``) recorded milkings?"""
        scheduled = bool(self._schedule_times()) and self._schedule_for(tank)
        return scheduled or (not planned and (tank in self.milkings or "" in self.milkings))

    def milking_near(self, tank: str, lo: float, hi: float, tol_s: float,
                     planned: bool = False, wall_shift: float | None = 0.0) -> bool:
        """Did a scheduled (or, unless ``planned``, recorded) milking of this tank
        run at some time in [lo - tol_s, hi + tol_s]? A milking may be recorded
        only once it is over: ``planned`` asks only what was known ahead. The
        schedule's times of day are UTC: ``wall_shift`` turns these (engine)
        times into wall time; None (the clock is not set) leaves it out."""
        for key in () if planned else (tank, ""):
            start = self.milkings.get(key)
            if start is not None and (start - tol_s <= hi
                                      and lo - tol_s <= start + self.milking_s.get(key, 0.0)):
                return True
        if not self._schedule_for(tank) or wall_shift is None:
            return False
        lo, hi = lo + wall_shift, hi + wall_shift
        for at in self._schedule_times():  # seconds into the day (UTC)
            # the first scheduled milking still running at lo - tol_s (MILKING_S long)
            start = math.ceil((lo - tol_s - MILKING_S - at) / DAY_S) * DAY_S + at
            if start <= hi + tol_s:
                return True
        return False

    def collected_since(self, tank: str, t0: float) -> float | None:
        """When this tank (or any) was last collected, if after ``t0``."""
        at = max(self.collections.get(tank, -math.inf), self.collections.get("", -math.inf))
        return at if at > t0 else None

    def _schedule_for(self, tank: str) -> bool:
        named = self.schedule.get("tank")
        return named is None or str(named) == tank

    def _schedule_times(self) -> list[float]:
        times = self.schedule.get("times")
        if isinstance(times, str):
            times = [times]
        if not isinstance(times, list | tuple):
            return []  # not a list of HH:MM: ignored (the event is kept as it came)
        out = []
        for text in times:
            try:
                hh, mm = str(text).split(":")[:2]
                out.append((int(hh) % 24) * 3600.0 + (int(mm) % 60) * 60.0)
            except (ValueError, OverflowError):
                continue
        return out

    def since(self, animal: str, kind: str, t: float) -> float | None:
        """Seconds since this cow's latest ``kind`` event (None: none recorded)."""
        at = self.last.get(animal, {}).get(kind)
        return None if at is None else t - at

    def within(self, animal: str, kind: str, t: float, span_s: float) -> bool:
        """A ``kind`` event for this cow in the last ``span_s`` (not in the future)."""
        ago = self.since(animal, kind, t)
        return ago is not None and 0.0 <= ago < span_s

    def dry(self, animal: str) -> bool:
        """Dried off and not calved since: her milk rules have nothing to judge."""
        cow = self.last.get(animal, {})
        dried = cow.get("dry_off")
        return dried is not None and dried > cow.get("calving", -math.inf)

    def heat_note(self, animal: str, t: float) -> dict[str, Any]:
        """What the herd system says about a heat alert for this cow at ``t``: a heat
        it recorded within a day confirms it; an insemination dates the expected
        return (about 21 days later). Never suppresses a heat."""
        out: dict[str, Any] = {}
        heat = self.since(animal, "heat", t)
        if heat is not None and abs(heat) <= DAY_S:
            out["confirmed_by_herd_system"] = True
        ins = self.since(animal, "insemination", t)
        if ins is not None and ins >= 0:
            days = ins / DAY_S
            out["days_since_insemination"] = round(days, 1)
            out["expected_return"] = abs(ins - CYCLE_S) <= 3 * DAY_S
        return out

    def to_state(self) -> dict[str, Any]:
        return {"last": self.last, "milkings": self.milkings,
                "collections": self.collections, "schedule": self.schedule,
                "milking_s": self.milking_s}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FarmContext:
        return cls({str(k): {str(kk): float(vv) for kk, vv in v.items()}
                    for k, v in state.get("last", {}).items()},
                   dict(state.get("milkings", {})), dict(state.get("collections", {})),
                   dict(state.get("schedule", {})), dict(state.get("milking_s", {})))


def _seconds(value: Any, default: float) -> float:
    """A milking's length from the event; the default when it is missing, odd or
    longer than any milking (milliseconds sent as seconds, say)."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return out if math.isfinite(out) and 0 < out <= MAX_MILKING_S else default
