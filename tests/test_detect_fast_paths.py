"""The detection code's per-reading shortcuts give exactly what the plain
computation gives: each is run side by side with the computation it replaces,
on random streams, and every finding and the whole saved state must match.

- estrus: each collar window item's log ratio is kept and computed again only
  when the item or its hour's baseline changes (``estrus._ratios``);
- rumination: the median of her daily totals is kept until they change;
- the sensor checks: a sensor's dropout deadline is computed when first needed,
  not at every message, and a gap within ``dropout_floor_s`` is not capped;
- seq_lik: the one-bin context and the binning written out in ``score``.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from agent.config.rules import PlausibilityConfig, RulesConfig
from agent.config.sensor_health import SensorHealthConfig
from agent.detect.anomaly.seq_lik import SeqLik, TransitionMemory
from agent.detect.rules import estrus as estrus_mod
from agent.detect.rules.base import Finding, median
from agent.detect.rules.estrus import FLOOR, EstrusRule
from agent.detect.rules.plausibility import PlausibilityRule
from agent.detect.rules.rumination import RuminationRule, _Cow
from agent.detect.rules.sensor_health import Rhythm
from tests.helpers_rules import reading


def _full_ratios(w: Any, base: list[float | None], dirty: set[int]) -> list[float]:
    """Every item's ratio from scratch (the computation the cache replaces)."""
    dirty.clear()
    return [math.log((v + FLOOR) / ((base[h] or 0.0) * d / 3600 + FLOOR))
            for _, d, v, h in w.items]


def _dump(findings: list[Finding]) -> str:
    return json.dumps([[f.rule, f.subject, f.status, f.at, f.summary, f.explanation(),
                        f.extra, f.severity] for f in findings], sort_keys=True)


def _collar_stream(seed: int, cows: int, days: float) -> list[tuple[float, str, float, float]]:
    """(t, cow, activity, rumination) per reading: mostly every 15 min, with
    bursts (merged into the window's last item), long gaps and heats."""
    r = random.Random(seed)
    out = []
    for c in range(cows):
        t = r.uniform(0, 900)
        while t < days * 86400:
            t += r.choice([900.0] * 12 + [1.0, 5.0, 30.0, 3 * 3600.0])
            heat = 3.0 if (t / 86400) % 9 < 0.6 and c % 3 == 0 else 1.0
            hour = (t / 3600) % 24
            act = max(0.0, r.gauss(60 + 30 * math.sin(hour / 24 * 2 * math.pi), 12)) * heat
            out.append((t, f"{1001 + c}", float(round(act)), float(r.randint(0, 15))))
    out.sort()
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_estrus_ratio_cache_matches_recomputing_every_item(seed: int) -> None:
    cfg = RulesConfig()
    cfg.estrus.warmup_days = 2.0
    cfg.estrus.min_samples = 2
    fast = EstrusRule(cfg.estrus, cfg.mapping)
    plain = EstrusRule(cfg.estrus, cfg.mapping)
    cached = estrus_mod._ratios
    judged = 0
    for i, (t, cow, act, _) in enumerate(_collar_stream(seed, 12, 8.0)):
        rd = reading(f"c{cow}", "neck-collar", t, {"activity": act}, animal=cow)
        got = _dump(fast.on_reading(rd, t))
        estrus_mod._ratios = _full_ratios  # type: ignore[assignment]
        try:
            want = _dump(plain.on_reading(rd, t))
        finally:
            estrus_mod._ratios = cached
        assert got == want
        judged += got != "[]"
        if i % 997 == 0:  # a restart: the restored window has nothing cached
            assert fast.to_state() == plain.to_state()
            fast.from_state(json.loads(json.dumps(fast.to_state())))
    assert fast.to_state() == plain.to_state()
    assert judged > 50  # the cows were judged, not only learnt


def _plain_baseline(self: _Cow, n: int) -> float:
    return median(self.daily[-n:])


def test_rumination_baseline_memo_matches_the_median_of_her_days() -> None:
    cfg = RulesConfig()
    fast = RuminationRule(cfg.rumination, cfg.mapping)
    plain = RuminationRule(cfg.rumination, cfg.mapping)
    memo = _Cow.baseline
    found = 0
    for i, (t, cow, _, rum) in enumerate(_collar_stream(3, 8, 20.0)):
        if i == 4000:  # a calving clears her days in place; a dry-off too
            for rule in (fast, plain):
                rule.note_event("calving", "1001", t)
                rule.note_event("dry_off", "1002", t)
        rd = reading(f"c{cow}", "neck-collar", t, {"rumination_min": rum}, animal=cow)
        got = _dump(fast.on_reading(rd, t))
        _Cow.baseline = _plain_baseline  # type: ignore[method-assign]
        try:
            want = _dump(plain.on_reading(rd, t))
        finally:
            _Cow.baseline = memo  # type: ignore[method-assign]
        assert got == want
        found += got != "[]"
    assert fast.to_state() == plain.to_state()
    assert found


class _Eager(PlausibilityRule):
    """The sensor checks computing every deadline and timeout as the message comes."""

    def _heard(self, sid: str, s: Any, arrival: float) -> None:
        super()._heard(sid, s, arrival)
        self._materialise(s)

    def check(self, reading: Any, role: str, arrival: float,
              t: float | None = None) -> tuple[list[Finding], set[str]]:
        for s in self.sensors.values():
            assert not s.stale
        return super().check(reading, role, arrival, t)


