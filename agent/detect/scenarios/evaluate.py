"""Run the RuleEngine over labelled scenarios and score alerts per rule.

An alert is *raised* once per episode of the lifecycle. It is a true positive
when an episode of the same rule and subject spans its time (from
``start - pre_s`` to ``end``), a false positive otherwise; alerts inside
``ignore`` spans count neither way. Recall is the share of episodes with at
least one true alert; time to first alert runs from the episode start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.detect.rules.engine import RuleEngine
from agent.detect.scenarios.model import Scenario
from agent.records import Alert

TICK_S = 60.0
ANIMAL_RULES = ("mastitis", "estrus", "rumination")


class SimClock:
    """The scenario's own time; the engine reads only wall time from it."""

    def __init__(self, wall0: float, mono0: float) -> None:
        self.wall0, self.mono0, self.now = wall0, mono0, mono0

    def wall(self) -> float:
        return self.wall0 + self.now - self.mono0

    def monotonic(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return int(self.now * 1e9)

    def synced(self) -> bool:
        return True


@dataclass
class RuleScore:
    alerts: int = 0
    true_alerts: int = 0
    episodes: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    delays_by_kind: dict[str, list[float]] = field(default_factory=dict)
    episodes_by_kind: dict[str, int] = field(default_factory=dict)
    # From the moment the fault could first be seen (Episode.observable_s).
    observable_by_kind: dict[str, list[float]] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.episodes if self.episodes else None


def subject_of(alert: Alert) -> str:
    if alert.rule in ANIMAL_RULES:
        return alert.animal_id or ""
    return alert.sensor_id or ""


def run(scenario: Scenario, make_engine: Callable[[SimClock], RuleEngine]) -> list[Alert]:
    """Feed the readings in order, ticking once a simulated minute."""
    from agent.detect.scenarios.barn import WALL0

    clock = SimClock(WALL0, scenario.mono0_s)
    engine = make_engine(clock)
    alerts: list[Alert] = []
    next_tick = scenario.mono0_s + TICK_S
    for reading in scenario.readings:
        mono = reading.stamp.mono_ns / 1e9
        while next_tick <= mono:
            clock.now = next_tick
            alerts += engine.tick(next_tick)
            next_tick += TICK_S
        clock.now = mono
        alerts += engine.on_reading(reading)
    return alerts


def score(scenario: Scenario, alerts: Iterable[Alert],
          scores: dict[str, RuleScore] | None = None) -> dict[str, RuleScore]:
    """Score RuleEngine alerts (``run``) against the scenario's episodes."""
    mono0 = scenario.mono0_s
    raised = ((a.rule, subject_of(a), a.stamp.mono_ns / 1e9 - mono0)
              for a in alerts if a.state == "raised")
    return score_raised(scenario, raised, scores)


def score_raised(scenario: Scenario, raised: Iterable[tuple[str, str, float]],
                 scores: dict[str, RuleScore] | None = None) -> dict[str, RuleScore]:
    """Score raised alerts given as (rule, subject, seconds from the scenario's start)."""
    scores = {} if scores is None else scores
    episodes = scenario.episodes
    first: dict[int, float] = {}
    for rule, subject, t in raised:
        match = [i for i, ep in enumerate(episodes)
                 if ep.rule == rule and ep.subject == subject
                 and ep.start - ep.pre_s <= t <= ep.end]
        if match and all(episodes[i].ignore for i in match):
            continue
        sc = scores.setdefault(rule, RuleScore())
        sc.alerts += 1
        real = [i for i in match if not episodes[i].ignore]
        if real:
            sc.true_alerts += 1
            for i in real:
                first[i] = min(first.get(i, t), t)
    for i, ep in enumerate(episodes):
        if ep.ignore:
            continue
        sc = scores.setdefault(ep.rule, RuleScore())
        sc.episodes += 1
        sc.episodes_by_kind[ep.kind or "-"] = sc.episodes_by_kind.get(ep.kind or "-", 0) + 1
        if i in first:
            sc.detected += 1
            delay = max(0.0, first[i] - ep.start)
            sc.delays.append(delay)
            sc.delays_by_kind.setdefault(ep.kind or "-", []).append(delay)
            if ep.observable_s is not None:
                sc.observable_by_kind.setdefault(ep.kind or "-", []).append(
                    max(0.0, first[i] - ep.observable_s))
    return scores
