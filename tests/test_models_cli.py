"""``dairy-edge models list|verify|selftest`` on real model folders."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.cli.models import add_models_parser, run_models
from tests.helpers_models import forecaster_entry, models_dir, onnx_entry


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dairy-edge")
    add_models_parser(parser.add_subparsers(dest="command", required=True))
    return run_models(parser.parse_args(["models", *argv]))


def test_list_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path), forecaster_entry(tmp_path))
    assert _run("list", "--dir", str(d)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "RUNTIME", "STATE", "SHA", "OK"]
    assert lines[1].split() == ["forecaster_w32", "1.0.0", "litert", "active", "yes"]
    assert lines[2].split() == ["tiny", "1.0.0", "onnxruntime", "active", "yes"]


def test_verify_passes_a_good_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path), forecaster_entry(tmp_path))
    assert _run("verify", "--dir", str(d)) == 0
    assert "2 of 2 models usable" in capsys.readouterr().out


def test_verify_fails_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path), forecaster_entry(tmp_path))
    model = d / "tiny-1.0.0.onnx"
    model.write_bytes(model.read_bytes()[:-3])
    assert _run("verify", "--dir", str(d)) == 1
    out = capsys.readouterr().out
    assert "REFUSED  tiny: model tiny: file" in out and "truncated" in out
    assert "ok       forecaster_w32 1.0.0" in out and "1 of 2 models usable" in out
    assert _run("list", "--dir", str(d)) == 0
    assert "tiny            1.0.0    onnxruntime  refused  no" in capsys.readouterr().out


def test_verify_refuses_an_unreadable_manifest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text("{")
    assert _run("verify", "--dir", str(tmp_path)) == 1
    assert "cannot read the model manifest" in capsys.readouterr().out


def test_selftest_one_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path),
                   onnx_entry(tmp_path, name="wrong", gain=3.0, expected_gain=2.0))
    assert _run("selftest", "tiny", "--dir", str(d)) == 0
    assert "ok       tiny 1.0.0: outputs within" in capsys.readouterr().out
    assert _run("selftest", "wrong", "--dir", str(d)) == 1
    assert "self-test output_0 differs by 1" in capsys.readouterr().out
    assert _run("selftest", "absent", "--dir", str(d)) == 1
    out = capsys.readouterr().out
    assert "no model 'absent'" in out and "listed: tiny, wrong" in out


def test_bundled_models_verify(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("verify") == 0, capsys.readouterr().out