def test_lazy_dropout_deadlines_match_computing_them_at_every_message() -> None:
    r = random.Random(5)
    cfg = RulesConfig()
    fast = PlausibilityRule(cfg.plausibility, None, cfg.mapping)
    eager = _Eager(cfg.plausibility, None, cfg.mapping)
    sensors = {f"n{i}": r.choice([60.0, 300.0, 900.0, 2400.0, 5000.0]) for i in range(12)}
    next_t = {sid: r.uniform(0, p) for sid, p in sensors.items()}
    t = tick = 0.0
    raised = 0
    for step in range(20000):
        sid = min(next_t, key=next_t.__getitem__)
        t = next_t[sid]
        period = sensors[sid]
        # Regular, lost messages, long silences (dropouts) and whole-barn outages.
        gap = period * r.choice([1, 1, 1, 1, 2, 3]) + r.uniform(-5, 5)
        if r.random() < 0.003:
            gap += r.uniform(2, 12) * 3600
        next_t[sid] = t + gap
        while tick + 60.0 <= t:
            tick += 60.0
            got, want = fast.due(tick), eager.due(tick)
            assert got == want
            if got:
                fa, fb = _dump(fast.tick(tick)), _dump(eager.tick(tick))
                assert fa == fb
                raised += "dropout" in fa
        rd = reading(sid, "water-flow", t, {"flow_lpm": r.uniform(0, 10)})
        ca, cb = fast.check(rd, "water", t, t), eager.check(rd, "water", t, t)
        assert _dump(ca[0]) == _dump(cb[0]) and ca[1] == cb[1]
        if step == 9000:  # new thresholds: each deadline stays as of its message
            health = SensorHealthConfig(dropout_floor_s=1200.0, dropout_median_factor=5.0)
            new = PlausibilityConfig(health=health)
            fast.reconfigure(new)
            eager.reconfigure(new)
        if step % 4999 == 0:
            assert fast.to_state() == eager.to_state()
    assert fast.to_state() == eager.to_state()
    assert raised  # some silences were long enough to be dropouts


@pytest.mark.parametrize("seed", range(4))
def test_a_dropout_timeout_is_never_below_the_floor(seed: int) -> None:
    """What the sensor checks rely on to skip computing the timeout for a gap
    within ``dropout_floor_s``: ``Rhythm.add`` caps a gap at the timeout only,
    and the timeout is never below the floor."""
    r = random.Random(seed)
    for _ in range(30):
        cfg = SensorHealthConfig(dropout_floor_s=r.choice([60.0, 600.0, 1800.0]),
                                 dropout_min_gaps=r.choice([2, 16]))
        rhythm = Rhythm(0.0, 0.0)
        t = 0.0
        period = r.choice([1.0, 30.0, 600.0, 3600.0])
        for _ in range(300):
            t += period * r.choice([0.3, 1, 1, 2, 20]) * r.uniform(0.5, 1.5)
            timeout = rhythm.timeout(cfg, r.choice([0.0, 900.0]))
            assert timeout >= cfg.dropout_floor_s
            rhythm.add(t, timeout, cfg.dropout_memory_s)
        capped = Rhythm(0.0, 0.0)
        capped.add(cfg.dropout_floor_s, cfg.dropout_floor_s, cfg.dropout_memory_s)
        uncapped = Rhythm(0.0, 0.0)
        uncapped.add(cfg.dropout_floor_s, 1e12, cfg.dropout_memory_s)
        assert capped.to_state() == uncapped.to_state()


class _PlainMemory(TransitionMemory):
    """The transition memory without the one-bin shortcut."""

    def step(self, b: int) -> float:
        raw = self.raw(b)
        if len(self.hist) == self.order:
            key = self._key()
            mask = self.contexts.get(key)
            if mask is not None:
                self.contexts[key] = mask | (1 << b)
            elif len(self.contexts) < self.max_contexts:
                self.contexts[key] = 1 << b
        self.hist.append(b)
        if len(self.hist) > self.order:
            del self.hist[0]
        self.pred = self.contexts.get(self._key()) if len(self.hist) == self.order else None
        return raw


@pytest.mark.parametrize("value_range", [(-5.0, 90.0), None, (3.0, 3.0)])
def test_seq_lik_written_out_steps_match_the_plain_ones(
        value_range: tuple[float, float] | None) -> None:
    r = random.Random(7)
    fast = SeqLik(value_range, 150, 40, 40)
    plain = SeqLik(value_range, 150, 40, 40)
    plain.memory = _PlainMemory(48, 1, 2, 4096)
    plain.memory.max_contexts = fast.memory.max_contexts = 30  # the cap is reached too
    for i in range(6000):
        v = 4 + 2 * math.sin(i / 45.8) + r.gauss(0, 0.3)
        if r.random() < 0.01:
            v = r.choice([150.0, -60.0, 1e300, -math.inf, 1.7e308, 40.0])
        assert fast.score(v) == plain.score(v)
        if not abs(v) >= 1e15:
            assert fast.memory.hist == [fast.bin(v)]
    assert fast.to_state() == plain.to_state()
