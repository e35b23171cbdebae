"""Rumination against the herd: a dip the whole herd shares raises nothing,
one cow falling below the herd does, and a single low day does not. Estrus
against the herd and on the 8-h window: new cows, herd-wide rises, weak heats,
collar gaps, saved states and a changed window."""

from __future__ import annotations

import json
import math
import random

import pytest
from pydantic import ValidationError

from agent.config.rules import RulesConfig
from tests.helpers_rules import engine, reading

STEP = 900.0


def _collar(eng, t, cow, act, rum):  # type: ignore[no-untyped-def]
    return eng.on_reading(reading(f"col-{cow}", "neck-collar", t,
                                  {"activity": act, "rumination_min": rum}, animal=cow))


def _herd(eng, r, t0, t1, cows, act=lambda cow, t: 1.0, rum=lambda cow, t: 1.0):  # type: ignore[no-untyped-def]
    out = []
    t = t0
    while t < t1:
        hod = (t / 3600) % 24
        shape = 1 + 0.5 * math.sin(2 * math.pi * (hod - 8) / 24)
        for n, cow in enumerate(cows):
            a = (15 + n) * shape * math.exp(r.gauss(0, 0.15)) * act(cow, t)
            m = max(0.0, min(15.0, 5.5 * rum(cow, t) + r.gauss(0, 0.5)))
            out += _collar(eng, t + n, cow, round(a), round(m))
        t += STEP
    return out


def test_herd_wide_rumination_dip_raises_nothing_but_one_cow_does() -> None:
    eng, _ = engine()
    r = random.Random(2)
    herd = [f"cow-{n}" for n in range(10)]
    _herd(eng, r, 0, 8 * 86400, herd)
    dip = 8 * 86400  # two days of feed trouble: the whole herd ruminates 35 % less
    out = _herd(eng, r, dip, dip + 2 * 86400, herd, rum=lambda cow, t: 0.65)
    assert not [a for a in out if a.rule == "rumination"]
    sick = lambda cow, t: 0.5 if cow == "cow-3" else 1.0
    out = _herd(eng, r, dip + 3 * 86400, dip + 6 * 86400, herd, rum=sick)
    rum = [a for a in out if a.rule == "rumination" and a.state == "raised"]
    assert [a.animal_id for a in rum] == ["cow-3"]


def test_a_single_low_rumination_day_raises_nothing() -> None:
    eng, _ = engine()
    r = random.Random(3)
    herd = [f"cow-{n}" for n in range(10)]
    _herd(eng, r, 0, 8 * 86400, herd)
    low = 8 * 86400
    out = _herd(eng, r, low, low + 3 * 86400, herd,
                rum=lambda cow, t: 0.65 if cow == "cow-2" and t < low + 86400 else 1.0)
    assert not [a for a in out if a.rule == "rumination"]


