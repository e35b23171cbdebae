"""THI heat stress with cumulative load (dairy-rules.md section 2).

THI = (1.8 T + 32) - (0.55 - 0.0055 RH)(1.8 T - 26), the NRC form. The load is
THI-hours above ``load_base_thi`` over the last 24 h; hours below the raise
threshold in the same window tell whether the cows got any night relief.

Episodes, per afternoon: heat stress is raised once THI has stayed at or
above the raise threshold for ``SPELL_S`` (dips shorter than ``DIP_S`` do not
break a spell; the alert policy's minimum duration comes on top, so the alert
comes about two hours into the spell), so marginal afternoons with half-hour
runs above 72 raise nothing. It clears when THI falls below the clear
threshold, or has stayed below the raise threshold for ``RELIEF_S``: a night
that never gets below 70 still ends the afternoon's episode, and the next
hot afternoon is a new alert.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import HeatStressConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status, Tracked, every_key_tracked

RULE = "heat_stress"
DAY_S = 86400.0
MAX_GAP_S = 1800.0  # a reading stands for at most this long; longer gaps are unknown
SPELL_S = 5400.0
DIP_S = 900.0
RELIEF_S = 2 * 3600.0


def thi(temp_c: float, rh_pct: float) -> float:
    return (1.8 * temp_c + 32) - (0.55 - 0.0055 * rh_pct) * (1.8 * temp_c - 26)


@dataclass(slots=True)
class _Barn:
    last_t: float | None = None
    # (t, THI-hours above base, hours below raise threshold) per reading interval
    load: deque[tuple[float, float, float]] = field(default_factory=deque)
    # Running sums over ``load`` (THI-hours, relief hours): O(1) per reading.
    load_sum: float = 0.0
    relief_sum: float = 0.0
    above_since: float | None = None  # the current spell at or above the raise THI
    below_since: float | None = None  # below the raise THI since

    def __post_init__(self) -> None:
        self.load_sum = sum(x[1] for x in self.load)
        self.relief_sum = sum(x[2] for x in self.load)

    def to_state(self) -> dict[str, Any]:
        return {"last_t": self.last_t, "load": [list(x) for x in self.load],
                "above_since": self.above_since, "below_since": self.below_since}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Barn:
        return cls(data["last_t"], deque((a, b, c) for a, b, c in data["load"]),
                   above_since=data.get("above_since"), below_since=data.get("below_since"))


class HeatStressRule:
    name = RULE
    roles: tuple[str, ...] = ("climate",)

    def __init__(self, config: HeatStressConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.tracked: Tracked = every_key_tracked
        self.profile = config.profiles[config.profile]
        self.map = mapping
        self.barns: dict[str, _Barn] = {}

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        temp = reading.values.get(self.map.temperature_key)
        rh = reading.values.get(self.map.humidity_key)
        if temp is None or rh is None:
            return []
        p = self.profile
        value = thi(temp, rh)
        barn = self.barns.get(reading.sensor_id)
        if barn is None:
            barn = self.barns[reading.sensor_id] = _Barn()
        if barn.last_t is not None and 0 < t - barn.last_t <= MAX_GAP_S:
            hours = (t - barn.last_t) / 3600
            thi_h = max(0.0, value - p.load_base_thi) * hours
            relief = hours if value < p.raise_thi else 0.0
            barn.load.append((t, thi_h, relief))
            barn.load_sum += thi_h
            barn.relief_sum += relief
        barn.last_t = t
        while barn.load and barn.load[0][0] < t - DAY_S:
            _, thi_h, relief = barn.load.popleft()
            barn.load_sum -= thi_h
            barn.relief_sum -= relief
        if not barn.load:
            barn.load_sum = barn.relief_sum = 0.0
        load = max(0.0, barn.load_sum)
        relief_h = max(0.0, barn.relief_sum)

        if value >= p.raise_thi:
            if barn.above_since is None or (barn.below_since is not None
                                            and t - barn.below_since > DIP_S):
                barn.above_since = t
            barn.below_since = None
        elif barn.below_since is None:
            barn.below_since = t
        status: Status
        if value >= p.raise_thi:
            assert barn.above_since is not None
            status = "raise" if t - barn.above_since >= SPELL_S else "hold"
        elif value < p.clear_thi or (barn.below_since is not None
                                     and t - barn.below_since >= RELIEF_S):
            status = "clear"
        else:
            status = "hold"
        subject = f"barn:{reading.sensor_id}"
        if status != "raise" and not self.tracked(RULE, subject, ""):
            return []  # nothing open or pending for this barn: it would be dropped
        critical = value >= p.critical_thi or load >= p.load_critical_thi_h
        signals = [
            Signal("THI", value, limit=p.raise_thi,
                   note=f"air {temp:.1f} °C, RH {rh:.0f} %"),
            Signal("heat load (24 h)", load, limit=p.load_critical_thi_h, unit=" THI-h",
                   note=f"{relief_h:.1f} h below THI {p.raise_thi:.0f} (relief)"),
        ]
        return [Finding(
            rule=RULE, subject=subject, status=status, at=t,
            severity="critical" if critical else None,
            summary=f"Heat stress at {reading.sensor_id}",
            signals=signals, sensor_id=reading.sensor_id,
            extra={"thi": round(value, 2), "thi_hours_24h": round(load, 2),
                   "relief_hours_24h": round(relief_h, 2), "profile": self.cfg.profile},
        )]

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {k: v.to_state() for k, v in self.barns.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.barns = {k: _Barn.from_state(v) for k, v in state.items()}
