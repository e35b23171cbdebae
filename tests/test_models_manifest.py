"""The model manifest: strict entries, file verification, upsert for build scripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ConfigError, PermanentError
from agent.models.errors import ModelRefused
from agent.models.manifest import (
    ModelEntry,
    load_manifest,
    read_manifest,
    upsert_entry,
    verify_file,
)
from agent.models.runner import TensorSpec
from tests.helpers_models import REPO_MODELS, forecaster_entry, onnx_entry


def test_bundled_manifest_parses_and_its_files_verify() -> None:
    manifest = load_manifest(REPO_MODELS)
    forecaster = manifest.get("forecaster_w32")
    assert forecaster is not None and forecaster.runtime == "litert"
    assert forecaster.licence and forecaster.source and forecaster.self_test is not None
    for entry in manifest.models:
        assert verify_file(entry, REPO_MODELS) == REPO_MODELS / entry.file
        assert entry.self_test is not None, f"{entry.name} ships without a self-test"
        assert (REPO_MODELS / entry.self_test.file).is_file()


def test_unknown_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    entry = onnx_entry(tmp_path)
    entry["inputs"][0]["dtpye"] = "float32"  # a typo must not pass silently
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [entry]}))
    with pytest.raises(ConfigError) as err:
        load_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(err.value)
    assert "inputs.0.dtpye" in str(err.value) and "tiny" in str(err.value)


def test_one_bad_entry_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    good = forecaster_entry(tmp_path)
    bad = onnx_entry(tmp_path, name="bad")
    bad["runtime"] = "tensorflow"
    nameless = {"task": "?"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [good, bad, nameless]}))
    read = read_manifest(tmp_path)
    assert [e.name for e in read.entries] == ["forecaster_w32"]
    assert set(read.invalid) == {"bad", "#2"}
    assert "runtime" in read.invalid["bad"]


def test_a_name_listed_twice_is_refused(tmp_path: Path) -> None:
    entry = onnx_entry(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [entry, entry]}))
    read = read_manifest(tmp_path)
    assert read.entries == [] and "listed twice" in read.invalid["tiny"]


@pytest.mark.parametrize("text", ["", "{not json", '{"models": {}}', "[]"])
def test_unreadable_manifest_is_a_config_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ConfigError, match="manifest"):
        read_manifest(tmp_path)


def test_missing_manifest_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path / "manifest.json")):
        load_manifest(tmp_path)


@pytest.mark.parametrize("file", ["../escape.onnx", "/abs/model.onnx", ""])
def test_file_must_stay_inside_the_models_dir(tmp_path: Path, file: str) -> None:
    entry = onnx_entry(tmp_path)
    entry["file"] = file
    with pytest.raises(ValueError, match="relative"):
        ModelEntry.model_validate(entry)


def test_verify_refuses_missing_truncated_and_altered_files(tmp_path: Path) -> None:
    entry = ModelEntry.model_validate(onnx_entry(tmp_path))
    path = tmp_path / entry.file
    assert verify_file(entry, tmp_path) == path
    blob = path.read_bytes()

    path.write_bytes(blob[:-7])
    with pytest.raises(ModelRefused, match=r"truncated \(\d+ bytes, the manifest says") as err:
        verify_file(entry, tmp_path)
    assert isinstance(err.value, PermanentError) and "copy the file again" in str(err.value)

    altered = bytearray(blob)
    altered[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(altered))
    with pytest.raises(ModelRefused, match="sha256"):
        verify_file(entry, tmp_path)

    path.unlink()
    with pytest.raises(ModelRefused, match="missing"):
        verify_file(entry, tmp_path)


def test_upsert_replaces_by_name_sorted_and_pretty(tmp_path: Path) -> None:
    upsert_entry(tmp_path, onnx_entry(tmp_path, name="zeta"))
    upsert_entry(tmp_path, forecaster_entry(tmp_path))
    upsert_entry(tmp_path, onnx_entry(tmp_path, name="zeta", version="2.0.0"))
    text = (tmp_path / "manifest.json").read_text()
    assert text.endswith("\n") and '\n  "models": [\n' in text
    manifest = load_manifest(tmp_path)
    assert [(m.name, m.version) for m in manifest.models] == [
        ("forecaster_w32", "1.0.0"), ("zeta", "2.0.0")]
    assert sorted(p.name for p in tmp_path.glob(".manifest-*")) == []
    assert (tmp_path / "manifest.json").stat().st_mode & 0o044 == 0o044  # others can read


def test_upsert_refuses_an_invalid_entry_and_leaves_the_file(tmp_path: Path) -> None:
    upsert_entry(tmp_path, forecaster_entry(tmp_path))
    before = (tmp_path / "manifest.json").read_text()
    bad = onnx_entry(tmp_path)
    del bad["licence"]
    with pytest.raises(ValueError, match="licence"):
        upsert_entry(tmp_path, bad)
    assert (tmp_path / "manifest.json").read_text() == before


def test_tensor_spec_quantises_like_the_manifest_says() -> None:
    entry = load_manifest(REPO_MODELS).get("forecaster_w32")
    assert entry is not None
    spec = entry.inputs[0].spec()
    assert spec.dtype == "int8" and spec.quantization is not None
    x = np.array([[-20.0, -1.0, 0.0, 0.5, 7.9, 30.0]], dtype=np.float32)
    q = spec.quantize(x)
    assert q.dtype == np.int8 and q[0, 0] == -128 and q[0, -1] == 127  # clipped
    back = spec.dequantize(q)
    assert np.all(np.abs(back[0, 1:5] - x[0, 1:5]) <= spec.quantization[0] / 2 + 1e-6)
    plain = TensorSpec("x", "float32", (1, -1))
    assert plain.accepts((1, 9)) and not plain.accepts((2, 9)) and not plain.accepts((1,))
    assert plain.describe() == "[1,-1] float32"
