"""Rumination drop against the cow's own daily baseline (section 5).

The last 24 h of rumination minutes, scaled up for missing readings, against
the median of her previous daily totals. Days with a drop do not enter the
baseline. Farm events (``agent.detect.farm_events``) explain a fall: after a
calving (about 70 %), a pen or group move, or a heat the herd system recorded,
no alert for a few days; a calving or a dry-off (a new diet) also restarts her
baseline from the days that follow.

The herd's same-day change is taken out: when most cows ruminate less at once
(a hot day, a feed delay), her baseline is scaled by the herd's median ratio
of last-24-h to baseline, so a herd-wide dip raises nothing while a cow falling
well below the herd still does. The scaling works both ways: after hot days
have pulled every baseline down, the herd chews above its baselines again and
she is judged against that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import RoleMapping, RuminationConfig
from agent.detect.rules.base import Finding, Signal, Status, Tracked, every_key_tracked, median
from agent.detect.rules.collar import Window, hour_of_day

RULE = "rumination"
DAY_S = 86400.0
HERD_REFRESH_S = 900.0
HERD_FRESH_S = 2 * 3600.0
HERD_MIN_COWS = 5


@dataclass(slots=True)
class _Cow:
    window: Window
    day_t: float
    daily: list[float] = field(default_factory=list)
    ratio: float = 1.0  # last 24 h against her baseline
    ratio_t: float = -1e18
    # The median of ``daily[-n:]``, kept until ``daily`` changes (not saved):
    # (the list it was taken of, its length, n, the median).
    base_of: tuple[list[float], int, int, float] | None = None

    def baseline(self, n: int) -> float:
        """The median of her last ``n`` daily totals (``daily`` changes once a day)."""
        daily, memo = self.daily, self.base_of
        if memo is not None and memo[0] is daily and memo[1] == len(daily) and memo[2] == n:
            return memo[3]
        value = median(daily[-n:])
        self.base_of = (daily, len(daily), n, value)
        return value

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window.to_state(), "day_t": self.day_t, "daily": self.daily}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Cow:
        return cls(Window.from_state(data["window"]), data["day_t"], data["daily"])


class RuminationRule:
    name = RULE
    roles: tuple[str, ...] = ("collar",)

    def __init__(self, config: RuminationConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.tracked: Tracked = every_key_tracked
        self.map = mapping
        self.cows: dict[str, _Cow] = {}
        self.calvings: dict[str, float] = {}  # kept for older saved state
        self.quiet: dict[str, tuple[float, str]] = {}  # cow: (quiet until, why)
        self._herd = 1.0
        self._herd_t = -1e18

    def _herd_ratio(self, t: float) -> float:
        """The herd's median last-24-h / baseline now (1.0 with too few cows)."""
        if t - self._herd_t >= HERD_REFRESH_S:
            self._herd_t = t
            fresh = [c.ratio for c in self.cows.values() if t - c.ratio_t <= HERD_FRESH_S]
            self._herd = median(fresh) if len(fresh) >= HERD_MIN_COWS else 1.0
        return self._herd

    def note_calving(self, animal_id: str, t: float) -> None:
        self.note_event("calving", animal_id, t)

    def note_event(self, kind: str, animal_id: str, t: float) -> None:
        """A farm event for this cow at engine time ``t``: a quiet spell, and for a
        calving or a dry-off a fresh baseline."""
        cfg = self.cfg
        span = {"calving": cfg.calving_suppress_s, "pen_move": cfg.move_suppress_s,
                "heat": cfg.heat_suppress_s}.get(kind)
        if kind == "calving":
            self.calvings[animal_id] = t
        if span:
            until, _ = self.quiet.get(animal_id, (-1e18, ""))
            if t + span > until:
                self.quiet[animal_id] = (t + span, kind)
        if kind == "calving" or (kind == "dry_off" and cfg.dry_off_rebaseline):
            cow = self.cows.get(animal_id)
            if cow is not None:
                cow.daily.clear()
                cow.day_t = t

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        minutes = reading.values.get(self.map.rumination_key)
        animal = reading.animal_id
        if minutes is None or animal is None:
            return []
        cfg = self.cfg
        cow = self.cows.get(animal)
        if cow is None:
            cow = self.cows[animal] = _Cow(Window(DAY_S), t)
        if cow.window.add(t, minutes, hour_of_day(reading.stamp.wall_ts)) is None:
            return []
        covered = cow.window.covered()
        if covered < cfg.min_coverage * DAY_S:
            return []
        estimate = cow.window.total() * DAY_S / covered
        baseline = (cow.baseline(cfg.baseline_days)
                    if len(cow.daily) >= cfg.min_baseline_days else None)
        if baseline is not None and baseline > 0:
            cow.ratio, cow.ratio_t = estimate / baseline, t
        # Both ways: after hot days have pulled every baseline down, the herd
        # chews more than its baselines again, and so should she.
        herd = self._herd_ratio(t)
        drop = baseline - estimate if baseline is not None else 0.0
        limit = max(cfg.drop_min, cfg.drop_frac * baseline) if baseline is not None else 0.0
        # Judged against what the herd does today: the herd's dip is not hers.
        judged_drop = baseline * herd - estimate if baseline is not None else 0.0
        if t - cow.day_t >= DAY_S:
            cow.day_t = t
            # A sick day must not become her normal; a merely lower day must, or a
            # cow whose level shifts would alarm for ever.
            if baseline is None or drop < limit:
                cow.daily = (cow.daily + [estimate])[-cfg.baseline_days * 2:]
        if baseline is None:
            return []
        if t < self.quiet.get(animal, (-1e18, ""))[0]:
            return []  # explained by a farm event
        status: Status = ("raise" if judged_drop >= limit
                          else "clear" if judged_drop < cfg.clear_min else "hold")
        subject = f"cow:{animal}"
        if status != "raise" and not self.tracked(RULE, subject, ""):
            return []  # nothing open or pending for her: it would be dropped
        return [Finding(
            rule=RULE, subject=subject, status=status, at=t,
            summary=f"Cow {animal}: rumination down {drop:.0f} min/day",
            signals=[Signal("rumination (24 h)", estimate, baseline=baseline,
                            limit=baseline - limit, unit=" min")],
            sensor_id=reading.sensor_id, animal_id=animal,
            extra={"drop_min": round(drop, 1), "herd_ratio": round(herd, 3)},
        )]

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {"cows": {k: v.to_state() for k, v in self.cows.items()},
                "calvings": self.calvings, "quiet": {k: list(v) for k, v in self.quiet.items()}}

    def from_state(self, state: dict[str, Any]) -> None:
        self.cows = {k: _Cow.from_state(v) for k, v in state.get("cows", {}).items()}
        self.calvings = dict(state.get("calvings", {}))
        self.quiet = {k: (float(v[0]), str(v[1])) for k, v in state.get("quiet", {}).items()}
        for cow, t in self.calvings.items():  # older state: calvings only
            self.quiet.setdefault(cow, (t + self.cfg.calving_suppress_s, "calving"))
