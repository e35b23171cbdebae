"""The streaming detector: range, online property, state round-trip, memory bound."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detect.anomaly.detector import DetectorConfig, SensorDetector
from agent.detect.anomaly.engine import AnomalyEngine
from tests.helpers_anomaly import series


def _scores(rows: list[tuple[float, float]], det: SensorDetector | None = None) -> list[float]:
    det = det or SensorDetector()
    return [det.update(ts, v) for ts, v in rows]


def test_scores_in_unit_interval_and_spike_stands_out() -> None:
    rows = series()
    scores = _scores(rows)
    assert all(0.0 <= s <= 1.0 for s in scores)
    spike = scores[1200]
    assert spike > 0.6
    # The spike is the most anomalous reading after the warm-up.
    assert spike == max(scores[200:])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(-1e12, 1e12)), min_size=1, max_size=300))
def test_any_input_scores_in_unit_interval(values: list[float]) -> None:
    det = SensorDetector(DetectorConfig(warmup=5))
    for i, v in enumerate(values):
        s = det.update(1000.0 + i, v)
        assert 0.0 <= s <= 1.0 and not math.isnan(s)


def test_online_prefix_scores_do_not_change() -> None:
    rows = series(900)
    full = _scores(rows)
    for cut in (150, 400, 899):
        assert _scores(rows[:cut]) == full[:cut]


def test_state_round_trip_gives_identical_scores() -> None:
    rows = series(1400)
    det = SensorDetector()
    first = _scores(rows[:700], det)
    state = json.loads(json.dumps(det.to_state()))  # what SQLite would hold
    restored = SensorDetector.from_state(state)
    rest_a = _scores(rows[700:], det)
    rest_b = _scores(rows[700:], restored)
    assert rest_a == rest_b
    assert first + rest_a == _scores(rows)


def test_memory_is_bounded() -> None:
    cfg = DetectorConfig(window=64)
    det = SensorDetector(cfg)
    for i in range(3000):
        det.update(float(i), float(i % 17))
    assert len(det.values) == 64 and len(det.steps) == 64
    state = det.to_state()
    assert len(state["values"]["values"]) == 64
    assert all(len(q["q"]) <= cfg.calibrator.window for q in state["calibrator"]["ref"])


def test_engine_keys_streams_and_persists_dirty_states() -> None:
    eng = AnomalyEngine()
    for ts, v in series(300):
        eng.score(("tank1", "temp_c"), ts, v)
        eng.score(("cow7", "conductivity"), ts, v * 2)
    assert sorted(eng.keys()) == [("cow7", "conductivity"), ("tank1", "temp_c")]
    dirty = eng.take_dirty()
    assert set(dirty) == {("cow7", "conductivity"), ("tank1", "temp_c")}
    assert eng.take_dirty() == {}
    other = AnomalyEngine()
    assert other.restore(list(dirty.items()) + [(("bad", "x"), {"version": 999})]) == 2
    ts, v = 1_700_000_000.0 + 300 * 300, 4.0
    assert other.score(("tank1", "temp_c"), ts, v) == eng.score(("tank1", "temp_c"), ts, v)


def test_engine_caps_streams() -> None:
    eng = AnomalyEngine(max_streams=2)
    eng.score(("a", "m"), 0.0, 1.0)
    eng.score(("b", "m"), 0.0, 1.0)
    assert eng.score(("c", "m"), 0.0, 1.0) == 0.0
    assert len(eng) == 2


def test_range_channel_flags_a_value_never_seen_recently() -> None:
    from agent.detect.anomaly.detector import _range_excess
    from agent.detect.anomaly.robust import RollingSorted

    win = RollingSorted(64)
    for i in range(64):
        win.add(float(i % 11))  # range [0, 10]
    assert _range_excess(5.0, win, 0.05) == 0.0  # inside
    assert _range_excess(10.4, win, 0.05) == 0.0  # within the free margin (0.5)
    assert _range_excess(12.0, win, 0.05) == 3.0  # (2 / 0.5) - 1
    assert _range_excess(-1.5, win, 0.05) == 2.0
    # Off, the channel contributes nothing.
    rows = series(400, spike_at=None)
    det = SensorDetector(DetectorConfig(w_range=0.0))
    for ts, v in rows:
        det.update(ts, v)
    assert det.last_components[-1] == 0.0


def test_old_state_version_is_rejected_and_relearnt() -> None:
    det = SensorDetector()
    for ts, v in series(150):
        det.update(ts, v)
    state = json.loads(json.dumps(det.to_state()))
    state["version"] = 1  # 6-channel states from before the range channel
    eng = AnomalyEngine()
    assert eng.restore([(("tank1", "temp_c"), state)]) == 0
    assert len(eng) == 0
