"""Bulk-tank cooling compliance (dairy-rules.md section 1).

Per tank the rule follows the milk: ``wash`` (hot water: suppress), ``empty``
(after a wash, until milk arrives), ``storage`` (cooled milk) and ``episode``
(warm milk above the target, from the first warm milk until it is cooled).
Violations: the profile's time limit passed above target; the blend above its
limit; the tank warming fast while above target (a working cooler keeps the
blend nearly flat, so this is the fast signal of a failed compressor); still
not cooling down after a first milking began; freezing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import CoolingConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status
from agent.records import Reading

RULE = "cooling"


@dataclass(slots=True)
class _Tank:
    phase: str = "unknown"  # wash | empty | storage | episode | unknown
    window: deque[tuple[float, float]] = field(default_factory=deque)
    start: float = 0.0
    peak_t: float = 0.0
    peak_c: float = -99.0
    blend: bool = False
    # Started by cooled milk drifting above target, not by milk arriving; the
    # level when it started (None: no level value).
    drift_level: float | None = None
    agitator: float = 0.0
    agitator_since: float | None = None
    run: deque[tuple[float, float, float | None]] = field(default_factory=deque)
    times_to_target: list[float] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "window": [list(p) for p in self.window],
            "start": self.start,
            "peak_t": self.peak_t,
            "peak_c": self.peak_c,
            "blend": self.blend,
            "drift_level": self.drift_level,
            "agitator": self.agitator,
            "agitator_since": self.agitator_since,
            "run": [list(p) for p in self.run],
            "times_to_target": self.times_to_target,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Tank:
        tank = cls(**{k: v for k, v in data.items() if k not in ("window", "run")})
        tank.window = deque((float(t), float(v)) for t, v in data["window"])
        tank.run = deque((float(t), float(v), lv) for t, v, lv in data.get("run", []))
        return tank


class CoolingRule:
    name = RULE
    roles: tuple[str, ...] = ("bulk_tank",)

    def __init__(self, config: CoolingConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.profile = config.profiles[config.profile]
        self.map = mapping
        self.tanks: dict[str, _Tank] = {}

    def on_reading(self, reading: Reading, t: float) -> list[Finding]:
        temp = reading.values.get(self.map.milk_temp_key)
        if temp is None:
            return []
        tank = self.tanks.setdefault(reading.sensor_id, _Tank())
        agitator = reading.values.get(self.map.agitator_key, tank.agitator)
        washing = reading.values.get(self.map.wash_key, 0.0) >= 0.5
        started_agitator = agitator >= 0.5 and tank.agitator < 0.5
        tank.agitator = agitator
        if agitator < 0.5:
            tank.agitator_since = None
        elif tank.agitator_since is None:
            tank.agitator_since = t
        level = reading.values.get(self.map.level_key)
        run = tank.run
        run.append((t, temp, level))
        span = self.cfg.stalled_run_s or 0.0
        while len(run) > 1 and run[1][0] <= t - span:
            run.popleft()
        window = tank.window
        window.append((t, temp))
        while window and window[0][0] < t - self.cfg.rise_window_s:
            window.popleft()
        rise = temp - min(v for _, v in window)
        p, cfg = self.profile, self.cfg

        # Phase transitions. A level value, where the tank sends one, says directly
        # whether there is milk to cool; without it, temperature and agitator tell.
        empty = level is not None and level <= cfg.empty_level_l
        if washing or temp >= cfg.wash_detect_c:
            tank.phase = "wash"
        elif empty or tank.phase == "wash":
            tank.phase = "empty"
        elif tank.phase == "unknown":
            tank.phase = "storage" if temp <= p.target_c else "empty"
        if tank.phase == "empty" and not empty and (
                level is not None or started_agitator or rise >= cfg.milking_rise_c):
            self._start(tank, t, blend=False)
        elif tank.phase == "storage" and (temp > p.target_c or rise >= cfg.milking_rise_c):
            self._start(tank, t, blend=True)
            if rise < cfg.milking_rise_c:
                tank.drift_level = level
        elif (tank.phase == "episode" and tank.drift_level is not None and level is not None
              and level - tank.drift_level > cfg.level_rise_l):
            # Milk now arrives after a thermostat drift above target: the time
            # limit counts from this milking, not from the drift.
            self._start(tank, t, blend=True)
        elif tank.phase == "episode" and temp <= p.target_c - cfg.clear_margin_c:
            tank.times_to_target = (tank.times_to_target + [t - tank.start])[-20:]
            tank.phase = "storage"
        if tank.phase == "episode" and temp > tank.peak_c:
            tank.peak_c, tank.peak_t = temp, t

        signals: list[Signal] = []
        if tank.phase == "episode":
            anchor = tank.start
            if p.anchor == "peak":
                anchor = min(tank.peak_t, tank.start + cfg.max_milking_s)
            elapsed = t - anchor
            if elapsed > p.time_limit_s and temp > p.target_c:
                signals.append(Signal(
                    "milk temperature", temp, limit=p.target_c, unit=" °C",
                    note=f"not cooled {elapsed / 3600:.1f} h after the milking "
                    f"{'peak' if p.anchor == 'peak' else 'start'} (limit "
                    f"{p.time_limit_s / 3600:.1f} h)",
                ))
            if tank.blend and p.blend_max_c is not None and temp > p.blend_max_c:
                signals.append(Signal("blend temperature", temp, limit=p.blend_max_c, unit=" °C"))
            in_grace = not tank.blend and t - tank.start < cfg.hot_grace_s
            if not tank.blend:  # the warm milk's own arrival is no rise
                rise = temp - min(v for tt, v in window if tt >= tank.start)
            if not in_grace and rise >= cfg.not_cooling_rise_c and self._uncooled(tank, temp):
                signals.append(Signal(
                    "temperature rise", rise, limit=cfg.not_cooling_rise_c, unit=" °C",
                    note=f"warming in {cfg.rise_window_s / 60:.0f} min: the tank is not cooling",
                ))
            drop = tank.peak_c - temp
            if not tank.blend and not in_grace and temp > p.target_c and drop < cfg.first_drop_c:
                signals.append(Signal(
                    "milk temperature", temp, baseline=tank.peak_c, unit=" °C",
                    note=f"first milking cooled only {drop:.1f} °C from its peak in "
                    f"{(t - tank.start) / 60:.0f} min: the tank is not cooling",
                ))
        stalled = self._stalled(tank, t, temp, level)
        if stalled is not None:
            signals.append(stalled)
        if tank.phase in ("storage", "episode") and temp < p.freeze_c:
            signals.append(Signal("milk temperature", temp, limit=p.freeze_c, unit=" °C",
                                  note="milk is freezing"))

        extra = {"profile": self.cfg.profile, "phase": tank.phase}
        status: Status
        if signals:
            status = "raise"
            frozen_only = all("freezing" in s.note for s in signals)
            severity = "warning" if frozen_only else None
            summary = f"Bulk tank {reading.sensor_id} cooling out of compliance ({p.source})"
        elif tank.phase in ("wash", "empty") or temp <= p.target_c - cfg.clear_margin_c:
            status, severity, summary = "clear", None, f"Bulk tank {reading.sensor_id} cooled"
        else:
            status, severity, summary = "hold", None, f"Bulk tank {reading.sensor_id} cooling"
        return [Finding(
            rule=RULE, subject=f"tank:{reading.sensor_id}", status=status, at=t,
            severity=severity, summary=summary, signals=signals,
            sensor_id=reading.sensor_id, extra=extra,
        )]

    def _uncooled(self, tank: _Tank, temp: float) -> bool:
        """Is the rise all warm milk and no cooling? Without a level: assume so."""
        t0 = tank.window[0][0]
        old = next((x for x in tank.run if x[0] >= t0), None)
        level = tank.run[-1][2]
        if old is None or old[2] is None or level is None or level <= old[2]:
            return True
        v0, temp0 = max(old[2], 1.0), old[1]
        mixed = (v0 * temp0 + (level - old[2]) * self.cfg.milk_in_c) / level
        return mixed - temp < self.cfg.min_cooling_c

    def _stalled(self, tank: _Tank, t: float, temp: float,
                 level: float | None) -> Signal | None:
        """Cooled milk in storage, the cooler running (agitator on) for stalled_run_s,
        no milk arriving, and the milk not getting colder: the cooler does not cool."""
        cfg = self.cfg
        span = cfg.stalled_run_s
        if (span is None or tank.phase != "storage" or level is None
                or tank.agitator_since is None or t - tank.agitator_since < span):
            return None
        t0, temp0, level0 = tank.run[0]
        if t - t0 < span or level0 is None or level - level0 > cfg.level_rise_l:
            return None
        if temp0 - temp >= cfg.stalled_min_drop_c:
            return None
        return Signal("milk temperature", temp, baseline=temp0, unit=" °C",
                      note=f"agitator running {(t - tank.agitator_since) / 60:.0f} min with no "
                      f"milk arriving, but the milk is not getting colder: the cooler runs "
                      f"and does not cool")

    def _start(self, tank: _Tank, t: float, blend: bool) -> None:
        tank.phase, tank.start, tank.blend = "episode", t, blend
        tank.drift_level = None
        tank.peak_t, tank.peak_c = t, -99.0

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {k: v.to_state() for k, v in self.tanks.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.tanks = {k: _Tank.from_state(v) for k, v in state.items()}
