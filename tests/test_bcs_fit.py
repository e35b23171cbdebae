"""The BCS fit's parts: labels checking, folds grouped by cow, nested CV, the
ONNX model directory loaded through the registry, pooling and the rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config.model import ModelsConfig
from agent.detect.rules.body_condition import DAY_S, BcsLossRule, MilkRule
from agent.models.registry import ModelRegistry
from agent.vision.bcs.export import MODEL_NAME, write_model_dir
from agent.vision.bcs.features import SIZES, BackFeatures, layout_name, parse_layout
from agent.vision.bcs.fit import LabelsError, read_labels
from agent.vision.bcs.model import BcsEstimate, BcsEstimator, interval, pool
from agent.vision.bcs.ridge import fit_ridge, group_folds, nested_cv, round_step
from agent.vision.pool import VisitPool


def _labels(tmp: Path, rows: list[str], n_images: int = 40) -> Path:
    for i in range(n_images):
        (tmp / f"p{i}.jpg").write_bytes(b"x")
    csv = tmp / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_labels_name_file_and_line(tmp_path: Path) -> None:
    ok = [f"p{i}.jpg,3.0,cow{i % 8}" for i in range(39)]
    path = _labels(tmp_path, ["image,bcs,animal", *ok, "missing.jpg,3.0,cow1"])
    with pytest.raises(LabelsError, match=r"labels.csv:41: image missing.jpg not found"):
        read_labels(path)
    path = _labels(tmp_path, ["image,bcs,animal", *ok, "p1.jpg,5.5,cow1"])
    with pytest.raises(LabelsError, match=r"labels.csv:41: bcs 5.5 is outside 1 to 5"):
        read_labels(path)
    path = _labels(tmp_path, ["image,bcs,animal", *ok, "p1.jpg,thin,cow1"])
    with pytest.raises(LabelsError, match=r":41: bcs 'thin' is not a number"):
        read_labels(path)
    path = _labels(tmp_path, ["image,bcs", *[f"p{i}.jpg,3" for i in range(10)]])
    with pytest.raises(LabelsError, match="10 labelled photos; the fit needs at least 30"):
        read_labels(path)
    path = _labels(tmp_path, ["picture,score", "p1.jpg,3"])
    with pytest.raises(LabelsError, match="header must name the columns image and bcs"):
        read_labels(path)
    good = read_labels(_labels(tmp_path, ["image,bcs,animal", *ok, "p1.jpg,2.75,cow1"]))
    assert len(good) == 40 and good[-1].bcs == 2.75 and good[-1].animal == "cow1"
    assert good[0].image == (tmp_path / "p0.jpg").resolve()


def test_folds_never_split_a_cow() -> None:
    animals = [f"cow{i % 13}" for i in range(100)]
    folds = group_folds(animals, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    for fold in folds:
        inside = {animals[i] for i in fold}
        outside = {animals[i] for i in range(100) if i not in set(fold.tolist())}
        assert not inside & outside
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 8


def _herd(rng: np.random.Generator, cows: int, photos: int, noise: float
          ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Features where a few columns carry the score and the cow adds her own offset."""
    truth = round_step(rng.uniform(2.0, 4.25, cows))
    offsets = rng.normal(0, 0.15, (cows, 30))
    rows, ys, animals = [], [], []
    for c in range(cows):
        for _ in range(photos):
            x = offsets[c] + rng.normal(0, noise, 30)
            x[:3] += (truth[c] - 3) * np.array([1.0, -0.8, 0.5])
            rows.append(x)
            ys.append(truth[c])
            animals.append(f"cow{c}")
    return {"shape": np.array(rows)}, np.array(ys), animals


