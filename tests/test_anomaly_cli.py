"""``dairy-edge anomaly score``: folder mirroring, output format, errors."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from agent.detect.anomaly.cli import add_anomaly_cli, main
from agent.detect.anomaly.evaluate import score_path
from tests.helpers_anomaly import series, write_csv


def test_folder_is_scored_recursively_and_mirrored(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_csv(src / "a.csv", series(300, seed=1))
    write_csv(src / "barn" / "tank" / "b.csv", series(250, seed=2))
    (src / "notes.txt").write_text("not a csv")
    assert main(["anomaly", "score", str(src), "-o", str(tmp_path / "out"), "-q"]) == 0
    outs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert outs == ["a.csv", "barn", "barn/tank", "barn/tank/b.csv"]
    rows = list(csv.DictReader((tmp_path / "out" / "barn" / "tank" / "b.csv").open()))
    assert len(rows) == 250
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"]
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)


def test_single_file_and_bad_rows(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("timestamp,value,label\n2020-01-01 00:00:00,1.0,1\n2020-01-01 00:05:00,oops,0\n"
                 "1577837400,2.0,0\nnot-a-time,3.0,0\n2020-01-01 00:15:00\n")
    said: list[str] = []
    report = score_path(f, tmp_path / "y.csv", warn=said.append)
    assert (report.files, report.bad_rows, report.ok) == (1, 3, False)
    assert said == [f"{f}:3: unreadable value 'oops'", f"{f}:5: unreadable timestamp 'not-a-time'",
                    f"{f}:6: too few columns (1)"]
    rows = list(csv.DictReader((tmp_path / "y.csv").open()))
    assert [r["value"] for r in rows] == ["1.0", "oops", "2.0", "3.0", ""]
    # Unreadable rows are not scored (empty), readable ones are.
    assert [r["anomaly_score"] == "" for r in rows] == [False, True, False, True, True]


def test_folder_goes_on_past_a_bad_file_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    write_csv(src / "good.csv", series(200, seed=1))
    (src / "bad.csv").write_text("time,reading\n1,2\n")
    assert main(["anomaly", "score", str(src), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "bad.csv:1: needs a header with 'timestamp' and 'value'" in err
    assert "1 file(s) not scored" in err
    assert (tmp_path / "out" / "good.csv").is_file()
    assert not (tmp_path / "out" / "bad.csv").exists()  # no partial output
    assert not list((tmp_path / "out").glob(".*part"))


@pytest.mark.parametrize("detector", ["default", "cad_ose", "seq_lik"])
@pytest.mark.parametrize("value_range", ["auto", "learn", "-10,20"])
def test_detectors_and_value_ranges(tmp_path: Path, detector: str, value_range: str) -> None:
    write_csv(tmp_path / "a.csv", series(600, seed=4, spike_at=500))
    assert main(["anomaly", "score", str(tmp_path / "a.csv"), "-o", str(tmp_path / "o.csv"),
                 "-q", "--detector", detector, f"--value-range={value_range}"]) == 0
    scores = [float(r["anomaly_score"]) for r in csv.DictReader((tmp_path / "o.csv").open())]
    assert len(scores) == 600 and all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores[495:510]) >= 0.5  # the spike stands out for every setting


def test_bad_value_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "a.csv", series(50, seed=4))
    for bad in ("5,1", "x,2", "1", "nan,3"):
        assert main(["anomaly", "score", str(tmp_path / "a.csv"), "-o", str(tmp_path / "o.csv"),
                     "--value-range", bad]) == 2
        assert "MIN,MAX" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_missing_input_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["anomaly", "score", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o")]) == 2
    assert "nope.csv: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["anomaly", "score", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert "no *.csv file" in capsys.readouterr().err
    parser = argparse.ArgumentParser(prog="dairy-edge")
    add_anomaly_cli(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["anomaly", "score", "--help"])
    assert "timestamp,value,anomaly_score" in capsys.readouterr().out
