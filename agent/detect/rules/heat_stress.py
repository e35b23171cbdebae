"""THI heat stress with cumulative load (dairy-rules.md section 2).

THI = (1.8 T + 32) - (0.55 - 0.0055 RH)(1.8 T - 26), the NRC form. The load is
THI-hours above ``load_base_thi`` over the last 24 h; hours below the raise
threshold in the same window tell whether the cows got any night relief.

Episodes, per afternoon, judged on time shares so that a noisy sensor near 72
neither starts nor ends one by itself: heat stress is raised once THI has been
at or above the raise threshold for ``SPELL_S`` of the last ``SPELL_S`` +
``DIP_S`` (a dip of up to a quarter hour does not break a spell; the alert
policy's minimum duration comes on top, so the alert comes about two hours
into the spell), so marginal afternoons with half-hour runs above 72 raise
nothing. It clears when THI falls below the clear threshold, or is below the
raise threshold after ``RELIEF_S`` below it in the last ``RELIEF_WINDOW_S``:
a night that never gets below 70 still ends the afternoon's episode, and the
next hot afternoon is a new alert. (A humid night just under 72, read by a
noisy sensor, pokes above it for a minute every few minutes: neither a spell
nor the end of the relief.)
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
SPELL_WINDOW_S = SPELL_S + DIP_S
RELIEF_S = 2 * 3600.0
RELIEF_WINDOW_S = 3 * 3600.0


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
    # Hours at or above the raise THI within SPELL_WINDOW_S, and below it within
    # RELIEF_WINDOW_S: (t, hours) per reading interval, with running sums.
    spell: deque[tuple[float, float]] = field(default_factory=deque)
    spell_sum: float = 0.0
    last_below: bool | None = None  # the last reading was below the raise THI
    recent: deque[tuple[float, float]] = field(default_factory=deque)
    recent_relief: float = 0.0

    def __post_init__(self) -> None:
        self.load_sum = sum(x[1] for x in self.load)
        self.relief_sum = sum(x[2] for x in self.load)
        self.spell_sum = sum(h for _, h in self.spell)
        if self.load:
            cutoff = self.load[-1][0] - RELIEF_WINDOW_S
            self.recent = deque((t, r) for t, _, r in self.load if t > cutoff)
            self.recent_relief = sum(r for _, r in self.recent)

    def add(self, t: float, thi_h: float, relief: float, above: float) -> None:
        self.load.append((t, thi_h, relief))
        self.load_sum += thi_h
        self.relief_sum += relief
        self.recent.append((t, relief))
        self.recent_relief += relief
        self.spell.append((t, above))
        self.spell_sum += above

    def expire(self, t: float) -> None:
        while self.load and self.load[0][0] < t - DAY_S:
            _, thi_h, relief = self.load.popleft()
            self.load_sum -= thi_h
            self.relief_sum -= relief
        while self.recent and self.recent[0][0] <= t - RELIEF_WINDOW_S:
            self.recent_relief -= self.recent.popleft()[1]
        while self.spell and self.spell[0][0] <= t - SPELL_WINDOW_S:
            self.spell_sum -= self.spell.popleft()[1]
        if not self.load:  # (float sums drift: an empty window is exactly nothing)
            self.load_sum = self.relief_sum = 0.0
        if not self.recent:
            self.recent_relief = 0.0
        if not self.spell:
            self.spell_sum = 0.0

    def to_state(self) -> dict[str, Any]:
        return {"last_t": self.last_t, "load": [list(x) for x in self.load],
                "spell": [list(x) for x in self.spell], "last_below": self.last_below}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Barn:
        # (An older state has no spell window: a spell going on is counted afresh.)
        return cls(data["last_t"], deque((a, b, c) for a, b, c in data["load"]),
                   spell=deque((a, b) for a, b in data.get("spell", [])),
                   last_below=data.get("last_below"))


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
        below = value < p.raise_thi
        if barn.last_t is not None and 0 < t - barn.last_t <= MAX_GAP_S:
            hours = (t - barn.last_t) / 3600
            # The time since the last reading is on the side that reading was on.
            was_below = below if barn.last_below is None else barn.last_below
            barn.add(t, max(0.0, value - p.load_base_thi) * hours,
                     hours if was_below else 0.0, 0.0 if was_below else hours)
        barn.last_t, barn.last_below = t, below
        barn.expire(t)
        load = max(0.0, barn.load_sum)
        relief_h = max(0.0, barn.relief_sum)

        spell = barn.spell_sum * 3600 >= SPELL_S - 1e-6
        relieved = barn.recent_relief * 3600 >= RELIEF_S - 1e-6
        status: Status
        if value >= p.raise_thi:
            # A short run above 72 after the relief (a noisy reading, the
            # morning's first warm hour) does not hold the last episode open.
            status = "raise" if spell else "clear" if relieved else "hold"
        elif value < p.clear_thi or relieved:
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
