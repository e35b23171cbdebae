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
                 "1577837400,2.0,0\n")
    assert score_path(f, tmp_path / "y.csv") == 1
    rows = list(csv.DictReader((tmp_path / "y.csv").open()))
    assert [r["value"] for r in rows] == ["1.0", "oops", "2.0"]
    assert all(float(r["anomaly_score"]) == 0.0 for r in rows)


def test_missing_input_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["anomaly", "score", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o")]) == 2
    parser = argparse.ArgumentParser(prog="dairy-edge")
    add_anomaly_cli(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["anomaly", "score", "--help"])
    assert "timestamp,value,anomaly_score" in capsys.readouterr().out