def test_nested_cv_beats_the_mean_and_reports_held_out_cows() -> None:
    rng = np.random.default_rng(5)
    feats, y, animals = _herd(rng, 30, 6, 0.2)
    rep = nested_cv(feats, y, animals, folds=5, seed=0)
    assert rep.model.mae < 0.6 * rep.baseline.mae
    assert rep.model.within_05 > rep.baseline.within_05
    # Pure noise: the model must not look better than the mean (no leakage).
    noise = {"shape": rng.normal(0, 1, feats["shape"].shape)}
    rep = nested_cv(noise, y, animals, folds=5, seed=0)
    assert rep.model.mae > 0.9 * rep.baseline.mae


def test_model_dir_loads_through_the_registry(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = SIZES["shape"]
    x = rng.normal(0, 1, (60, n))
    y = np.clip(3 + x[:, 0] * 0.5, 1, 5)
    model = fit_ridge(x, y, 1.0, ("shape",))
    write_model_dir(tmp_path, model, 0.3, samples=x[:3].astype(np.float32),
                    metrics={"cv_mae": 0.1}, data="test", source="test", licence="test",
                    script="test", seed=1, version="t1")
    reg = ModelRegistry(ModelsConfig(dir=tmp_path), required=[MODEL_NAME], only=[MODEL_NAME])
    status = reg.load_all()[MODEL_NAME]
    assert status["state"] == "active", status
    runner = reg.get(MODEL_NAME)
    assert runner is not None and parse_layout(runner.inputs[0].name) == ("shape",)
    feats = BackFeatures({"shape": x[5].astype(np.float32)}, 1.0, 100.0, "left", 0.0)
    est = BcsEstimator(lambda name: runner if name == MODEL_NAME else None
                       ).score_features(feats)
    assert est.raw == pytest.approx(float(model.predict(x[5:6])[0]), abs=1e-4)
    assert est.low <= est.bcs <= est.high and est.half_width == pytest.approx(0.3)
    # A refit whose file is damaged on the way is refused; the old one stays.
    write_model_dir(tmp_path, fit_ridge(x, y, 10.0, ("shape",)), 0.3,
                    samples=x[:3].astype(np.float32), metrics={}, data="test", source="test",
                    licence="test", script="test", seed=1, version="t2")
    (tmp_path / "bcs.onnx").write_bytes(b"broken")
    status = reg.reload()[MODEL_NAME]
    assert status["state"] == "active" and status["version"] == "t1"
    assert "t2 refused" in status["error"]


def test_layout_names_round_trip() -> None:
    assert parse_layout(layout_name(("shading", "shape"))) == ("shape", "shading")
    with pytest.raises(ValueError, match="not a BCS feature layout"):
        parse_layout("x")
    feats = BackFeatures({"shape": np.zeros(SIZES["shape"], np.float32)}, 1.0, 1.0, "left", 0)
    with pytest.raises(ValueError, match="needs depth"):
        feats.vector(("shape", "depth"))


def test_interval_widens_with_poor_outline_and_pooling() -> None:
    assert interval(3.1, 0.25, 1.0) == (3.0, 2.75, 3.25)
    bcs, low, high = interval(3.1, 0.25, 0.3)
    assert (bcs, low, high) == (3.0, 2.75, 3.5)
    ests = [BcsEstimate(0, 0, 0, r, 0.25, q, "left", "v") for r, q in
            [(3.0, 0.9), (3.1, 0.8), (2.2, 0.1), (3.05, 0.9)]]
    pooled = pool(ests)
    assert pooled.raw in (3.0, 3.05) and pooled.bcs == 3.0 and pooled.quality == 0.9


def test_visit_pool_ends_on_gap_and_on_empty() -> None:
    p: VisitPool[int] = VisitPool("cam", "boot1234", gap_s=2.0)
    assert p.add(0, 100.0, 1) == [] and p.add(int(1e9), 101.0, 2) == []
    done = p.add(int(5e9), 105.0, 3)  # more than gap_s later: a new visit
    assert len(done) == 1 and done[0].items == [1, 2] and done[0].ended_wall_ts == 101.0
    ended = p.end()
    assert ended[0].items == [3] and ended[0].visit_id != done[0].visit_id
    assert p.end() == []


def test_bcs_loss_raises_on_a_fast_loss_not_on_noise() -> None:
    rule = BcsLossRule()
    rng = np.random.default_rng(3)
    found = []
    for day in range(30):  # steady 3.25 with scoring noise: never raised
        for _ in range(2):
            f = rule.on_score("A", day * DAY_S + 3600, 3.25 + rng.normal(0, 0.2), 0.8, day)
            found.append(f.status if f else None)
    assert "raise" not in found
    for day in range(30, 55):  # then a loss of 0.8 over 25 days
        f = rule.on_score("A", day * DAY_S + 3600, 3.25 - 0.032 * (day - 30)
                          + rng.normal(0, 0.1), 0.8, day)
    assert f is not None and f.status == "raise" and f.subject == "cow/A"
    # Poorly seen visits do not count.
    assert rule.on_score("B", 0, 2.0, 0.1, 0) is None and "B" not in rule.cows
    state = rule.to_state()
    again = BcsLossRule()
    again.from_state(state)
    assert again.daily("A") == rule.daily("A")


def test_milk_rule_per_quarter() -> None:
    rule = MilkRule()
    f = rule.on_check("blood", 0.95, 1.0, animal="A", quarter="LF", camera="c")
    assert f is not None and f.status == "raise" and f.subject == "cow/A/LF"
    assert f.severity == "critical"
    assert rule.on_check("blood", 0.5, 2.0, animal="A", quarter="LF", camera="c") is None
    f = rule.on_check("normal", 0.9, 3.0, animal="A", quarter="LF", camera="c")
    assert f is not None and f.status == "clear"
    f = rule.on_check("watery", 0.9, 3.0, animal=None, quarter=None, camera="c")
    assert f is not None and f.subject == "camera/c"


def test_labels_with_odd_rows_and_encodings(tmp_path: Path) -> None:
    ok = [f"p{i}.jpg,3.0,cow{i % 8}" for i in range(35)]
    # Blank lines count: the error names the physical line of the bad row.
    path = _labels(tmp_path, ["image,bcs,animal", "", *ok, "", "gone.jpg,3,cow1"])
    with pytest.raises(LabelsError, match=r"labels.csv:39: image gone.jpg not found"):
        read_labels(path)
    path = _labels(tmp_path, ["image,bcs,animal", *ok, "p1.jpg,3.0,cow1,extra"])
    with pytest.raises(LabelsError, match=r":37: more fields than the header"):
        read_labels(path)
    path = tmp_path / "latin1.csv"
    path.write_bytes(("image,bcs,animal\n" + "\n".join(ok) + "\np1.jpg,3,Bl\xfcmchen\n")
                     .encode("latin-1"))
    with pytest.raises(LabelsError, match="not UTF-8"):
        read_labels(path)


@pytest.mark.parametrize("image", [
    np.zeros((0, 0, 3), np.uint8),  # empty
    np.zeros((2000, 2, 3), np.uint8),  # a sliver: must not blow up the work scale
    np.zeros((500, 1), np.uint8),
    np.zeros((64, 64, 3), np.float32),  # not 8-bit
])
def test_odd_frames_are_no_cow_not_a_crash(image: np.ndarray) -> None:
    from agent.vision.bcs.model import measure
    from agent.vision.bcs.segment import NoCow

    with pytest.raises(NoCow):
        measure(image, None)


def test_a_grey_frame_is_measured_as_colour() -> None:
    from agent.vision.bcs.model import measure
    from agent.vision.bcs.segment import NoCow

    grey = np.full((300, 360), 120, np.uint8)
    grey[100:200, 60:300] = 30  # a dark cow-sized blob on a light floor
    try:
        seg, feats = measure(grey, None)
    except NoCow:
        pytest.fail("a mono camera's frame must be segmented like a colour one")
    assert seg.mask.any() and "shading" in feats.values
