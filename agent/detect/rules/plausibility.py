"""Sensor plausibility (dairy-rules.md section 10): a sensor alert, not an
animal alert. Checks: out of range, impossible jumps (erratic), stuck /
flat-lined while it normally varies, silent (dropout, from ``tick``), and
calibration overdue (asked of a callable). Values that fail range or jump are
withheld from the other rules, and a faulty sensor feeds no rule at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import PlausibilityConfig
from agent.detect.rules.base import Finding, Signal

STUCK, JUMP, RANGE, DROPOUT, CALIBRATION = (
    "sensor.stuck", "sensor.erratic", "sensor.range", "sensor.dropout", "sensor.calibration",
)
RULES = (STUCK, JUMP, RANGE, DROPOUT, CALIBRATION)

# Days overdue (> 0: overdue), or None when the sensor has no calibration record.
CalibrationCheck = Callable[[str], float | None]


@dataclass(slots=True)
class _Key:
    good: float | None = None
    good_t: float = 0.0
    candidate: float | None = None
    changed_t: float = 0.0
    changed_v: float | None = None
    varied: bool = False
    good_src: float | None = None  # the device's own timestamp of ``good``, if it sends one


@dataclass(slots=True)
class _Sensor:
    role: str
    last_t: float
    animal_id: str | None = None
    keys: dict[str, _Key] = field(default_factory=dict)
    jumps: deque[float] = field(default_factory=deque)
    range_streak: int = 0
    stuck: bool = False
    calib_t: float = -1e18

    def to_state(self) -> dict[str, Any]:
        return {"role": self.role, "last_t": self.last_t, "animal_id": self.animal_id,
                "keys": {k: [v.good, v.good_t, v.candidate, v.changed_t, v.changed_v, v.varied,
                             v.good_src]
                         for k, v in self.keys.items()},
                "jumps": list(self.jumps), "range_streak": self.range_streak,
                "stuck": self.stuck}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Sensor:
        sensor = cls(data["role"], data["last_t"], data.get("animal_id"))
        sensor.keys = {k: _Key(*v) for k, v in data["keys"].items()}
        sensor.jumps = deque(data["jumps"])
        sensor.range_streak = data["range_streak"]
        sensor.stuck = data["stuck"]
        return sensor


class PlausibilityRule:
    name = "sensor"

    def __init__(self, config: PlausibilityConfig,
                 calibration: CalibrationCheck | None = None) -> None:
        self.cfg = config
        self.calibration = calibration
        self.sensors: dict[str, _Sensor] = {}

    def faulty(self, sensor_id: str) -> bool:
        """Stuck, out of range or erratic: its data must not drive animal or tank rules."""
        s = self.sensors.get(sensor_id)
        if s is None:
            return False
        return (s.stuck or s.range_streak >= self.cfg.range_count
                or len(s.jumps) >= self.cfg.jump_count)

    def check(self, reading: Any, role: str, t: float) -> tuple[list[Finding], set[str]]:
        """Findings for this sensor, and the value keys to withhold from other rules."""
        cfg = self.cfg
        sid = reading.sensor_id
        s = self.sensors.get(sid)
        if s is None:
            s = self.sensors[sid] = _Sensor(role, t, reading.animal_id)
        s.last_t, s.role = t, role
        bad: set[str] = set()
        out_of_range: list[Signal] = []
        stuck: list[Signal] = []
        for key, value in reading.values.items():
            lim = cfg.limits.get(key)
            if lim is None:
                continue
            if not lim.lo <= value <= lim.hi:
                bad.add(key)
                out_of_range.append(Signal(key, value, limit=lim.hi if value > lim.hi else lim.lo,
                                           note=f"possible range {lim.lo:g}..{lim.hi:g}"))
                continue
            k = s.keys.setdefault(key, _Key(changed_t=t, changed_v=value))
            rate = lim.max_rate_per_s
            # Time between the two samples: by the device's own clock when it sends
            # one and it moved forward (a collar uploading a stored backlog sends
            # hours of samples in seconds), else by arrival on our monotonic clock.
            src = reading.source_ts
            if src is not None and k.good_src is not None and src > k.good_src:
                elapsed = src - k.good_src
            else:
                elapsed = t - k.good_t
            if rate is not None and k.good is not None and elapsed > 0:
                slack = rate * elapsed + lim.resolution
                near_good = abs(value - k.good) <= slack
                # Two readings in a row at the new level: a real step, not a spike.
                near_candidate = k.candidate is not None and abs(value - k.candidate) <= slack
                if near_good or near_candidate:
                    k.candidate = None
                else:
                    k.candidate = value
                    s.jumps.append(t)
                    bad.add(key)
                    continue
            k.good, k.good_t, k.good_src = value, t, src
            if lim.stuck_after_s is not None:
                if k.changed_v is None or abs(value - k.changed_v) > lim.resolution:
                    k.varied = k.varied or k.changed_v is not None
                    k.changed_v, k.changed_t = value, t
                elif k.varied and t - k.changed_t >= lim.stuck_after_s:
                    stuck.append(Signal(key, value, note=f"unchanged for "
                                        f"{(t - k.changed_t) / 3600:.1f} h"))
        while s.jumps and s.jumps[0] < t - cfg.jump_window_s:
            s.jumps.popleft()
        s.range_streak = s.range_streak + 1 if out_of_range else 0
        s.stuck = bool(stuck)

        def finding(rule: str, status: str, summary: str, signals: list[Signal]) -> Finding:
            return Finding(rule=rule, subject=f"sensor:{sid}", status=status,  # type: ignore[arg-type]
                           at=t, summary=summary, signals=signals, sensor_id=sid,
                           animal_id=reading.animal_id)

        jumps = len(s.jumps)
        return [
            finding(DROPOUT, "clear", f"Sensor {sid} reporting", []),
            finding(RANGE, "raise" if s.range_streak >= cfg.range_count else
                    "hold" if out_of_range else "clear",
                    f"Sensor {sid} reports impossible values", out_of_range),
            finding(JUMP, "raise" if jumps >= cfg.jump_count else "hold" if jumps else "clear",
                    f"Sensor {sid} is erratic: {jumps} impossible jumps in "
                    f"{cfg.jump_window_s / 60:.0f} min", []),
            finding(STUCK, "raise" if stuck else "clear",
                    f"Sensor {sid} is stuck (flat-lined)", stuck),
        ], bad

    def tick(self, t: float) -> list[Finding]:
        out: list[Finding] = []
        for sid, s in self.sensors.items():
            timeout = self.cfg.inactivity_s.get(s.role, self.cfg.inactivity_s.get("other", 3600))
            silent = t - s.last_t
            if silent > timeout:
                out.append(Finding(
                    rule=DROPOUT, subject=f"sensor:{sid}", status="raise", at=t,
                    summary=f"Sensor {sid} silent",
                    signals=[Signal("silence", silent / 60, limit=timeout / 60, unit=" min")],
                    sensor_id=sid, animal_id=s.animal_id))
            if self.calibration is not None and t - s.calib_t >= self.cfg.calibration_check_s:
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

    def to_state(self) -> dict[str, Any]:
        return {k: v.to_state() for k, v in self.sensors.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.sensors = {k: _Sensor.from_state(v) for k, v in state.items()}