def test_after_hot_days_a_cow_is_judged_against_the_recovered_herd() -> None:
    # A week with four hot days (the whole herd chews 15 % less) pulls every
    # baseline down; when it cools the herd chews above its baselines again. A
    # cow that then falls 28 % below her usual is only 15 % below her baseline.
    eng, _ = engine()
    r = random.Random(4)
    herd = [f"cow-{n}" for n in range(10)]
    hot = lambda cow, t: 0.85 if (t // 86400) % 7 in (2, 3, 4, 5) else 1.0
    _herd(eng, r, 0, 7 * 86400, herd, rum=hot)
    t0 = 7 * 86400
    out = _herd(eng, r, t0, t0 + 4 * 86400, herd,
                rum=lambda cow, t: 0.72 if cow == "cow-5" and t > t0 + 86400 else 1.0)
    rum = [a for a in out if a.rule == "rumination" and a.state == "raised"]
    assert [a.animal_id for a in rum] == ["cow-5"]


# -- estrus: a new cow against the herd, a herd-wide rise is no heat ----------

def _heat(cow: str, start: float, level: float, hours: float = 14.0):  # type: ignore[no-untyped-def]
    def act(c: str, t: float) -> float:
        if c != cow or not start <= t <= start + hours * 3600:
            return 1.0
        return 1 + (level - 1) * min(1.0, (t - start) / 7200)  # a 2 h ramp, as heats rise
    return act


def _estrus(out):  # type: ignore[no-untyped-def]
    return [a for a in out if a.rule == "estrus" and a.state == "raised"]


def test_a_new_cow_in_heat_on_day_three_is_found_against_the_herd_within_6_h() -> None:
    eng, _ = engine()
    r = random.Random(5)
    herd = [f"cow-{n}" for n in range(10)]
    onset = 3 * 86400 + 10 * 3600  # her third day: no baseline of her own yet
    out = _herd(eng, r, 0, onset + 86400, herd, act=_heat("cow-4", onset, 3.0))
    est = _estrus(out)
    assert [a.animal_id for a in est] == ["cow-4"]
    assert "herd" in est[0].message
    assert est[0].details["baseline"] == "herd"
    at = est[0].stamp.mono_ns / 1e9
    assert onset < at <= onset + 6 * 3600


def test_a_whole_new_herd_stirred_up_together_is_not_a_heat() -> None:
    eng, _ = engine()
    r = random.Random(6)
    herd = [f"cow-{n}" for n in range(10)]
    stir = 2 * 86400 + 9 * 3600
    gain = {cow: r.uniform(0.7, 1.3) for cow in herd}  # cows react unequally

    def regrouped(cow: str, t: float) -> float:
        return 1 + 1.5 * gain[cow] if stir <= t < stir + 8 * 3600 else 1.0

    out = _herd(eng, r, 0, stir + 86400, herd, act=regrouped)
    assert _estrus(out) == []


def test_a_settled_cow_in_heat_is_raised_within_6_h_of_onset() -> None:
    eng, _ = engine()
    r = random.Random(7)
    herd = [f"cow-{n}" for n in range(10)]
    onset = 9 * 86400 + 20 * 3600
    out = _herd(eng, r, 0, onset + 86400, herd, act=_heat("cow-7", onset, 2.5))
    est = _estrus(out)
    assert [a.animal_id for a in est] == ["cow-7"]
    assert est[0].details["baseline"] == "own"
    at = est[0].stamp.mono_ns / 1e9
    assert onset < at <= onset + 6 * 3600


def _restless(cow: str, sigma: float, seed: int, act):  # type: ignore[no-untyped-def]
    """``act`` with one cow restless from hour to hour (her own hourly factor)."""
    r = random.Random(seed)
    hourly: dict[int, float] = {}

    def restless(c: str, t: float) -> float:
        f = act(c, t)
        if c == cow:
            h = int(t // 3600)
            if h not in hourly:
                hourly[h] = math.exp(r.gauss(0, sigma))
            f *= hourly[h]
        return f
    return restless


def _weak_heat_in_a_restless_cow(long_window_s: float | None):  # type: ignore[no-untyped-def]
    cfg = RulesConfig()
    cfg.estrus.long_window_s = long_window_s
    eng, _ = engine(cfg)
    herd = [f"cow-{n}" for n in range(10)]
    onset = 11 * 86400 + 20 * 3600
    act = _restless("cow-7", 0.35, 112, _heat("cow-7", onset, 1.7, hours=18.0))
    return _estrus(_herd(eng, random.Random(12), 0, onset + 86400, herd, act=act)), onset


def test_a_weak_long_heat_of_a_restless_cow_is_found_by_the_long_window() -> None:
    # 1.7x for 18 h in a cow whose activity wavers +-35 % from hour to hour: her
    # 4-h median never clears her threshold, the steadier 8-h median does.
    est, onset = _weak_heat_in_a_restless_cow(8 * 3600.0)
    assert [a.animal_id for a in est] == ["cow-7"]
    assert est[0].details["window_h"] == 8.0 and "for 8 h" in est[0].message
    assert onset < est[0].stamp.mono_ns / 1e9 <= onset + 18 * 3600
    assert _weak_heat_in_a_restless_cow(None)[0] == []  # the 4-h window alone misses it


def _saved_before_the_long_window(state):  # type: ignore[no-untyped-def]
    """An engine state as it was saved before the 8-h window existed."""
    rule = state["rules"]["estrus"]
    for key in ("herd_long", "long_settled_t", "herd_long_rate", "herd_long_spread"):
        del rule[key]
    for cow in rule["cows"].values():
        for key in ("long", "long_signal", "long_spread"):
            del cow[key]
    return state


def test_a_state_saved_before_the_long_window_loads_and_the_long_window_works() -> None:
    # The restless cow's weak heat of the test above, with a restart from a state
    # saved before the long window existed two days before it.
    onset = 11 * 86400 + 20 * 3600
    act = _restless("cow-7", 0.35, 112, _heat("cow-7", onset, 1.7, hours=18.0))
    herd = [f"cow-{n}" for n in range(10)]
    r = random.Random(12)
    eng, _ = engine()
    _herd(eng, r, 0, 9 * 86400, herd, act=act)
    again, _ = engine()
    again.from_state(_saved_before_the_long_window(eng.to_state()))
    est = _estrus(_herd(again, r, 9 * 86400, onset + 86400, herd, act=act))
    assert [a.animal_id for a in est] == ["cow-7"]
    assert est[0].details["window_h"] == 8.0 and est[0].details["baseline"] == "own"
    assert onset < est[0].stamp.mono_ns / 1e9 <= onset + 18 * 3600


def test_a_new_cow_back_from_a_long_collar_gap_is_not_judged_on_her_old_rate() -> None:
    # Silent from 15:00 for 12 h on her third day: her 8-h rate from before the gap
    # (afternoon) is not hers at night; until her 8-h window is covered again it
    # judges nothing (it raised a false heat before).
    eng, _ = engine()
    r = random.Random(5)
    herd = [f"cow-{n}" for n in range(10)]
    gap = 3 * 86400 + 15 * 3600
    out = []
    t = 0.0
    while t < gap + 24 * 3600:
        shape = 1 + 0.5 * math.sin(2 * math.pi * ((t / 3600) % 24 - 8) / 24)
        for n, cow in enumerate(herd):
            a = (15 + n) * shape * math.exp(r.gauss(0, 0.15))
            if cow != "cow-4" or not gap <= t < gap + 12 * 3600:
                out += eng.on_reading(reading(f"col-{cow}", "neck-collar", t + n,
                                              {"activity": round(a)}, animal=cow))
        t += STEP
    assert _estrus(out) == []


def test_the_long_window_must_be_longer_than_the_short_one() -> None:
    with pytest.raises(ValidationError, match="long_window_s"):
        RulesConfig.model_validate({"estrus": {"window_s": 4 * 3600, "long_window_s": 3600}})
    assert RulesConfig.model_validate({"estrus": {"long_window_s": None}}).estrus.long_window_s is None


def _weak_heat_in_a_new_cow(long_window_s: float | None):  # type: ignore[no-untyped-def]
    cfg = RulesConfig()
    cfg.estrus.long_window_s = long_window_s
    eng, _ = engine(cfg)
    herd = [f"cow-{n}" for n in range(10)]
    onset = 3 * 86400 + 10 * 3600  # her third day: judged against the herd
    act = _heat("cow-4", onset, 2.0, hours=16.0)
    return _estrus(_herd(eng, random.Random(5), 0, onset + 86400, herd, act=act)), onset


def test_a_weak_heat_of_a_new_cow_is_found_by_her_long_place_in_the_herd() -> None:
    # 2x for 16 h in her first week: under the 4-h window's floor (2.2x) all
    # the way; her 8-h place in the herd wavers less and crosses.
    est, onset = _weak_heat_in_a_new_cow(8 * 3600.0)
    assert [a.animal_id for a in est] == ["cow-4"]
    assert est[0].details["baseline"] == "herd" and est[0].details["window_h"] == 8.0
    assert "herd" in est[0].message and "for 8 h" in est[0].message
    assert onset < est[0].stamp.mono_ns / 1e9 <= onset + 12 * 3600
    assert _weak_heat_in_a_new_cow(None)[0] == []


def _estrus_rule(eng):  # type: ignore[no-untyped-def]
    return next(r for r in eng.rules if r.name == "estrus")


def _settled_herd(seed: int, cows: int):  # type: ignore[no-untyped-def]
    """An engine that has heard ``cows`` quiet cows for 9 days: (engine, rng, herd)."""
    eng, _ = engine()
    r = random.Random(seed)
    herd = [f"cow-{n}" for n in range(cows)]
    _herd(eng, r, 0, 9 * 86400, herd)
    return eng, r, herd


def test_a_restored_long_window_follows_the_configured_length() -> None:
    eng, r, herd = _settled_herd(9, 6)
    state = json.loads(json.dumps(eng.to_state()))
    spread = _estrus_rule(eng).cows["cow-1"].long_spread
    longer = RulesConfig.model_validate({"estrus": {"long_window_s": 12 * 3600}})
    again, _ = engine(longer)
    again.from_state(state)
    _herd(again, r, 9 * 86400, 9 * 86400 + 3600, herd)
    cow = _estrus_rule(again).cows["cow-1"]
    assert cow.long is not None and cow.long.span_s == 12 * 3600
    # learnt over 8 h: a median over 12 h wavers sqrt(8/12) as much
    assert cow.long_spread == pytest.approx(spread * math.sqrt(8 / 12), rel=0.05)
    off, _ = engine(RulesConfig.model_validate({"estrus": {"long_window_s": None}}))
    off.from_state(state)
    _herd(off, r, 9 * 86400, 9 * 86400 + 3600, herd)
    assert _estrus_rule(off).cows["cow-1"].long is None
    assert all(c.long_signal is None for c in _estrus_rule(off).cows.values())


def test_an_upgraded_cow_starts_her_long_spread_from_her_short_one() -> None:
    eng, r, herd = _settled_herd(10, 6)
    again, _ = engine()
    again.from_state(_saved_before_the_long_window(json.loads(json.dumps(eng.to_state()))))
    short = _estrus_rule(again).cows["cow-2"].spread
    _herd(again, r, 9 * 86400, 9 * 86400 + 900, herd)
    assert _estrus_rule(again).cows["cow-2"].long_spread == pytest.approx(
        short * math.sqrt(0.5), rel=0.05)


def test_a_rise_shared_by_a_herd_of_five_is_the_long_windows_herd_shift() -> None:
    # With exactly herd_min_cows cows every one must count, the cow being read too.
    eng, r, herd = _settled_herd(11, 5)
    rise = 9 * 86400
    _herd(eng, r, rise, rise + 10 * 3600, herd, act=lambda cow, t: 1.6)
    assert _estrus_rule(eng)._herd_long > math.log(1.3)
