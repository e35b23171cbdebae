"""The collar window's per-item extras stay in step with its items."""

from __future__ import annotations

import math
import random
from collections import Counter

from agent.detect.rules.collar import Window


def _log_rate(covered_s: float, value: float) -> float:
    return math.log((value + 1.0) * 3600 / covered_s)


def _check(w: Window) -> None:
    assert list(w.derived) == [_log_rate(d, v) for _, d, v, _ in w.items]
    assert w.hours == dict(Counter(h for *_, h in w.items))


def test_derived_values_and_hours_follow_appends_merges_and_expiry() -> None:
    r = random.Random(4)
    w = Window(4 * 3600.0, derive=_log_rate)
    t = 0.0
    merged = expired = 0
    for _ in range(3000):
        # Mostly live readings (15 min apart), some bursts (merged), some long gaps.
        t += r.choice([900.0, 900.0, 900.0, 1.0, 5.0, 7200.0, 30000.0])
        before = len(w.items)
        w.add(t, float(r.randint(0, 60)), int(t // 3600) % 24)
        merged += len(w.items) == before
        expired += len(w.items) < before
        _check(w)
    assert merged and expired
    again = Window.from_state(w.to_state(), _log_rate)
    assert again.items == w.items
    _check(again)
