"""Rumination against the herd: a dip the whole herd shares raises nothing,
one cow falling below the herd does, and a single low day does not."""

from __future__ import annotations

import math
import random

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
