"""Mastitis from quarter conductivity and yield (dairy-rules.md section 3).

Per milking and quarter: the rise over that quarter's own mean of the previous
normal milkings, its ratio to the median of the cow's other quarters at the
same milking over the ratio it usually has (the inter-quarter comparison:
what moves the whole udder, a hot day or the time of day cancels out), and the
absolute level; per cow the yield against her median of recent milkings. EC
evidence on a quarter means both a rise and a ratio. The same quarter with EC
evidence at ``persist_milkings`` (2) consecutive milkings raises, at the
second: critical (likely clinical) with a yield drop or the absolute level,
a warning otherwise; one abnormal milking raises nothing unless
``clinical_at_once`` (EC evidence with a yield drop or the absolute level).
Abnormal milkings do not enter the baselines, also while they are being
learnt; a quarter that rose then is judged on its normal milkings once the
cow has been milked ``min_baseline_milkings`` times.

Farm events: a dried-off cow is not judged until she calves again; a calving
starts her baselines afresh (colostrum and fresh-cow milk differ from her
previous lactation).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import MastitisConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status, Tracked, every_key_tracked, median

RULE = "mastitis"
DRY_KEY = "\x1fdry"  # in the saved state beside the cows; never a cow id


@dataclass(slots=True)
class _Cow:
    quarters: dict[str, deque[float]] = field(default_factory=dict)
    yields: deque[float] = field(default_factory=deque)
    # Per quarter: log(EC / the median of her other quarters) at normal milkings
    # (its usual place among its sisters) and its run of abnormal milkings.
    sisters: dict[str, deque[float]] = field(default_factory=dict)
    streaks: dict[str, int] = field(default_factory=dict)
    milkings: int = 0  # milkings seen since her data began (or she calved)

    @property
    def streak(self) -> int:
        return max(self.streaks.values(), default=0)

    def to_state(self) -> dict[str, Any]:
        return {"quarters": {q: list(v) for q, v in self.quarters.items()},
                "yields": list(self.yields), "streak": self.streak,
                "sisters": {q: list(v) for q, v in self.sisters.items()},
                "streaks": dict(self.streaks), "milkings": self.milkings}

    @classmethod
    def from_state(cls, data: dict[str, Any], n: int) -> _Cow:
        # State saved before the sister baselines: they are learnt afresh.
        return cls({q: deque(v, maxlen=n) for q, v in data["quarters"].items()},
                   deque(data["yields"], maxlen=n),
                   {q: deque(v, maxlen=n) for q, v in data.get("sisters", {}).items()},
                   {q: int(v) for q, v in data.get("streaks", {}).items()},
                   int(data.get("milkings", len(data["yields"]))))


class MastitisRule:
    name = RULE
    roles: tuple[str, ...] = ("milk_meter",)

    def __init__(self, config: MastitisConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.tracked: Tracked = every_key_tracked
        self.map = mapping
        self.cows: dict[str, _Cow] = {}
        self.dry: set[str] = set()

    def note_event(self, kind: str, animal_id: str, t: float) -> None:
        """A farm event for this cow: a dry-off stops the rule for her, a calving
        restarts it with fresh baselines."""
        if kind == "dry_off":
            self.dry.add(animal_id)
        elif kind == "calving":
            self.dry.discard(animal_id)
            self.cows.pop(animal_id, None)

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        animal = reading.animal_id
        if animal is None or animal in self.dry:
            return []
        cfg, n = self.cfg, self.cfg.baseline_milkings
        ecs = {q: reading.values[k] for q, k in self.map.conductivity_keys.items()
               if k in reading.values and reading.values[k] > 0}
        if len(ecs) < 2:
            return []
        cow = self.cows.get(animal)
        if cow is None:
            cow = self.cows[animal] = _Cow(yields=deque(maxlen=n))
        logs = {q: math.log(ec) for q, ec in ecs.items()}
        signals: list[Signal] = []
        strong: list[str] = []
        partial = False
        for q, ec in ecs.items():
            hist = cow.quarters.get(q)
            if hist is None:
                hist = cow.quarters[q] = deque(maxlen=n)
            sis = cow.sisters.get(q)
            if sis is None:
                sis = cow.sisters[q] = deque(maxlen=n)
            # Judged once it has its baseline, or (a quarter that rose while
            # its baseline was being learnt, and whose abnormal milkings were
            # kept out of it) on the normal milkings it has once the cow has
            # been milked that often.
            ready = len(hist) >= cfg.min_baseline_milkings or (
                len(hist) >= 2 and cow.milkings >= cfg.min_baseline_milkings)
            base = sum(hist) / len(hist) if hist else None
            rel = ec / base - 1 if base else 0.0
            # Against her other quarters at this milking (what the whole udder
            # does, a hot day, the time of day, cancels out), relative to where
            # this quarter usually stands among them.
            others = sorted(v for k, v in logs.items() if k != q)
            mid = len(others) // 2
            sister = logs[q] - (others[mid] if len(others) % 2 else
                                (others[mid - 1] + others[mid]) / 2)
            usual = sum(sis) / len(sis) if len(sis) >= cfg.min_baseline_milkings else 0.0
            ratio = math.exp(sister - usual)
            # Judged (and kept out of the baselines) once half a baseline is in:
            # on two values a quarter that sits high by nature, first read low by
            # chance, would be kept out for good.
            abnormal = (rel >= cfg.rel_rise and ratio >= cfg.quarter_ratio
                        and len(hist) >= max(2, cfg.min_baseline_milkings // 2))
            if ready and abnormal and base is not None:
                strong.append(q)
                signals.append(Signal(f"EC {q}", ec, baseline=base, limit=base * (1 + cfg.rel_rise),
                                      unit=" mS/cm",
                                      note=f"+{rel:.0%} over {len(hist)} milkings, "
                                      f"{ratio:.2f}x its usual share of the other quarters"))
            partial = partial or (ready and rel >= cfg.rel_rise / 2)
            # Abnormal milkings stay out of the baselines: risen over its own
            # history and standing out from its sisters (a quarter that stood
            # out from its first milking did not change: that is its baseline).
            if not abnormal:
                hist.append(ec)
                sis.append(sister)
        cow.milkings += 1
        for q in ecs:
            cow.streaks[q] = cow.streaks.get(q, 0) + 1 if q in strong else 0
        abs_hit = [q for q in strong if ecs[q] > cfg.absolute_ms_cm]
        for q in abs_hit:
            signals.append(Signal(f"EC {q} absolute", ecs[q], limit=cfg.absolute_ms_cm,
                                  unit=" mS/cm"))
        yield_kg = reading.values.get(self.map.yield_key)
        yield_hit = False
        if yield_kg is not None:
            if len(cow.yields) >= cfg.min_baseline_milkings:
                expected = median(cow.yields)
                yield_hit = yield_kg < expected * (1 - cfg.yield_drop)
                if yield_hit:
                    signals.append(Signal("yield", yield_kg, baseline=expected,
                                          limit=expected * (1 - cfg.yield_drop), unit=" kg"))
            if not strong:
                cow.yields.append(yield_kg)
        # EC evidence alone: the same quarter abnormal at consecutive milkings
        # (one abnormal milking, a blip of the meter, is not enough).
        persisting = [q for q in strong if cow.streaks[q] >= cfg.persist_milkings]
        streak = max((cow.streaks[q] for q in strong), default=0)

        severity = None
        status: Status
        if persisting and (yield_hit or abs_hit):
            status, severity = "raise", "critical"
            summary = (f"Cow {animal}: likely clinical mastitis, quarter {', '.join(persisting)}, "
                       f"{streak} milkings in a row")
        elif strong and (yield_hit or abs_hit) and cfg.clinical_at_once:
            status, severity = "raise", "critical"
            summary = f"Cow {animal}: likely clinical mastitis, quarter {', '.join(strong)}"
        elif persisting:
            status = "raise"
            summary = (f"Cow {animal}: raised conductivity, quarter {', '.join(persisting)}, "
                       f"{streak} milkings in a row (subclinical?)")
        elif strong or partial:
            status, summary = "hold", f"Cow {animal}: conductivity watch"
        else:
            status, summary = "clear", f"Cow {animal}: udder signals normal"
        subject = f"cow:{animal}"
        if status != "raise" and not self.tracked(RULE, subject, ""):
            return []  # nothing open or pending for her: it would be dropped
        return [Finding(
            rule=RULE, subject=subject, status=status, at=t, severity=severity,
            summary=summary, signals=signals, sensor_id=reading.sensor_id, animal_id=animal,
            extra={"quarters": strong, "streak": streak},
        )]

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: v.to_state() for k, v in self.cows.items()}
        if self.dry:
            state[DRY_KEY] = sorted(self.dry)
        return state

    def from_state(self, state: dict[str, Any]) -> None:
        n = self.cfg.baseline_milkings
        self.cows = {k: _Cow.from_state(v, n) for k, v in state.items() if k != DRY_KEY}
        self.dry = set(state.get(DRY_KEY, []))
