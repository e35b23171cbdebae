"""Rules on what the cameras measure: fast loss of body condition, abnormal milk.

Body condition: one score per visit is noisy (pose, light, a dirty back), so a
cow's scores are pooled per day (the quality-weighted median) and the trend is
judged over the last ``window_days``: a Theil-Sen slope across the daily values
(robust to a bad day) times the span, and, as a second check, the drop from
the best three-day level in the window to the latest one. Both must show the
loss before an alert is raised; the alert clears when the loss over the window
falls below half the threshold (a cow regaining condition, or the window moving
past the loss).

Milk: a sample classed other than normal with enough confidence raises an
alert for the cow's quarter (or the cow, when the quarter is unknown); the
next confident normal sample of that quarter clears it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import AlertPolicy
from agent.detect.rules.base import Finding, Signal, median

DAY_S = 86400.0

# Their own alert policies: a loss or an abnormal sample is raised at once (each
# finding already pools many frames or days); bcs_loss escalates after a day
# unacknowledged, milk_abnormal (critical for blood and clots) after an hour.
# milk_abnormal clears only on normal samples at least 30 min apart: a cow's
# quarter is back to normal at her next milking but one, and an alert no cow id
# names (subject: the camera) is not closed by the very next cow's normal milk.
POLICIES = {
    "bcs_loss": AlertPolicy(severity="warning", escalate_after_s=86400.0),
    "milk_abnormal": AlertPolicy(severity="warning", escalate_after_s=3600.0,
                                 clear_after_s=1800.0, clear_count=2),
}
KEEP_DAYS = 120  # daily values kept per cow (bounded: the agent runs for months)


@dataclass(frozen=True)
class BcsLossParams:
    loss: float = 0.5  # BCS points lost within the window that raise the alert
    window_days: float = 30.0
    min_days: int = 4  # days with a score inside the window
    min_span_days: float = 7.0
    min_quality: float = 0.3  # visits seen worse than this do not count


def theil_sen(xs: list[float], ys: list[float]) -> float:
    """Median of pairwise slopes (robust: one bad day cannot tilt it)."""
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i])
              for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]]
    return median(slopes) if slopes else 0.0


def _weighted_median(pairs: list[tuple[float, float]]) -> float:
    pairs = sorted(pairs)
    total = sum(w for _, w in pairs)
    acc = 0.0
    for value, weight in pairs:
        acc += weight
        if acc >= total / 2:
            return value
    return pairs[-1][0]


@dataclass
class _Cow:
    days: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    order: deque[int] = field(default_factory=deque)


class BcsLossRule:
    name = "bcs_loss"

    def __init__(self, params: BcsLossParams | None = None) -> None:
        self.p = params or BcsLossParams()
        self.cows: dict[str, _Cow] = {}

    def daily(self, animal: str) -> list[tuple[int, float]]:
        """(day number, pooled score) for the cow, oldest first."""
        cow = self.cows.get(animal)
        if cow is None:
            return []
        return [(d, _weighted_median(cow.days[d])) for d in sorted(cow.days)]

    def add(self, animal: str, wall_ts: float, bcs: float, quality: float) -> None:
        if quality < self.p.min_quality:
            return
        cow = self.cows.setdefault(animal, _Cow())
        day = int(wall_ts // DAY_S)
        if day not in cow.days:
            cow.days[day] = []
            cow.order.append(day)
            while len(cow.order) > KEEP_DAYS:
                cow.days.pop(cow.order.popleft(), None)
        cow.days[day].append((bcs, max(quality, 1e-3)))

    def on_score(self, animal: str, wall_ts: float, bcs: float, quality: float,
                 at: float) -> Finding | None:
        """Add one visit's score; the finding for the cow's trend, if judged."""
        self.add(animal, wall_ts, bcs, quality)
        today = int(wall_ts // DAY_S)
        series = [(d, v) for d, v in self.daily(animal)
                  if today - d < self.p.window_days]
        if len(series) < self.p.min_days:
            return None
        span = series[-1][0] - series[0][0]
        if span < self.p.min_span_days:
            return None
        xs = [float(d) for d, _ in series]
        ys = [v for _, v in series]
        trend = -theil_sen(xs, ys) * min(span, self.p.window_days)
        levels = [median(ys[max(0, i - 2):i + 1]) for i in range(len(ys))]
        drop = max(levels) - levels[-1]
        subject = f"cow/{animal}"
        signals = [
            Signal("loss over the window (trend)", trend, limit=self.p.loss,
                   note=f"{len(series)} days over {span} days"),
            Signal("drop from the best 3-day level", drop, limit=0.75 * self.p.loss),
            Signal("latest daily score", ys[-1]),
        ]
        if trend >= self.p.loss and drop >= 0.75 * self.p.loss:
            status = "raise"
        elif trend < self.p.loss / 2:
            status = "clear"
        else:
            status = "hold"
        return Finding(self.name, subject, status, at, "warning",  # type: ignore[arg-type]
                       f"body condition fell {trend:.2f} in {span} days", signals,
                       animal_id=animal)

    def to_state(self) -> dict[str, Any]:
        return {a: {str(d): v for d, v in c.days.items()} for a, c in self.cows.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.cows = {}
        for animal, days in state.items():
            cow = _Cow()
            for d in sorted(days, key=int):
                cow.days[int(d)] = [(float(b), float(q)) for b, q in days[d]]
                cow.order.append(int(d))
            self.cows[animal] = cow


@dataclass(frozen=True)
class MilkParams:
    min_confidence: float = 0.7
    severity: dict[str, str] = field(default_factory=lambda: {
        "blood": "critical", "clots": "critical", "watery": "warning",
        "colostrum": "warning"})


class MilkRule:
    name = "milk_abnormal"

    def __init__(self, params: MilkParams | None = None) -> None:
        self.p = params or MilkParams()

    def on_check(self, result: str, confidence: float, at: float, *, animal: str | None,
                 quarter: str | None, camera: str) -> Finding | None:
        if confidence < self.p.min_confidence:
            return None  # unsure either way: neither raise nor clear
        who = f"cow/{animal}" if animal else f"camera/{camera}"
        subject = f"{who}/{quarter}" if quarter else who
        signal = Signal("milk", confidence, note=f"{result} (confidence {confidence:.2f})")
        if result == "normal":
            return Finding(self.name, subject, "clear", at, None, "milk normal again",
                           [signal], animal_id=animal)
        where = f" in quarter {quarter}" if quarter else ""
        return Finding(self.name, subject, "raise", at, self.p.severity.get(result, "warning"),
                       f"abnormal milk{where}: {result}; divert the milk and check the udder",
                       [signal], animal_id=animal, extra={"result": result})
