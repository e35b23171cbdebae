"""The sequence likelihood detector (``seq_lik.py``) and its likelihood layer
(``likelihood.py``): determinism, value ranges, score bounds, learning a
pattern and flagging its break, rest after an alarm, persistence, and the
engine and daemon plumbing."""

from __future__ import annotations

import json
import math
import random
import statistics

from agent.clock import SystemClock
from agent.config.model import DetectConfig
from agent.detect.anomaly.engine import AnomalyEngine
from agent.detect.anomaly.likelihood import AnomalyLikelihood, _SlidingStats
from agent.detect.anomaly.seq_lik import SeqLik, SeqLikConfig, TransitionMemory
from agent.records import Reading, Stamp
from agent.runtime.detection import Detection
from tests.helpers_anomaly import series

CYCLE = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def _noisy(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [50 + 10 * math.sin(i / 20) + rng.gauss(0, 2) for i in range(n)]


def test_same_input_same_scores() -> None:
    xs = _noisy(3000, 1)
    a = SeqLik((0.0, 100.0), rest=20, learning=100, estimation=100)
    b = SeqLik((0.0, 100.0), rest=20, learning=100, estimation=100)
    sa, sb = [a.score(x) for x in xs], [b.score(x) for x in xs]
    assert sa == sb
    assert len(set(sa)) > 10  # not a constant


def test_scores_stay_in_unit_interval_even_outside_the_range() -> None:
    rng = random.Random(3)
    det = SeqLik((0.0, 1.0), rest=5, learning=50, estimation=50)
    xs = [rng.random() for _ in range(2000)] + [1e9, -1e9, 0.5, 2.0, -3.0] * 20
    scores = [det.score(x) for x in xs]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert det.bin(-1e9) == 0 and det.bin(1e9) == det.cfg.bins - 1


def test_learns_a_repeating_pattern_and_flags_a_break() -> None:
    det = SeqLik((0.0, 7.0), rest=10, learning=100, estimation=100)
    raws = []
    for v in CYCLE * 80:
        raws.append(det.memory.raw(det.bin(v)))
        det.score(v)
    assert max(raws[-200:]) == 0.0  # every step of the cycle is predicted
    # The pattern breaks inside the known range: 0 after 7 was never seen.
    scores = [det.score(v) for v in (7.0, 0.0, 7.0, 0.0, 7.0, 0.0, 7.0, 0.0)]
    assert max(scores) >= 0.5


def test_an_alarm_is_followed_by_rest() -> None:
    det = SeqLik((0.0, 7.0), rest=10, learning=100, estimation=100)
    for v in CYCLE * 80:
        det.score(v)
    out = [det.score(v) for v in [7.0, 0.0] * 15]
    first = next(i for i, s in enumerate(out) if s >= 0.5)
    assert out[first + 1:first + 11] == [0.0] * 10


def test_a_likelihood_alarm_waits_until_the_likelihood_has_settled() -> None:
    # A learnt cycle breaks for 60 readings: without the re-arm rule (0) it
    # alarms again at the end of every rest; with it, once. Once the cycle
    # is back for more than a rest, a new break alarms again.
    rng = random.Random(1)
    broken = [rng.choice([0.0, 7.0, 3.0, 5.0, 1.0]) for _ in range(60)]
    alarms = {}
    for rearm in (0.0, 1.0):
        det = SeqLik((0.0, 7.0), rest=10, learning=100, estimation=100,
                     config=SeqLikConfig(rearm=rearm))
        for v in CYCLE * 80:
            det.score(v)
        alarms[rearm] = sum(det.score(v) >= 0.5 for v in broken)
        calm = [det.score(v) for v in CYCLE * 5]
        assert max(calm) < 0.5
        assert max(det.score(v) for v in (2.0, 6.0, 2.0, 6.0, 4.0, 0.0, 4.0)) >= 0.5
    assert alarms[0.0] >= 5 and alarms[1.0] == 1


def test_a_new_extreme_is_a_spatial_anomaly() -> None:
    det = SeqLik((0.0, 100.0), rest=5, learning=100, estimation=100)
    for x in _noisy(1500, 2):
        det.score(x)
    assert det.score(95.0) == 1.0  # far above every value seen (max about 67)


def test_learnt_range_moves_the_memory_with_the_bins() -> None:
    det = SeqLik(None, rest=10, learning=100, estimation=100,
                 config=SeqLikConfig(learn_margin=0.0))
    for v in CYCLE * 40:
        det.score(v)
    assert (det.lo, det.hi) == (0.0, 7.0)
    det.score(14.0)  # the range doubles: every bin moves
    assert (det.lo, det.hi) == (0.0, 14.0)
    raws = []
    for v in CYCLE * 3:
        raws.append((v, det.memory.raw(det.bin(v))))
        det.score(v)
    # The way back from 14 is new; the cycle is still known after the move,
    # except once around the old maximum, 7: it sat at the top edge of its
    # old bin, and old bins move by their centres, so it lands one bin off.
    assert raws[0] == (0.0, 1.0)
    off = [i for i, (_, r) in enumerate(raws[1:], 1) if r > 0.0]
    assert off == [7, 8] and raws[7][0] == 7.0


def test_learnt_range_grows_by_a_margin() -> None:
    det = SeqLik(None, rest=10, learning=100, estimation=100)
    for v in (1.0, 3.0, 2.0, 0.0):
        det.score(v)
    # 3 widened [1, 1] to [1, 3.5] (a quarter of the span beyond the new
    # maximum); 0 widened it to [0 - 0.875, 3.5].
    assert (det.lo, det.hi) == (-0.875, 3.5)
    assert all(0.0 <= det.score(v) <= 1.0 for v in CYCLE * 50)


def test_transition_memory_tolerance_and_bound() -> None:
    mem = TransitionMemory(bins=10, order=1, tolerance=2, max_contexts=3)
    for b in (1, 5, 1, 5):
        mem.step(b)
    # After 5 came 1: 1 is predicted, 2 is one bin off (half), 3 is not.
    assert mem.raw(1) == 0.0 and mem.raw(2) == 0.5 and mem.raw(3) == 1.0
    for b in range(10):
        mem.step(b)
    assert len(mem.contexts) == 3  # full: no new contexts


def test_sliding_stats_match_the_window() -> None:
    st = _SlidingStats(50)
    xs = [1e6 + random.Random(5).gauss(0, 1) * (i % 7) for i in range(400)]
    for x in xs:
        st.push(x)
    mean, var = st.mean_var()
    assert math.isclose(mean, statistics.fmean(xs[-50:]), rel_tol=1e-12)
    assert math.isclose(var, statistics.pvariance(xs[-50:]), rel_tol=1e-6)


def test_likelihood_probation_flat_metric_and_a_burst() -> None:
    lik = AnomalyLikelihood(learning=50, estimation=50, history=500, reestimation=10)
    probation = [lik.update(1.0, 0.1) for _ in range(100)]
    half = math.log(0.5000000001) / -23.02585084720009
    assert all(math.isclose(s, half) for s in probation)  # likelihood 0.5 while learning
    flat = [lik.update(1.0, 1.0) for _ in range(20)]
    assert all(math.isclose(s, half) for s in flat)  # a flat metric is not judged
    rng = random.Random(1)
    lik = AnomalyLikelihood(learning=50, estimation=50, history=500, reestimation=10)
    for _ in range(600):
        lik.update(rng.random(), rng.uniform(0.0, 0.2))
    calm = max(lik.update(rng.random(), rng.uniform(0.0, 0.2)) for _ in range(50))
    burst = max(lik.update(rng.random(), 1.0) for _ in range(5))
    assert calm < 0.5 <= burst <= 1.0


def test_state_round_trip_gives_identical_scores() -> None:
    xs = _noisy(3000, 4)
    for rng in ((0.0, 100.0), None):
        det = SeqLik(rng, rest=20, learning=100, estimation=100)
        for x in xs[:2000]:
            det.score(x)
        copy = SeqLik.from_state(json.loads(json.dumps(det.to_state())))
        assert [det.score(x) for x in xs[2000:]] == [copy.score(x) for x in xs[2000:]]


def test_a_state_from_before_the_re_arm_rule_loads_and_waits_a_re_arm() -> None:
    det = SeqLik((0.0, 100.0), rest=20, learning=100, estimation=100)
    for x in _noisy(1500, 4):
        det.score(x)
    old = json.loads(json.dumps(det.to_state()))
    del old["calm"], old["config"]["rearm"]
    back = SeqLik.from_state(old)
    assert back.cfg.rearm == 1.0 and back.calm == 0
    assert back.memory.contexts == det.memory.contexts


def test_engine_persists_seq_lik_and_skips_foreign_states() -> None:
    eng = AnomalyEngine(detector="seq_lik")
    for ts, v in series(800, seed=2):
        eng.score(("s", "m"), ts, v, value_range=(0.0, 20.0))
    assert eng.score(("s", "m"), 0.0, math.nan) == 0.0
    states = eng.take_dirty()
    assert set(states) == {("s", "m")} and states[("s", "m")]["kind"] == "seq_lik"
    fresh = AnomalyEngine(detector="seq_lik")
    dflt = AnomalyEngine()  # a default detector's state does not load, nor the reverse
    dflt.score(("d", "m"), 0.0, 1.0)
    foreign = dflt.export_state(("d", "m"))
    assert foreign is not None
    assert fresh.restore([(("s", "m"), states[("s", "m")]), (("d", "m"), foreign)]) == 1
    assert AnomalyEngine().restore([(("s", "m"), states[("s", "m")])]) == 0
    det = fresh._detectors[("s", "m")].det  # type: ignore[union-attr]
    assert (det.lo, det.hi) == (0.0, 20.0)


def _reading(i: int) -> Reading:
    temp = 4.0 + 0.5 * math.sin(i / 10.0) + (6.0 if i == 900 else 0.0)
    return Reading(
        record_id=f"r{i}", sensor_id="tank-1", firmware="bulk-tank", topic="barn/tank/tank-1",
        values={"milk_temp_c": temp}, raw={"milk_temp_c": temp}, units={"milk_temp_c": "degC"},
        stamp=Stamp(1_800_000_000.0 + 60 * i, i * 60_000_000_000, "boot", True),
        source_ts=1_800_000_000.0 + 60 * i,
    )


def test_daemon_bins_seq_lik_streams_by_the_firmware_range() -> None:
    assert DetectConfig().anomaly_detector == "seq_lik"  # the daemon's default
    detection = Detection(DetectConfig(), SystemClock(),
                          value_range=lambda fw, sid, metric: (2.0, 7.0))
    readings = [_reading(i) for i in range(1000)]
    for r in readings:
        detection.on_reading(r)
    det = detection.anomaly._detectors[("tank-1", "milk_temp_c")].det  # type: ignore[union-attr]
    assert (det.lo, det.hi) == (2.0, 7.0)
    assert det.cfg == SeqLikConfig()
    scores = [r.attributes["anomaly"]["milk_temp_c"] for r in readings]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[900] == 1.0  # 10 degC: far beyond every value seen (a spatial anomaly)


def test_extreme_finite_values_do_not_break_a_learning_stream() -> None:
    # A sensor that sends DBL_MAX as an error code: the learnt range stays
    # finite, every later reading is still scored, and the state round-trips.
    import json

    from agent.detect.anomaly.engine import AnomalyEngine

    engine = AnomalyEngine(detector="seq_lik")
    for i, v in enumerate([4.0, 4.1, 1.7e308, -1.7e308, 4.0, 4.2, 3.9, 1.5e308, 0.0]):
        s = engine.score(("s", "t"), float(i), v)
        assert 0.0 <= s <= 1.0
    state = engine.export_state(("s", "t"))
    assert state is not None
    again = AnomalyEngine(detector="seq_lik")
    assert again.restore([(("s", "t"), json.loads(json.dumps(state)))]) == 1
    assert 0.0 <= again.score(("s", "t"), 10.0, 4.0) <= 1.0


def test_an_error_code_does_not_blind_a_learning_stream() -> None:
    # One 1.7e308 among readings of 20-21: scored as an anomaly, learnt as
    # nothing; a later jump 20 -> 40 is still seen (the review's case).
    from agent.detect.anomaly.engine import AnomalyEngine

    engine = AnomalyEngine(detector="seq_lik", probation=50)
    key = ("s", "t")
    for i in range(400):
        engine.score(key, float(i), 20.0 + (i % 10) / 10)
    assert engine.score(key, 400.0, 1.7e308) == 1.0
    for i in range(401, 600):
        engine.score(key, float(i), 20.0 + (i % 10) / 10)
    assert engine.score(key, 600.0, 40.0) >= 0.5
