"""Body condition and milk checks through the runtime's detection and the alert
lifecycle: a fast loss raises bcs_loss once, abnormal milk raises and clears."""

from __future__ import annotations

from agent.clock import SystemClock
from agent.config.model import DetectConfig
from agent.detect.rules.body_condition import DAY_S
from agent.records.types import BodyCondition, MilkCheck, Stamp
from agent.runtime.detection import Detection
from tests.helpers_rules import FakeClock


def _bc(i: int, day: float, bcs: float, animal: str | None = "A-1") -> BodyCondition:
    return BodyCondition(f"bc{i}", "exit1", f"v{i}", bcs, bcs - 0.25, bcs + 0.25, 0.9,
                         Stamp(1.7e9 + day * DAY_S, i, "boot", True), "bcs", "t",
                         animal_id=animal)


def test_fast_loss_raises_one_alert_for_the_cow() -> None:
    det = Detection(DetectConfig(), SystemClock())
    raised = []
    for i, day in enumerate(range(40)):
        bcs = 3.5 if day < 15 else 3.5 - 0.035 * (day - 15)  # 0.875 lost over 25 days
        for alert in det.on_vision(_bc(i, day, round(bcs * 4) / 4)):
            if alert.state == "raised":
                raised.append(alert)
    assert len(raised) == 1
    assert raised[0].rule == "bcs_loss" and raised[0].animal_id == "A-1"
    # A visit nobody identified feeds no trend.
    assert det.on_vision(_bc(99, 41, 1.5, animal=None)) == []


def test_abnormal_milk_raises_then_clears() -> None:
    clock = FakeClock()
    det = Detection(DetectConfig(), clock)

    def check(i: int, result: str, conf: float) -> MilkCheck:
        return MilkCheck(f"m{i}", "cup1", result, conf, Stamp(1.7e9 + i, i, "boot", True),
                         "milk_cls", "t", animal_id="A-2", quarter="RF")

    raised = det.on_vision(check(1, "blood", 0.92))
    assert [(a.rule, a.state, a.severity) for a in raised] == [
        ("milk_abnormal", "raised", "critical")]
    assert det.on_vision(check(2, "normal", 0.4)) == []  # unsure: nothing changes
    clock.now += 60
    # One normal sample soon after (the next cow, when no id names her) is not enough.
    assert det.on_vision(check(3, "normal", 0.95)) == []
    clock.now += 8 * 3600  # the quarter's next milking: normal again
    cleared = det.on_vision(check(4, "normal", 0.95))
    assert [a.state for a in cleared] == ["cleared"]
