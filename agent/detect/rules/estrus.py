"""Estrus from collar activity against the cow's own baseline (section 4).

Her baseline is an EWMA of her activity rate per hour of day, so feeding and
milking peaks do not look like heat. Each collar reading gives a log ratio of
observed to expected activity; the signal is the *median* ratio over the last
``window_s``, so only a rise sustained over hours counts (estrus lasts
12-18 h) and a one-hour disturbance barely moves it. Three guards against
false heats:

- the threshold scales with the cow's own typical deviation of that signal
  (restless cows need a larger rise than calm ones), with a floor;
- a rise the whole herd shares (regrouping, hoof trimming) is subtracted,
  and while the herd is stirred up no new heat is raised: heat is individual;
- hours that look like heat stay out of her baseline, but only for
  ``max_heat_s``; a longer rise is her new normal.

Tied cows are reported at low confidence, since their activity is damped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import EstrusConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status, median
from agent.detect.rules.collar import Window, hour_of_day

RULE = "estrus"
HERD_REFRESH_S = 900.0  # recompute the herd's shared rise at most this often
HERD_FRESH_S = 3 * 3600.0  # a cow's signal older than this is not in the herd median
FLOOR = 1.0  # counts: keeps log ratios finite when a window holds no activity


@dataclass(slots=True)
class _Cow:
    window: Window
    first_t: float
    base: list[float | None] = field(default_factory=lambda: [None] * 24)
    count: list[int] = field(default_factory=lambda: [0] * 24)
    spread: float | None = None  # EWMA root mean square of the signal, log scale
    signal: float = 0.0
    signal_t: float = 0.0
    high_since: float | None = None

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window.to_state(), "first_t": self.first_t,
                "base": self.base, "count": self.count, "spread": self.spread,
                "signal": self.signal, "signal_t": self.signal_t,
                "high_since": self.high_since}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Cow:
        return cls(Window.from_state(data["window"]), data["first_t"], data["base"],
                   data["count"], data.get("spread"), data.get("signal", 0.0),
                   data.get("signal_t", 0.0), data.get("high_since"))


class EstrusRule:
    name = RULE
    roles: tuple[str, ...] = ("collar",)

    def __init__(self, config: EstrusConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.map = mapping
        self.cows: dict[str, _Cow] = {}
        self._herd = 0.0
        self._herd_t = -1e18
        self._disturbed_until = -1e18

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
        items = cow.window.items
        known = all(cow.count[h] >= cfg.min_samples and cow.base[h] for _, _, _, h in items)
        judged = False
        signal = 0.0
        if known:
            ratios = [math.log((v + FLOOR) / ((cow.base[h] or 0.0) * d / 3600 + FLOOR))
                      for _, d, v, h in items]
            cow.signal, cow.signal_t = median(ratios), t
            signal = cow.signal - self._herd_shift(t)
            judged = (cow.window.covered() >= 0.75 * cfg.window_s
                      and t - cow.first_t >= cfg.warmup_days * 86400
                      and cow.spread is not None)
        spread = cow.spread or 0.0
        raise_at = max(math.log(cfg.raise_ratio), cfg.raise_z * spread)
        clear_at = min(raise_at, max(math.log(cfg.clear_ratio), cfg.clear_z * spread))
        high = judged and signal >= clear_at
        if not high:
            cow.high_since = None
        elif cow.high_since is None:
            cow.high_since = t
        # Heat hours would inflate her baseline and her spread: keep them out,
        # unless the rise has lasted longer than any heat.
        if not high or t - (cow.high_since or t) > cfg.max_heat_s:
            self._learn(cow, hour, activity * 3600 / dt, dt, signal if known else None)
        if not judged:
            return []
        tied = animal in cfg.tied_animals
        status: Status = ("raise" if signal >= raise_at
                          else "clear" if signal < clear_at else "hold")
        disturbed = t < self._disturbed_until
        if disturbed and status == "raise":
            status = "hold"  # the herd is stirred up: wait until it settles
        ratio = math.exp(signal)
        expected = sum((cow.base[h] or 0.0) * d / 3600 for _, d, _, h in items)
        summary = (f"Cow {animal}: activity {ratio:.1f}x her own baseline for "
                   f"{cfg.window_s / 3600:.0f} h, possible heat")
        if tied:
            summary += " (tied cow: activity is damped, low confidence)"
        return [Finding(
            rule=RULE, subject=f"cow:{animal}", status=status, at=t,
            severity="info" if tied else None, summary=summary,
            signals=[Signal(f"activity ({cfg.window_s / 3600:.0f} h)", cow.window.total(),
                            baseline=expected, limit=expected * math.exp(raise_at),
                            note=f"median ratio {ratio:.2f}x, herd-adjusted; raise at "
                            f"{math.exp(raise_at):.2f}x (her spread {spread:.2f})")],
            sensor_id=reading.sensor_id, animal_id=animal,
            extra={"ratio": round(ratio, 3), "raise_ratio": round(math.exp(raise_at), 3),
                   "herd_shift": round(self._herd, 3), "herd_disturbed": disturbed,
                   "confidence": "low" if tied else "normal"},
        )]

    def _learn(self, cow: _Cow, hour: int, rate: float, dt: float,
               signal: float | None) -> None:
        cfg = self.cfg
        base = cow.base[hour]
        if base is None:
            cow.base[hour] = rate
        else:
            alpha = 1 - (1 - cfg.baseline_alpha) ** (dt / 3600)
            cow.base[hour] = base + alpha * (min(rate, 3 * base) - base)
        cow.count[hour] += 1
        if signal is not None:
            # RMS, not a mean absolute deviation: heavy tails are what false heats
            # come from, so they must widen her threshold.
            dev = abs(signal)
            if cow.spread is None:
                cow.spread = dev
            else:
                dev = min(dev, 4 * cow.spread + 0.05)  # one odd window must not swamp it
                w = 1 - math.exp(-dt / (cfg.spread_days * 86400))
                cow.spread = math.sqrt(cow.spread ** 2 + w * (dev ** 2 - cow.spread ** 2))

    def _herd_shift(self, t: float) -> float:
        """The rise the whole herd shares now (log scale, never negative)."""
        if t - self._herd_t >= HERD_REFRESH_S:
            self._herd_t = t
            fresh = [c.signal for c in self.cows.values() if t - c.signal_t <= HERD_FRESH_S]
            self._herd = (max(0.0, median(fresh)) if len(fresh) >= self.cfg.herd_min_cows
                          else 0.0)
            if self._herd >= math.log(self.cfg.herd_disturbed_ratio):
                # Cows react unequally to a disturbance, so subtracting the herd's
                # median is not enough: hold new heats until the windows settle.
                self._disturbed_until = t + self.cfg.window_s / 2
        return self._herd

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {"cows": {k: v.to_state() for k, v in self.cows.items()},
                "herd": self._herd, "herd_t": self._herd_t,
                "disturbed_until": self._disturbed_until}

    def from_state(self, state: dict[str, Any]) -> None:
        cows = state.get("cows", state)  # older layout: the cows only
        self.cows = {k: _Cow.from_state(v) for k, v in cows.items()
                     if isinstance(v, dict) and "window" in v}
        self._herd = float(state.get("herd", 0.0))
        self._herd_t = float(state.get("herd_t", -1e18))
        self._disturbed_until = float(state.get("disturbed_until", -1e18))
