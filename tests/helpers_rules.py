"""Helpers for the dairy-rule tests: readings at chosen monotonic times."""

from __future__ import annotations

from agent.config.rules import RulesConfig
from agent.detect.rules import RuleEngine
from agent.records import Reading, Stamp
from agent.records.types import stable_id

WALL0 = 1_748_736_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def wall(self) -> float:
        return WALL0 + self.now

    def monotonic(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return int(self.now * 1e9)

    def synced(self) -> bool:
        return True


def reading(sensor: str, firmware: str, t: float, values: dict[str, float],
            animal: str | None = None, boot: str = "boot-a") -> Reading:
    ns = int(t * 1e9)
    return Reading(record_id=stable_id(sensor, str(ns)), sensor_id=sensor, firmware=firmware,
                   topic=f"barn/{sensor}", values=dict(values), raw=dict(values), units={},
                   stamp=Stamp(WALL0 + t, ns, boot, True), animal_id=animal)


def engine(cfg: RulesConfig | None = None) -> tuple[RuleEngine, FakeClock]:
    clock = FakeClock()
    return RuleEngine(cfg or RulesConfig(), clock), clock
