"""Mastitis timing: a quarter abnormal at two consecutive milkings is raised at
the second; one abnormal milking raises nothing (issue 9)."""

from __future__ import annotations

import json
from typing import Any

from agent.config.rules import RulesConfig
from tests.helpers_rules import engine, reading

MILKING_S = 12 * 3600.0


def _milking(eng: Any, t: float, ec: tuple[float, float, float, float],
             yield_kg: float = 15.0, cow: str = "cow-1") -> list[Any]:
    values = {"conductivity_lf": ec[0], "conductivity_rf": ec[1], "conductivity_lr": ec[2],
              "conductivity_rr": ec[3], "yield_kg": yield_kg, "duration_s": 400}
    return eng.on_reading(reading("mm-1", "milk-meter", t, values, animal=cow))


def _normal(i: int) -> tuple[float, float, float, float]:
    wobble = 0.05 * ((i % 3) - 1)
    return (5.0 + wobble, 5.1 - wobble, 5.0, 4.9 + wobble)


def _herd_history(eng: Any, milkings: int = 14) -> float:
    for i in range(milkings):
        assert _milking(eng, i * MILKING_S, _normal(i)) == []
    return milkings * MILKING_S


def test_ec_alone_on_one_quarter_is_raised_at_its_second_abnormal_milking() -> None:
    eng, _ = engine()
    t = _herd_history(eng)
    sick = (6.2, 5.1, 5.0, 4.9)  # +24 % over its own baseline, 1.24x its sisters
    assert _milking(eng, t, sick) == []  # the first abnormal milking: nothing yet
    out = [a for a in _milking(eng, t + MILKING_S, sick) if a.state == "raised"]
    assert len(out) == 1 and out[0].severity == "warning" and out[0].animal_id == "cow-1"
    assert "2 milkings in a row" in out[0].message and "EC LF" in out[0].message


def test_one_abnormal_milking_raises_nothing_when_not_clinical_at_once() -> None:
    cfg = RulesConfig.model_validate({"mastitis": {"clinical_at_once": False}})
    eng, _ = engine(cfg)
    t = _herd_history(eng)
    # 6.7 against 5.0 mS/cm with a yield drop, once (an incomplete milking).
    assert _milking(eng, t, (6.7, 5.1, 5.0, 4.9), yield_kg=10.0) == []
    out = []
    for k in range(1, 6):
        out += _milking(eng, t + k * MILKING_S, _normal(k))
    assert [a for a in out if a.state == "raised"] == []
    # The same milking twice in a row is likely clinical.
    t += 6 * MILKING_S
    assert _milking(eng, t, (6.7, 5.1, 5.0, 4.9), yield_kg=10.0) == []
    out = _milking(eng, t + MILKING_S, (6.8, 5.1, 5.0, 4.9), yield_kg=10.0)
    assert [(a.state, a.severity) for a in out] == [("raised", "critical")]


def test_two_abnormal_milkings_on_different_quarters_are_not_a_streak() -> None:
    eng, _ = engine()
    t = _herd_history(eng)
    assert _milking(eng, t, (6.2, 5.1, 5.0, 4.9)) == []
    out = _milking(eng, t + MILKING_S, (5.0, 6.3, 5.0, 4.9))
    assert [a for a in out if a.state == "raised"] == []


def test_a_quarter_that_rises_while_its_baseline_is_learnt_is_still_found() -> None:
    """Mastitis from her fourth milking: those milkings stay out of the quarter's
    baseline, and the quarter is judged on its three normal ones once she has
    been milked as often as a baseline needs."""
    eng, _ = engine()
    raised = []
    for i in range(10):
        ec = _normal(i) if i < 3 else (6.3, 5.1, 5.0, 4.9)
        raised += [a for a in _milking(eng, i * MILKING_S, ec) if a.state == "raised"]
    assert len(raised) == 1 and "EC LF" in raised[0].message
    assert min(len(h) for h in eng.mastitis.cows["cow-1"].quarters.values()) == 3


def test_a_quarter_that_always_stands_above_its_sisters_is_its_own_normal() -> None:
    eng, _ = engine()
    out = []
    for i in range(30):  # LF always 20 % above the others, from her first milking
        w = _normal(i)
        out += _milking(eng, i * MILKING_S, (w[0] * 1.2, w[1], w[2], w[3]))
    assert out == []


def test_the_streak_survives_a_reboot() -> None:
    eng, _ = engine()
    t = _herd_history(eng)
    assert _milking(eng, t, (6.2, 5.1, 5.0, 4.9)) == []
    state = json.loads(json.dumps(eng.to_state()))
    eng2, _ = engine()
    eng2.from_state(state)
    out = _milking(eng2, t + MILKING_S, (6.2, 5.1, 5.0, 4.9))
    assert [a.state for a in out] == ["raised"]
