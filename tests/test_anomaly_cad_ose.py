"""CAD OSE (``cad_ose.py``): the method's fixed points, value ranges, the
engine and daemon plumbing, and (when ../shared is present) CAD OSE's
published NAB outputs on files where every reading must agree (the whole
set is checked by ``scripts/check_cad_ose.py``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from agent.detect.anomaly.cad_ose import CadOse, py2_tuple_hash
from agent.detect.anomaly.engine import AnomalyEngine
from tests.helpers_anomaly import series
from tests.helpers_ingest import ROOT, make_ingestor

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab-dev"


def test_python2_tuple_hash_known_values() -> None:
    # CPython 2.7 (64-bit) values: hash(()) and hash((1, 2)).
    assert py2_tuple_hash(()) == 3527539
    assert py2_tuple_hash((1, 2)) == 3713081631934410656


def test_flat_stream_never_predicts_its_first_context() -> None:
    # The published CAD OSE scores a flat line 0.5 for ever (its context 0 is
    # never judged). The second reading's context is new (raw 1.0, an alarm),
    # so the first 12 readings are silenced by the 10-reading rest.
    cad = CadOse(0.0, 1.0, rest_period=10)
    scores = [cad.score(0.5) for _ in range(60)]
    assert scores[:12] == [0.0] * 12
    assert set(scores[12:]) == {0.5}


def test_learnt_cycle_scores_low_and_a_break_scores_high() -> None:
    cad = CadOse(0.0, 7.0, rest_period=20)
    cycle = [0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1]
    scores = [cad.score(float(v)) for v in cycle * 60]
    assert max(scores[-100:]) < 0.3  # a learnt sequence is predicted
    broken = [cad.score(v) for v in (0.0, 7.0, 0.0, 7.0, 0.0)]
    assert max(broken) >= 0.5


def test_alarm_silences_the_rest_period() -> None:
    cad = CadOse(0.0, 7.0, rest_period=5)
    for v in [0, 1, 2, 3] * 50:
        cad.score(float(v))
    out = []
    for v in (7.0, 0.0, 7.0, 3.0, 5.0, 1.0, 6.0, 2.0, 4.0):
        out.append((cad.score(v), cad.last_raw))
    first_alarm = next(i for i, (_, raw) in enumerate(out) if raw >= 0.75)
    assert all(s == 0.0 for s, _ in out[first_alarm + 1:first_alarm + 6])


def test_values_outside_the_range_fall_into_the_edge_bins() -> None:
    cad = CadOse(0.0, 7.0, rest_period=5)
    assert cad.facts(-100.0) == cad.facts(0.0) == (0, 2, 4)
    assert cad.facts(1e9) == cad.facts(7.0) == (1, 3, 5)
    assert cad.facts(2.5) == (0, 3, 4)  # bin 2 = 0b010


def test_learnt_range_widens_with_the_data() -> None:
    cad = CadOse(None, None, rest_period=5)
    for v in (5.0, 6.0, 7.0, 3.0):
        cad.score(v)
    assert (cad.lo, cad.hi) == (3.0, 7.0)


def test_bounded_memory_stops_learning_at_the_cap() -> None:
    cad = CadOse(0.0, 1.0, rest_period=5, max_contexts=50)
    for x, _ in series(2000, seed=3):
        cad.score(math.sin(x / 7000.0) * 0.5 + 0.5)
    assert len(cad.memory.contexts) <= 50


def test_engine_uses_the_range_given_when_a_stream_is_first_seen() -> None:
    engine = AnomalyEngine(detector="cad_ose", rest=10)
    for ts, v in series(300, seed=2, spike_at=None):
        engine.score(("tank", "t"), ts, v, value_range=(-5.0, 90.0))
    det = engine._detectors[("tank", "t")]
    assert det.cad.lo == -5.0  # type: ignore[union-attr]
    assert engine.take_dirty() == {}  # CAD OSE streams are not persisted
    with pytest.raises(ValueError, match="unknown anomaly detector"):
        AnomalyEngine(detector="nope")  # type: ignore[arg-type]


def test_ingestor_value_range_follows_the_calibration() -> None:
    ing = make_ingestor(ROOT / "calibration")
    # barn.yaml: climate-01 temperature_c offset -0.3 on a [-40, 60] firmware range
    lo, hi = ing.value_range("barn-climate", "climate-01", "temperature_c") or (0.0, 0.0)
    assert (round(lo, 6), round(hi, 6)) == (-40.3, 59.7)
    assert ing.value_range("barn-climate", "climate-99", "temperature_c") == (-40.0, 60.0)
    assert ing.value_range("barn-climate", "climate-01", "no_such_field") is None


def _published(rel: str) -> tuple[list[float], list[float]]:
    with (NAB / "data" / rel).open() as fh:
        values = [float(r["value"]) for r in csv.DictReader(fh)]
    with (NAB / "reference-results" / "contextOSE" / rel).open() as fh:
        ref = [float(r["anomaly_score"]) for r in csv.DictReader(fh)]
    return values, ref


@pytest.mark.skipif(not (NAB / "reference-results").is_dir(), reason="../shared NAB data absent")
@pytest.mark.parametrize("rel", ["artificialNoAnomaly/art_flatline.csv",
                                 "artificialNoAnomaly/art_daily_perfect_square_wave.csv",
                                 # these two need the partial-left, partial-right crossings
                                 "artificialNoAnomaly/art_daily_no_noise.csv",
                                 "realTraffic/speed_7578.csv"])
def test_published_outputs_reproduced_exactly(rel: str) -> None:
    values, ref = _published(rel)
    rest = min(math.floor(0.15 * len(values)), 750) / 5.0
    cad = CadOse(min(values), max(values), rest)
    got = [cad.score(v) for v in values]
    assert all(abs(a - b) < 1e-6 for a, b in zip(got, ref, strict=True))
