"""Estrus from collar activity against the cow's own baseline (section 4).

The baseline is an EWMA of the cow's activity rate per hour of day, so feeding
and milking peaks do not look like heat. The signal is the activity of the
last ``window_s`` divided by what her baseline expects for the same hours.
Hours that look like heat do not enter the baseline. Tied cows are reported at
low confidence, since their activity is damped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import EstrusConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status
from agent.detect.rules.collar import Window, hour_of_day

RULE = "estrus"


@dataclass(slots=True)
class _Cow:
    window: Window
    first_t: float
    base: list[float | None] = field(default_factory=lambda: [None] * 24)
    count: list[int] = field(default_factory=lambda: [0] * 24)

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window.to_state(), "first_t": self.first_t,
                "base": self.base, "count": self.count}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Cow:
        return cls(Window.from_state(data["window"]), data["first_t"], data["base"],
                   data["count"])


class EstrusRule:
    name = RULE
    roles: tuple[str, ...] = ("collar",)

    def __init__(self, config: EstrusConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.map = mapping
        self.cows: dict[str, _Cow] = {}

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        activity = reading.values.get(self.map.activity_key)
        animal = reading.animal_id
        if activity is None or animal is None:
            return []
        cfg = self.cfg
        cow = self.cows.get(animal)
        if cow is None:
            cow = self.cows[animal] = _Cow(Window(cfg.window_s), t)
        hour = hour_of_day(reading.stamp.wall_ts)
        dt = cow.window.add(t, activity, hour)
        if dt is None:
            return []
        rate = activity * 3600 / dt
        items = cow.window.items
        known = all(cow.count[h] >= cfg.min_samples for _, _, _, h in items)
        expected = sum((cow.base[h] or 0.0) * d / 3600 for _, d, _, h in items) if known else 0
        covered = cow.window.covered()
        judged = (known and expected > 0 and covered >= 0.75 * cfg.window_s
                  and t - cow.first_t >= cfg.warmup_days * 86400)
        ratio = cow.window.total() / expected if expected > 0 else 0.0
        # Heat hours would inflate her baseline: keep them out.
        base = cow.base[hour]
        if not judged or ratio < cfg.raise_ratio:
            if base is None:
                cow.base[hour] = rate
            else:
                cow.base[hour] = base + cfg.baseline_alpha * (min(rate, 3 * base) - base)
            cow.count[hour] += 1
        if not judged:
            return []
        tied = animal in cfg.tied_animals
        status: Status = ("raise" if ratio >= cfg.raise_ratio
                  else "clear" if ratio < cfg.clear_ratio else "hold")
        summary = f"Cow {animal}: activity {ratio:.1f}x her own baseline, possible heat"
        if tied:
            summary += " (tied cow: activity is damped, low confidence)"
        return [Finding(
            rule=RULE, subject=f"cow:{animal}", status=status, at=t,
            severity="info" if tied else None, summary=summary,
            signals=[Signal(f"activity ({cfg.window_s / 3600:.0f} h)", cow.window.total(),
                            baseline=expected, limit=expected * cfg.raise_ratio)],
            sensor_id=reading.sensor_id, animal_id=animal,
            extra={"ratio": round(ratio, 3), "confidence": "low" if tied else "normal"},
        )]

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {k: v.to_state() for k, v in self.cows.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.cows = {k: _Cow.from_state(v) for k, v in state.items()}
