"""Sensor health (dairy-rules.md section 10): sensor alerts, not animal alerts.

Checks, each its own rule (and alert track) per sensor:

- ``sensor.range``: impossible values: outside ``plausibility.limits``, or
  refused at ingest as out of range / not a number (``on_rejected``: the
  message was quarantined). ``range_count`` in a row raise it; it clears after
  ``range_clear_s`` without one. Fewer in a row, then a good value: a spike.
- ``sensor.spike``: a value that leaves the sensor's level by far more than it
  ever changes between samples and comes back within a few samples
  (``sensor_health.Metric``; a collar's activity: far above its own running
  high, ``spike_ratio``), or an impossible jump that comes back. Stays open
  ``spike_hold_s`` after the last one, so a flapping sensor raises one alert.
- ``sensor.erratic``: impossible jumps (faster than ``max_rate_per_s``) that do
  not come back, ``jump_count`` within ``jump_window_s``.
- ``sensor.stuck``: unchanged for longer than this key's longest normal flat
  stretch (a tank level between milkings is legitimately flat for hours);
  a climate node also when its neighbours keep changing.
- ``sensor.dropout``: silent (on the gateway's clock) for longer than its own
  reporting rhythm allows (``sensor_health.Rhythm``), from ``tick``; not while
  the gateway hears nobody at all (its uplink is down: a backlog follows).
- ``sensor.drift``: a climate node that has moved away from its neighbours'
  usual relation to it (``sensor_health.DriftGroup``).
- ``sensor.calibration``: overdue, asked of a callable.

Time: the value checks run on the sensor's clock (``t``, the engine's sensor
time), silence on arrival time. Values that fail range or jump are withheld
from the other rules, and a faulty sensor (stuck, drifting, out of range,
erratic) feeds no rule at all.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import PlausibilityConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal
from agent.detect.rules.sensor_health import DriftGroup, Metric, Rhythm

STUCK, JUMP, RANGE, DROPOUT, CALIBRATION, SPIKE, DRIFT = (
    "sensor.stuck", "sensor.erratic", "sensor.range", "sensor.dropout", "sensor.calibration",
    "sensor.spike", "sensor.drift",
)
RULES = (STUCK, JUMP, RANGE, DROPOUT, CALIBRATION, SPIKE, DRIFT)
ROLES = ("climate", "bulk_tank", "milk_meter", "collar", "water", "rfid")
# Ingest reasons that mean the device sent an impossible value (not a broken message).
VALUE_FAULTS = ("out_of_range", "non_finite")
CLEARS = 8  # clear findings sent after a raise (policies may need several to clear)
EMPTY_TANK_L = 50.0  # at or below: the tank thermometer reads air or wash water
NEVER = -1e18

# Days overdue (> 0: overdue), or None when the sensor has no calibration record.
CalibrationCheck = Callable[[str], float | None]
_Plan = tuple[Any, float, float | None, float | None, bool, float | None, float, float, bool,
              float | None, float]


@dataclass(slots=True)
class _Key:
    """The impossible-jump check of one value key."""

    good: float | None = None
    good_t: float = 0.0
    candidate: float | None = None
    good_src: float | None = None  # the device's own timestamp of ``good``, if it sends one


@dataclass(slots=True)
class _Sensor:
    role: str
    last_arr: float  # arrival (engine time) of the latest message
    last_t: float  # sensor time of the latest reading
    rhythm: Rhythm
    animal_id: str | None = None
    group: str | None = None
    late: float = 0.0  # arrival minus sensor time, latest reading
    keys: dict[str, _Key] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    jumps: list[float] = field(default_factory=list)
    range_streak: int = 0
    range_t: float = NEVER
    range_open: bool = False
    range_count: int = 0
    range_note: str = ""
    spike_t: float = NEVER
    spike_count: int = 0
    spike_note: str = ""
    stuck: list[str] = field(default_factory=list)
    drift: dict[str, float] = field(default_factory=dict)  # key -> departure / limit
    drift_open: bool = False
    drift_note: str = ""
    # Per key: the only other node it is compared with (a barn of two: which of
    # the two drifts is not known; alerted, but its readings still drive the
    # other rules), None when it has several neighbours.
    drift_partners: dict[str, str | None] = field(default_factory=dict)
    drift_alone: bool = False  # some key drifts from several neighbours: faulty
    calib_t: float = NEVER
    deadline: float = 0.0
    # The silence after which it counts as dropped out, as of its latest message:
    # the rhythm changes only with its next reading, which uses this before
    # learning from its gap (None: not known; not saved).
    timeout: float | None = None
    # ``deadline`` and ``timeout`` not yet computed for the latest message (see
    # ``PlausibilityRule._deadline``; not saved: a saved state has them computed).
    stale: bool = False
    queued: bool = False
    active: dict[str, int] = field(default_factory=dict)  # rule -> clears left to send

    _SIMPLE = ("role", "last_arr", "last_t", "animal_id", "group", "late", "jumps",
               "range_streak", "range_t", "range_open", "range_count", "range_note", "spike_t",
               "spike_count", "spike_note", "stuck", "drift", "drift_open", "drift_note",
               "drift_partners", "drift_alone", "calib_t", "deadline", "active")

    def to_state(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self._SIMPLE}
        # Field order is Rhythm's, so an older (shorter) list still loads.
        out["rhythm"] = self.rhythm.to_state()
        out["keys"] = {k: [v.good, v.good_t, v.candidate, v.good_src]
                       for k, v in self.keys.items()}
        out["metrics"] = {k: m.to_state() for k, m in self.metrics.items()}
        return out

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Sensor:
        s = cls(data["role"], data["last_arr"], data["last_t"], Rhythm(*data["rhythm"]))
        for name in cls._SIMPLE:
            if name in data:
                setattr(s, name, data[name])
        s.keys = {k: _Key(*v) for k, v in data.get("keys", {}).items()}
        s.metrics = {k: Metric.from_state(v) for k, v in data.get("metrics", {}).items()}
        s.queued = False
        return s


def _at_end(v: float, end: str, lo: float, hi: float, resolution: float) -> bool:
    """``v`` at the ``end`` ("lo" or "hi") of the range lo..hi: exactly at the bottom,
    or within 0.1 % of the span of the top (a humidity sensor reads 99.9-100 %)."""
    if end == "lo":
        return v - lo <= resolution
    return hi - v <= max(resolution, 1e-3 * (hi - lo))


class PlausibilityRule:
    name = "sensor"

    def __init__(self, config: PlausibilityConfig,
                 calibration: CalibrationCheck | None = None,
                 mapping: RoleMapping | None = None) -> None:
        self.cfg = config
        self.health = config.health
        self.calibration = calibration
        self.mapping = mapping or RoleMapping()
        self._firmware = {fw: role for role in ROLES for fw in getattr(self.mapping, role)}
        self._group_of = {sid: name for name, sids in self.health.drift_groups.items()
                          for sid in sids}
        self.sensors: dict[str, _Sensor] = {}
        self.groups: dict[str, DriftGroup] = {}
        self._heap: list[tuple[float, str]] = []  # (silent-after time, sensor), lazy
        self._silent: dict[str, float | None] = {}  # past its deadline: since when confirmed
        self._heard_t = NEVER  # latest arrival from any sensor
        self._calib_t = NEVER
        # Per value key, what the checks need of the config, looked up once:
        # (limits, resolution, max rate, spike min step, stuck key, drift min abs,
        # low limit, high limit, plain: only its range is checked).
        self._plans: dict[str, _Plan] = {}
        self._plans_of: tuple[PlausibilityConfig, Any] | None = None

    def reconfigure(self, config: PlausibilityConfig) -> None:
        """New limits and health settings (a runtime profile); learnt state stays."""
        for s in self.sensors.values():  # deadlines as of each latest message's config
            if s.stale:
                self._materialise(s)
        self.cfg = config
        self.health = config.health
        self._group_of = {sid: name for name, sids in self.health.drift_groups.items()
                          for sid in sids}

    # -- queries -------------------------------------------------------------
    def faulty(self, sensor_id: str) -> bool:
        """Stuck, drifting, out of range or erratic: its data must not drive other rules."""
        s = self.sensors.get(sensor_id)
        if s is None:
            return False
        return bool(s.stuck or (s.drift_open and s.drift_alone) or s.range_open
                    or s.range_streak >= self.cfg.range_count
                    or len(s.jumps) >= self.cfg.jump_count)

    def timeout(self, sensor_id: str) -> float | None:
        """Seconds of silence after which this sensor counts as dropped out."""
        s = self.sensors.get(sensor_id)
        return None if s is None else self._timeout(s)

    # -- readings ------------------------------------------------------------
    def check(self, reading: Any, role: str, arrival: float,
              t: float | None = None) -> tuple[list[Finding], set[str]]:
        """Findings for this sensor, and the value keys to withhold from other rules.

        ``arrival``: engine time the gateway got it; ``t``: the sensor's time of
        the measurement (the engine's ``sensor_time``; ``arrival`` when omitted).
        """
        cfg, health = self.cfg, self.health
        if self._plans_of is None or self._plans_of[0] is not cfg \
                or self._plans_of[1] is not health:
            self._new_config()
        plans = self._plans
        if t is None:
            t = arrival
        sid = reading.sensor_id
        s = self.sensors.get(sid)
        if s is None:
            s = self._new(sid, role, arrival, t)
        else:
            rhythm = s.rhythm
            timeout = s.timeout
            if timeout is None:
                floor = health.dropout_floor_s
                if t - rhythm.last_t <= floor:
                    # ``Rhythm.add`` caps the gap at the timeout, which is never
                    # below the floor: a gap within it is not capped, whatever the
                    # timeout (tests/test_sensor_checks_lazy.py holds both to it).
                    timeout = floor
                elif s.stale:
                    timeout = self._materialise(s)
                else:
                    timeout = self._timeout(s)
            rhythm.add(t, timeout, health.dropout_memory_s)
            s.role = role
        if reading.animal_id is not None:
            s.animal_id = reading.animal_id
        s.late = arrival - t
        s.last_t = max(s.last_t, t)
        self._heard(sid, s, arrival)
        out: list[Finding] = []
        if DROPOUT in s.active:
            self._emit(out, s, sid, DROPOUT, "clear", arrival, f"Sensor {sid} reporting", [])

        values = reading.values
        m = self.mapping
        wash = values.get(m.wash_key)
        level = values.get(m.level_key)
        judge_spikes = not ((wash is not None and wash >= 0.5)
                            or (level is not None and level <= EMPTY_TANK_L))
        group = self._group(s) if s.group is not None else None
        bad: set[str] = set()
        out_of_range: list[Signal] = []
        spiked: list[Signal] = []
        stuck: list[str] = []
        metrics = s.metrics
        for key, value in values.items():
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            (lim, resolution, max_rate, min_step, in_stuck, drift_abs, lo, hi, plain,
             ratio, ratio_min) = plan
            if plain and lo <= value <= hi and key not in metrics:
                continue  # in range, and no other check looks at this key
            if group is None:
                drift_abs = None
            if lim is not None:
                if not lim.lo <= value <= lim.hi:
                    bad.add(key)
                    out_of_range.append(Signal(
                        key, value, limit=lim.hi if value > lim.hi else lim.lo,
                        note=f"possible range {lim.lo:g}..{lim.hi:g}"))
                    continue
                if max_rate is not None:
                    size = self._jump(s, key, value, t, reading.source_ts, max_rate,
                                      resolution)
                    if size is None:
                        bad.add(key)
                    elif size:
                        spiked.append(Signal(key, value + size, baseline=value,
                                             note="an impossible jump that came back"))
            metric = s.metrics.get(key)
            if metric is None:
                if min_step is None and ratio is None and not in_stuck and drift_abs is None:
                    continue
                metric = s.metrics[key] = Metric(first_t=t)
            if ratio is not None:
                status, size, start = metric.spike_ratio(value, t, health, ratio, ratio_min,
                                                         s.rhythm.median, judge_spikes)
            else:
                status, size, start = metric.spike(value, t, health, min_step or 0.0,
                                                   resolution,
                                                   judge_spikes and min_step is not None)
            if status == "spike":
                if not any(sig.name == key for sig in spiked):
                    spiked.append(Signal(key, value + size, baseline=value,
                                         note=f"away for {(t - start) / 60:.0f} min"))
                s.jumps = [j for j in s.jumps if j < start]  # the spike, not erratic
            if status != "normal" or key in bad:
                continue
            if in_stuck:
                changes = n_nb = None
                if group is not None:
                    changes, n_nb = group.neighbour_changes(sid, key)
                before = metric.changes
                cap = lim.stuck_after_s if lim is not None else None
                min_s = health.stuck_min_s_by_key.get(key)
                end = health.stuck_rest_ends.get(key)
                anchor = metric.anchor if metric.anchor is not None else value
                resting = (end is not None and lim is not None
                           and _at_end(anchor, end, lim.lo, lim.hi, resolution))
                if resting:
                    # Its flat stretch rests at the end of its scale (fog at 100 % RH,
                    # no water flowing at night): not stuck, unless for far longer,
                    # and not the key's normal flat stretch either.
                    ceiling = health.stuck_ceiling_s
                    min_s = max(min_s or health.stuck_min_s, ceiling)
                    cap = None if cap is None else max(cap, ceiling)
                    learnt = (metric.longest, metric.longest_t, metric.longest_n)
                if metric.flat(value, t, health, resolution, cap, changes, n_nb or 0,
                               s.rhythm.median, min_s):
                    stuck.append(key)
                if resting and metric.anchor != anchor:  # the resting stretch ended
                    metric.longest, metric.longest_t, metric.longest_n = learnt
                if group is not None and metric.changes != before:
                    group.note_change(sid, key, metric.changes)
            if drift_abs is not None and group is not None and key not in s.stuck:
                score = group.update(sid, key, value, t, health, drift_abs)
                if score is not None:
                    s.drift[key] = score.ratio
                    s.drift_partners[key] = score.partner
                    if score.ratio > 0.5:
                        to = (f"{score.pairs} neighbours" if score.partner is None
                              else f"{score.partner}, the only other node")
                        s.drift_note = (f"{key} {score.departure:+.2f} from its usual "
                                        f"difference to {to} (limit {score.limit:.2f})")

        # -- impossible values: persistent -> range, transient -> spike
        if out_of_range:
            s.range_streak += 1
            s.range_t = t
            s.range_count += 1
            s.range_note = "; ".join(sig.describe() for sig in out_of_range)
            if s.range_streak >= cfg.range_count:
                s.range_open = True
        elif s.range_streak:
            if not s.range_open:
                spiked.append(Signal("impossible values", float(s.range_streak),
                                     note=f"then back: {s.range_note}"))
            s.range_streak = 0
        if s.range_open:
            if s.range_streak or t - s.range_t < health.range_clear_s:
                self._emit(out, s, sid, RANGE, "raise", t,
                           f"Sensor {sid} reports impossible values",
                           [Signal("impossible values", float(s.range_count),
                                   note=s.range_note)])
            else:
                s.range_open, s.range_count = False, 0
        if not s.range_open and RANGE in s.active:
            self._emit(out, s, sid, RANGE, "clear", t, f"Sensor {sid} values possible again", [])

        # -- spikes
        if spiked:
            s.spike_t = t
            s.spike_count += 1
            s.spike_note = "; ".join(sig.describe() for sig in spiked)
            self._emit(out, s, sid, SPIKE, "raise", t, f"Sensor {sid} spiked",
                       [Signal("spikes", float(s.spike_count), note=s.spike_note)])
        elif SPIKE in s.active and t - s.spike_t >= health.spike_hold_s:
            s.spike_count = 0
            self._emit(out, s, sid, SPIKE, "clear", t,
                       f"Sensor {sid}: no spike for {health.spike_hold_s / 60:.0f} min", [])

        # -- erratic: impossible jumps that stay
        jumps = s.jumps
        while jumps and jumps[0] < t - cfg.jump_window_s:
            jumps.pop(0)
        if jumps or JUMP in s.active:
            self._emit(out, s, sid, JUMP,
                       "raise" if len(jumps) >= cfg.jump_count else "hold" if jumps else "clear",
                       t, f"Sensor {sid} is erratic: {len(jumps)} impossible jumps in "
                       f"{cfg.jump_window_s / 60:.0f} min", [])

        # -- stuck
        if stuck:
            if group is not None and not s.stuck:
                group.forget(sid)
            s.stuck = stuck
            self._emit(out, s, sid, STUCK, "raise", t, f"Sensor {sid} is stuck (flat-lined)",
                       [Signal(k, values[k], note=f"unchanged for "
                               f"{s.metrics[k].flat_for(t) / 3600:.1f} h") for k in stuck])
        elif s.stuck or STUCK in s.active:
            s.stuck = []
            self._emit(out, s, sid, STUCK, "clear", t, f"Sensor {sid} changing again", [])

        # -- drift
        if s.drift:
            worst_key = max(s.drift, key=s.drift.__getitem__)
            worst = s.drift[worst_key]
            partner = s.drift_partners.get(worst_key)
            # Faulty (out of use) only where a key drifts from several neighbours.
            s.drift_alone = any(r > 0.5 and s.drift_partners.get(k) is None
                                for k, r in s.drift.items())
            status = "raise" if worst > 1.0 else "clear" if worst < 0.5 else "hold"
            if status == "raise" or (s.drift_open and status == "hold"):
                s.drift_open = True
                summary = (f"Sensor {sid} drifts away from its neighbours"
                           if partner is None else
                           f"Sensors {sid} and {partner} drift apart: one of the "
                           f"two drifts (check both against a reference thermometer)")
                self._emit(out, s, sid, DRIFT, status, t, summary,
                           [Signal("drift", worst, limit=1.0, note=s.drift_note)])
            elif status == "clear" and s.drift_open:
                s.drift_open = False
                self._emit(out, s, sid, DRIFT, "clear", t,
                           f"Sensor {sid} agrees with its neighbours again", [])
        return out, bad

    def on_rejected(self, sensor_id: str, firmware: str, reason: str, detail: str,
                    arrival: float) -> list[Finding]:
        """A message of this sensor that ingest refused (and quarantined).

        The sensor is alive (no dropout). An impossible value (``VALUE_FAULTS``)
        counts towards ``sensor.range`` like one outside ``limits``; its time
        is estimated on the sensor's clock from how late its readings come.
        """
        s = self.sensors.get(sensor_id)
        if s is None:
            s = self._new(sensor_id, self._firmware.get(firmware, "other"), arrival, arrival)
        t = max(s.last_t, arrival - s.late)
        self._heard(sensor_id, s, arrival)
        out: list[Finding] = []
        if DROPOUT in s.active:
            self._emit(out, s, sensor_id, DROPOUT, "clear", arrival,
                       f"Sensor {sensor_id} reporting", [])
        if reason not in VALUE_FAULTS:
            return out
        s.range_streak += 1
        s.range_t = t
        s.range_count += 1
        s.range_note = f"refused at ingest: {reason}: {detail}"[:200]
        if s.range_streak >= self.cfg.range_count:
            s.range_open = True
        if s.range_open:
            self._emit(out, s, sensor_id, RANGE, "raise", t,
                       f"Sensor {sensor_id} reports impossible values",
                       [Signal("impossible values", float(s.range_count), note=s.range_note)])
        return out

    # -- time ------------------------------------------------------------------
    def due(self, t: float) -> bool:
        """Whether ``tick(t)`` can find anything: a sensor past its silence deadline
        (or being confirmed silent), or a calibration check due."""
        if self._silent or t - self._calib_t >= self.cfg.calibration_check_s:
            return True
        heap = self._heap
        while heap and heap[0][0] < t:
            deadline, sid = heap[0]
            s = self.sensors.get(sid)
            if s is None:
                heapq.heappop(heap)
            elif self._deadline(s) > deadline:  # heard from since: move it on
                heapq.heapreplace(heap, (s.deadline, sid))
            else:
                return True
        return False

    def tick(self, t: float) -> list[Finding]:
        health = self.health
        out: list[Finding] = []
        heap = self._heap
        while heap and heap[0][0] < t:
            deadline, sid = heapq.heappop(heap)
            s = self.sensors.get(sid)
            if s is None:
                continue
            if self._deadline(s) > deadline:
                heapq.heappush(heap, (s.deadline, sid))
                continue
            s.queued = False
            self._silent.setdefault(sid, None)
        several = len(self.sensors) > 1
        for sid, since in list(self._silent.items()):
            s = self.sensors[sid]
            if self._deadline(s) >= t or DROPOUT in s.active:
                del self._silent[sid]
                continue
            if several and self._heard_t <= s.deadline:
                self._silent[sid] = None  # nobody heard since: the gateway is deaf, not it
                continue
            if since is None:
                since = self._silent[sid] = t
            if several and t - since < health.dropout_confirm_s:
                continue  # a backlog may still be arriving
            del self._silent[sid]
            timeout = self._timeout(s)
            silent = t - s.last_arr
            self._emit(out, s, sid, DROPOUT, "raise", t, f"Sensor {sid} silent", [
                Signal("silence", silent / 60, limit=timeout / 60, unit=" min",
                       note=f"usually every {s.rhythm.median / 60:.1f} min"
                       if s.rhythm.median else "")])
        if t - self._calib_t >= self.cfg.calibration_check_s:
            self._calib_t = t
            if self.calibration is not None:
                for sid, s in self.sensors.items():
                    s.calib_t = t
                    overdue = self.calibration(sid)
                    if overdue is not None:
                        out.append(Finding(
                            rule=CALIBRATION, subject=f"sensor:{sid}",
                            status="raise" if overdue > 0 else "clear", at=t, severity="info",
                            summary=f"Sensor {sid} calibration overdue",
                            signals=[Signal("days overdue", overdue, limit=0.0, unit=" d")],
                            sensor_id=sid, animal_id=s.animal_id))
        return out

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        for s in self.sensors.values():
            if s.stale:
                self._materialise(s)
        return {"sensors": {k: v.to_state() for k, v in self.sensors.items()},
                "groups": {k: g.to_state() for k, g in self.groups.items()},
                "heard_t": self._heard_t, "calib_t": self._calib_t}

    def from_state(self, state: dict[str, Any]) -> None:
        if "sensors" not in state or not isinstance(state.get("groups"), dict):
            return  # the layout before the learnt checks: start learning afresh
        self.sensors = {k: _Sensor.from_state(v) for k, v in state["sensors"].items()}
        self.groups = {k: DriftGroup.from_state(v) for k, v in state["groups"].items()}
        self._heard_t = state.get("heard_t", NEVER)
        self._calib_t = state.get("calib_t", NEVER)
        self._heap, self._silent = [], {}
        for sid, s in self.sensors.items():
            s.queued = True
            self._heap.append((s.deadline, sid))
        heapq.heapify(self._heap)

    # -- internals -------------------------------------------------------------
    def _new(self, sid: str, role: str, arrival: float, t: float) -> _Sensor:
        s = self.sensors[sid] = _Sensor(role, arrival, t, Rhythm(t, t))
        if role == "climate":
            s.group = self._group_of.get(sid, "")
        return s

    def _group(self, s: _Sensor) -> DriftGroup:
        assert s.group is not None
        g = self.groups.get(s.group)
        if g is None:
            g = self.groups[s.group] = DriftGroup()
        return g

    def _plan(self, key: str) -> _Plan:
        cfg, health = self.cfg, self.health
        lim = cfg.limits.get(key)
        max_rate = lim.max_rate_per_s if lim is not None else None
        min_step = health.spike_min_step.get(key)
        ratio = health.spike_ratio.get(key)
        in_stuck = key in health.stuck_keys
        drift_abs = health.drift_min_abs.get(key)
        plain = (lim is not None and max_rate is None and min_step is None and not in_stuck
                 and drift_abs is None and ratio is None)
        plan = (lim, lim.resolution if lim is not None else 0.0, max_rate, min_step, in_stuck,
                drift_abs, lim.lo if lim is not None else 0.0,
                lim.hi if lim is not None else 0.0, plain, ratio,
                health.spike_ratio_min.get(key, 0.0))
        self._plans[key] = plan
        return plan

    def _new_config(self) -> None:
        """The config changed (or is new): look the keys up again, and every
        sensor's dropout timeout is computed afresh."""
        self._plans_of = (self.cfg, self.health)
        self._plans = {}
        for s in self.sensors.values():
            if s.stale:
                self._materialise(s)
            s.timeout = None

    def _timeout(self, s: _Sensor) -> float:
        inactivity = self.cfg.inactivity_s
        default = inactivity.get(s.role, inactivity.get("other", 3600.0))
        return s.rhythm.timeout(self.health, default)

    def _heard(self, sid: str, s: _Sensor, arrival: float) -> None:
        """A message from ``sid`` arrived: its silence deadline moves on. The
        deadline (``arrival`` + the dropout timeout of its rhythm now) is computed
        when first needed (``_deadline``): a sensor heard again before its queued
        deadline comes never needs it, and its next reading needs the timeout
        only for a gap longer than ``dropout_floor_s``. Nothing the timeout depends
        on changes before then (the rhythm and role change only with its next
        reading, the config only through ``reconfigure``, which computes it first)."""
        self._heard_t = max(self._heard_t, arrival)
        s.last_arr = arrival
        s.timeout = None
        s.stale = True
        if not s.queued:
            s.queued = True
            heapq.heappush(self._heap, (self._deadline(s), sid))
        if self._silent:
            self._silent.pop(sid, None)

    def _materialise(self, s: _Sensor) -> float:
        """Compute a stale sensor's timeout and deadline; the timeout."""
        s.stale = False
        s.timeout = timeout = self._timeout(s)
        s.deadline = s.last_arr + timeout
        return timeout

    def _deadline(self, s: _Sensor) -> float:
        if s.stale:
            self._materialise(s)
        return s.deadline

    def _jump(self, s: _Sensor, key: str, value: float, t: float, src: float | None,
              rate: float, resolution: float) -> float | None:
        """The impossible-jump check: None when ``value`` is one (withheld); else
        the size of a one-sample impossible jump that ``value`` came back from, or 0."""
        k = s.keys.get(key)
        if k is None:
            k = s.keys[key] = _Key()
        # Time between the two samples: by the device's own clock when it sends
        # one and it moved forward (a collar uploading a stored backlog sends
        # hours of samples in seconds), else by the sensor time.
        if src is not None and k.good_src is not None and src > k.good_src:
            elapsed = src - k.good_src
        else:
            elapsed = t - k.good_t
        came_back = 0.0
        if k.good is not None and elapsed > 0:
            slack = rate * elapsed + resolution
            near_good = abs(value - k.good) <= slack
            # Two readings in a row at the new level: a real step, not a spike.
            near_candidate = k.candidate is not None and abs(value - k.candidate) <= slack
            if near_good and k.candidate is not None:
                came_back = k.candidate - value
                if s.jumps:
                    s.jumps.pop()
            if near_good or near_candidate:
                k.candidate = None
            else:
                k.candidate = value
                s.jumps.append(t)
                return None
        k.good, k.good_t, k.good_src = value, t, src
        return came_back

    def _emit(self, out: list[Finding], s: _Sensor, sid: str, rule: str, status: str,
              at: float, summary: str, signals: list[Signal]) -> None:
        if status == "clear":
            left = s.active.get(rule)
            if not left:
                return
            if left <= 1:
                del s.active[rule]
            else:
                s.active[rule] = left - 1
        else:
            s.active[rule] = CLEARS
        out.append(Finding(rule=rule, subject=f"sensor:{sid}", status=status,  # type: ignore[arg-type]
                           at=at, summary=summary, signals=signals, sensor_id=sid,
                           animal_id=s.animal_id))
