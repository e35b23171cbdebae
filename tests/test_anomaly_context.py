"""The contextual sequence channel: learns patterns, flags new orders, stays bounded."""

from __future__ import annotations

import json
import random

from agent.detect.anomaly.context import ContextChannel, ContextConfig
from agent.detect.anomaly.detector import SensorDetector
from agent.detect.anomaly.engine import AnomalyEngine
from agent.detect.anomaly.robust import RollingSorted
from tests.helpers_anomaly import feed_channel, series


def test_learnt_pattern_is_predicted_and_a_new_order_is_not() -> None:
    ch, win = ContextChannel(), RollingSorted(256)
    saw = [float(v) for v in range(16)]  # a sawtooth over 16 levels
    first = feed_channel(ch, win, saw * 40)
    assert first[0] == 0.0 and max(first[-160:]) == 0.0  # fully predicted once learnt
    # The same values, none beyond the familiar range, in reverse order.
    changed = feed_channel(ch, win, list(reversed(saw)))
    assert win.quantile(0.0) <= min(saw) and max(saw) <= win.quantile(1.0)
    assert sum(changed) / len(changed) > 0.3


def test_memory_is_capped_lru() -> None:
    cfg = ContextConfig(max_contexts=50)
    ch, win = ContextChannel(cfg), RollingSorted(128)
    rng = random.Random(3)
    feed_channel(ch, win, [rng.random() for _ in range(3000)])
    assert len(ch.memory) == 50
    # Least recently used goes first: contexts "after bin b" for b = 0..3, cap 3.
    small = ContextChannel(ContextConfig(order=1, max_contexts=3))
    grid = RollingSorted(64)
    for v in range(16):
        grid.add(float(v))
    for x in (0.0, 1.0, 2.0, 3.0, 4.0):
        small.learn(x, grid)
    assert sorted(k & 0xF for k in small.memory) == [1, 2, 3]


def test_channel_state_round_trip() -> None:
    ch, win = ContextChannel(), RollingSorted(256)
    rng = random.Random(5)
    xs = [rng.gauss(0, 1) for _ in range(1500)]
    feed_channel(ch, win, xs[:1000])
    copy = ContextChannel.from_state(json.loads(json.dumps(ch.to_state())), ch.cfg)
    win2 = RollingSorted.from_state(win.to_state())
    assert feed_channel(ch, win, xs[1000:]) == feed_channel(copy, win2, xs[1000:])


def test_detector_uses_the_channel_and_rejects_version_2_states() -> None:
    det = SensorDetector()
    for ts, v in series(600):
        det.update(ts, v)
    assert len(det.last_components) == 8
    assert det.context.memory  # learnt something
    state = json.loads(json.dumps(det.to_state()))
    assert state["version"] == 3 and state["context"]["memory"]
    state["version"] = 2  # 7-channel states from before the context channel
    assert AnomalyEngine().restore([(("tank1", "temp_c"), state)]) == 0
