"""Context crossing (cad.py): learns sequences, flags new orders, stays bounded."""

from __future__ import annotations

import json
import random

from agent.detect.anomaly.cad import CadContext
from agent.detect.anomaly.context import ContextConfig
from agent.detect.anomaly.detector import DetectorConfig, SensorDetector
from agent.detect.anomaly.engine import AnomalyEngine
from agent.detect.anomaly.robust import RollingSorted
from tests.helpers_anomaly import feed_channel, series

CAD = ContextConfig(mode="cad")




def test_learnt_sequence_is_predicted_and_a_new_order_is_not() -> None:
    ch, win = CadContext(CAD), RollingSorted(256)
    saw = [float(v) for v in range(16)]
    first = feed_channel(ch, win, saw * 40)
    assert max(first[:16]) == 1.0  # nothing known yet
    assert max(first[-160:]) == 0.0  # fully predicted once learnt
    changed = feed_channel(ch, win, list(reversed(saw)))
    assert sum(changed) / len(changed) > 0.3


def test_active_context_ids_are_fed_back_as_facts() -> None:
    ch, win = CadContext(CAD), RollingSorted(256)
    feed_channel(ch, win, [float(v) for v in range(8)] * 30)
    width = ch._width
    assert ch.left >> width  # some context id bits in the next left facts
    # and some learnt context requires an earlier context to have been active
    assert any(lk >> width for lk, _ in ch.ids)


def test_memory_is_capped() -> None:
    cfg = ContextConfig(mode="cad", cad_contexts=40)
    ch, win = CadContext(cfg), RollingSorted(128)
    rng = random.Random(3)
    feed_channel(ch, win, [rng.random() for _ in range(2000)])
    assert len(ch.ids) == 40 and len(ch.lefts) == 40
    assert sorted(ch.ids.values()) == list(range(40))  # ids reused, one per slot


def test_channel_state_round_trip() -> None:
    ch, win = CadContext(CAD), RollingSorted(256)
    rng = random.Random(5)
    xs = [rng.gauss(0, 1) for _ in range(1500)]
    feed_channel(ch, win, xs[:1000])
    copy = CadContext.from_state(json.loads(json.dumps(ch.to_state())), CAD)
    win2 = RollingSorted.from_state(win.to_state())
    assert feed_channel(ch, win, xs[1000:]) == feed_channel(copy, win2, xs[1000:])


def test_detector_in_crossing_mode_restores_exactly() -> None:
    cfg = DetectorConfig(context=CAD)
    det = SensorDetector(cfg)
    data = series(900)
    for ts, v in data[:600]:
        det.update(ts, v)
    assert isinstance(det.context, CadContext) and det.context.ids
    state = json.loads(json.dumps(det.to_state()))
    copy = SensorDetector.from_state(state)
    assert [det.update(ts, v) for ts, v in data[600:]] == [copy.update(ts, v) for ts, v in data[600:]]
    # A crossing state under a k-gram configuration does not load (relearns).
    state["config"]["context"]["mode"] = "kgram"
    assert AnomalyEngine().restore([(("tank1", "temp_c"), state)]) == 0
