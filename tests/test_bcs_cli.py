"""``dairy-edge vision bcs fit`` and ``vision bcs`` on real files, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.sources.camera.synth.topview import make_herd_photos


@pytest.fixture(scope="module")
def herd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled herd of generated top views (12 cows, 3-4 photos each)."""
    out = tmp_path_factory.mktemp("herd")
    return make_herd_photos(5, 12, (3, 4), "train", out, width=480, height=400)


def test_fit_writes_a_model_the_scoring_command_uses(
        herd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "farm-bcs"
    assert main(["vision", "bcs", "fit", "--labels", str(herd), "--out", str(out),
                 "--version", "farm-test"]) == 0
    report = capsys.readouterr().out
    assert "cross-validation grouped by cow" in report and "always the mean" in report
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["models"][0]
    assert entry["name"] == "bcs" and entry["version"] == "farm-test"
    assert {"cv_within_0.25", "cv_within_0.5", "cv_mae", "mean_baseline_mae",
            "interval_half_width"} <= set(entry["metrics"])
    assert (out / "bcs.onnx").is_file() and (out / entry["self_test"]["file"]).is_file()

    images = sorted((herd.parent / "images").glob("*.jpg"))[:3]
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a photo")
    code = main(["vision", "bcs", "--model", str(out), *map(str, images), str(junk), "-v"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 1  # one image failed
    assert [ln["image"] for ln in lines] == [*map(str, images), str(junk)]
    assert "error" in lines[-1] and "bcs" not in lines[-1]
    scored = [ln for ln in lines[:-1] if "bcs" in ln]
    assert scored, lines
    for ln in scored:
        assert 1.0 <= ln["low"] <= ln["bcs"] <= ln["high"] <= 5.0
        assert ln["bcs"] * 4 == int(ln["bcs"] * 4)  # quarter points
        assert ln["model_version"] == "farm-test"


def _labels(tmp: Path, herd: Path, extra: str) -> Path:
    lines = herd.read_text().splitlines()
    rows = [f"{(herd.parent / r.split(',')[0]).resolve()},{','.join(r.split(',')[1:])}"
            for r in lines[1:]]
    path = tmp / "labels.csv"
    path.write_text("\n".join([lines[0], *rows, extra]) + "\n")
    return path


@pytest.mark.parametrize(("extra", "message"), [
    ("gone.jpg,3.0,cow9", "image gone.jpg not found"),
    ("{img},5.25,cow9", "bcs 5.25 is outside 1 to 5"),
])
def test_bad_labels_name_file_and_line_and_write_nothing(
        herd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
        message: str) -> None:
    first = herd.read_text().splitlines()[1].split(",")[0]
    labels = _labels(tmp_path, herd, extra.format(img=(herd.parent / first).resolve()))
    n = len(labels.read_text().splitlines())
    out = tmp_path / "model"
    assert main(["vision", "bcs", "fit", "--labels", str(labels), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{labels}:{n}: " in err and message in err and "no model written" in err
    assert not out.exists()


def test_too_few_photos(tmp_path: Path, herd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = herd.read_text().splitlines()[:11]
    few = herd.parent / "few.csv"
    few.write_text("\n".join(lines) + "\n")
    assert main(["vision", "bcs", "fit", "--labels", str(few), "--out",
                 str(tmp_path / "m")]) == 2
    assert "10 labelled photos; the fit needs at least 30" in capsys.readouterr().err


def test_help_describes_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["vision", "bcs", "--help"])
    text = capsys.readouterr().out
    assert '"bcs": 3.25, "low": 3.0, "high": 3.5' in text and "vision bcs fit" in text
    with pytest.raises(SystemExit):
        main(["vision", "bcs", "fit", "--help"])
    assert "LABELS.csv" in capsys.readouterr().out
