"""Mastitis from quarter conductivity and yield (dairy-rules.md section 3).

Per milking and quarter: the rise over that quarter's own mean of the previous
milkings, the ratio to the cow's lowest quarter, and the absolute level; per
cow the yield against her median of recent milkings. EC evidence on a quarter
means both a rise and a ratio. An alert needs EC evidence plus a second signal
(yield drop or absolute level) at the same milking, or EC evidence persisting
over consecutive milkings. Abnormal milkings do not enter the baselines.

Farm events: a dried-off cow is not judged until she calves again; a calving
starts her baselines afresh (colostrum and fresh-cow milk differ from her
previous lactation).
"""

from __future__ import annotations

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
    streak: int = 0

    def to_state(self) -> dict[str, Any]:
        return {"quarters": {q: list(v) for q, v in self.quarters.items()},
                "yields": list(self.yields), "streak": self.streak}

    @classmethod
    def from_state(cls, data: dict[str, Any], n: int) -> _Cow:
        return cls({q: deque(v, maxlen=n) for q, v in data["quarters"].items()},
                   deque(data["yields"], maxlen=n), int(data["streak"]))


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
        cow = self.cows.setdefault(animal, _Cow(yields=deque(maxlen=n)))
        lowest = min(ecs.values())
        signals: list[Signal] = []
        strong: list[str] = []
        partial = False
        for q, ec in ecs.items():
            hist = cow.quarters.setdefault(q, deque(maxlen=n))
            ready = len(hist) >= cfg.min_baseline_milkings
            base = sum(hist) / len(hist) if ready else None
            rel = ec / base - 1 if base else 0.0
            ratio = ec / lowest
            if base is not None and rel >= cfg.rel_rise and ratio >= cfg.quarter_ratio:
                strong.append(q)
                signals.append(Signal(f"EC {q}", ec, baseline=base, limit=base * (1 + cfg.rel_rise),
                                      unit=" mS/cm",
                                      note=f"+{rel:.0%} over {len(hist)} milkings, "
                                      f"{ratio:.2f}x the lowest quarter"))
            partial = partial or rel >= cfg.rel_rise / 2
            if not ready or rel < cfg.rel_rise:
                hist.append(ec)
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
        cow.streak = cow.streak + 1 if strong else 0

        severity = None
        status: Status
        if strong and (yield_hit or abs_hit):
            status, severity = "raise", "critical"
            summary = f"Cow {animal}: likely clinical mastitis, quarter {', '.join(strong)}"
        elif strong and cow.streak >= cfg.persist_milkings:
            status = "raise"
            summary = (f"Cow {animal}: raised conductivity, quarter {', '.join(strong)}, "
                       f"{cow.streak} milkings in a row (subclinical?)")
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
            extra={"quarters": strong, "streak": cow.streak},
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
