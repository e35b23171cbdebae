"""The cooling rule keeps the rise window's minimum and the smoothing span's
median as it goes instead of rescanning its readings: both must equal the
rescan (min() over the window, the middle of the sorted span) after every
reading, whatever the times do."""

from __future__ import annotations

import math
import random

from agent.config.rules import RulesConfig
from agent.detect.rules.cooling import MAX_KEPT, STORE_SMOOTH_S, CoolingRule, _Tank
from tests.helpers_rules import reading


def _check(tank: _Tank, t: float) -> None:
    lowest = min(v for _, v in tank.window)
    assert tank.lows is not None
    kept = tank.lows[0][1]
    assert kept == lowest and math.copysign(1, kept) == math.copysign(1, lowest)
    span = sorted(v for tt, v, _ in tank.run if tt >= t - STORE_SMOOTH_S)
    middle = span[len(span) // 2]
    assert tank.smooth_c == middle
    assert math.copysign(1, tank.smooth_c) == math.copysign(1, middle)


def _times(rng: random.Random, n: int) -> list[float]:
    """Mostly every 30 s, with gaps, bursts, repeats and a few steps back."""
    t, out = 0.0, []
    for _ in range(n):
        r = rng.random()
        t += (0.0 if r < 0.05 else -rng.uniform(1, 900) if r < 0.08
              else rng.uniform(0.1, 2) if r < 0.2 else rng.uniform(600, 3000) if r < 0.23
              else 30.0)
        out.append(t)
    return out


def test_kept_minimum_and_median_equal_a_rescan() -> None:
    rng = random.Random(7)
    cfg = RulesConfig()
    rule = CoolingRule(cfg.cooling, cfg.mapping)
    # Few distinct values (ties, 0.0 and -0.0 among them) and a wide range.
    values = [-0.0, 0.0, 0.5, 1.0, 3.5, 3.5, 4.0, 7.0, 12.0, 40.0]
    for i, t in enumerate(_times(rng, 6000)):
        temp = rng.choice(values) if rng.random() < 0.5 else round(rng.uniform(0, 12), 1)
        values_in = {"milk_temp_c": temp, "agitator": float(rng.random() < 0.5)}
        rule.on_reading(reading("tank-1", "bulk-tank", t, values_in), t)
        _check(rule.tanks["tank-1"], t)
        if i % 1500 == 1499:  # a restart: the kept structures are rebuilt
            rule.from_state(rule.to_state())


def test_a_burst_beyond_max_kept_keeps_them_equal() -> None:
    rng = random.Random(3)
    cfg = RulesConfig()
    rule = CoolingRule(cfg.cooling, cfg.mapping)
    for i in range(3 * MAX_KEPT):
        t = 100.0 + i * 0.05
        temp = round(3.5 + i / 1000 + rng.uniform(0, 1), 2)  # drifting: old ones matter
        rule.on_reading(reading("tank-1", "bulk-tank", t, {"milk_temp_c": temp}), t)
        _check(rule.tanks["tank-1"], t)
