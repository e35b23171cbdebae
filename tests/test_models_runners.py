"""ONNX Runtime and LiteRT runners on real model files: the manifest's tensors
checked against the model's, each call's inputs checked, time recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from agent.models.errors import ModelError, ModelRefused
from agent.models.litert import LiteRTRunner
from agent.models.manifest import ModelEntry
from agent.models.onnx import OnnxRunner
from tests.helpers_models import REPO_MODELS, forecaster_entry, onnx_entry, tiny_onnx


def _calls(model: str) -> float:
    return REGISTRY.get_sample_value("dairy_edge_model_seconds_count", {"model": model}) or 0.0


def test_onnx_runner_runs_any_width_and_records_time(tmp_path: Path) -> None:
    entry = ModelEntry.model_validate(onnx_entry(tmp_path, gain=3.0))
    runner = OnnxRunner(entry, tmp_path / entry.file, threads=1)
    before = _calls("tiny")
    for width in (1, 7, 64):
        x = np.random.default_rng(width).normal(size=(1, 3, width)).astype(np.float32)
        (y,) = runner.run([x])
        np.testing.assert_allclose(y, 3.0 * x + 1, rtol=1e-6)
    assert _calls("tiny") == before + 3
    assert runner.version == "1.0.0" and runner.inputs[0].shape == (1, 3, -1)


def test_onnx_runner_refuses_bad_inputs_without_calling_the_runtime(tmp_path: Path) -> None:
    entry = ModelEntry.model_validate(onnx_entry(tmp_path))
    runner = OnnxRunner(entry, tmp_path / entry.file, threads=1)
    with pytest.raises(ModelError, match=r"input x must be \[1,3,-1\] float32, got \[1,3,4\] "
                                         "float64"):
        runner.run([np.zeros((1, 3, 4))])
    with pytest.raises(ModelError, match=r"got \[2,3,4\]"):
        runner.run([np.zeros((2, 3, 4), np.float32)])
    with pytest.raises(ModelError, match="takes 1 inputs, got 2"):
        runner.run([np.zeros((1, 3, 4), np.float32)] * 2)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("shape", [1, 3, 48, -1], (r"manifest says input x is \[1,3,48,-1\] float32, the model "
                              r"has x \[1,3,-1\] float32")),
    ("dtype", "uint8", r"input x is \[1,3,-1\] uint8"),
    ("name", "image", "input image is"),
])
def test_onnx_runner_refuses_a_manifest_unlike_the_model(
        tmp_path: Path, field: str, value: object, says: str) -> None:
    raw = onnx_entry(tmp_path)
    raw["inputs"][0][field] = value
    entry = ModelEntry.model_validate(raw)
    with pytest.raises(ModelRefused, match=says):
        OnnxRunner(entry, tmp_path / entry.file, threads=1)


def test_manifest_may_not_promise_a_free_dimension_the_model_fixes(tmp_path: Path) -> None:
    raw = onnx_entry(tmp_path)
    tiny_onnx(tmp_path / raw["file"], 2.0, fixed_width=5)
    entry = ModelEntry.model_validate(raw)
    with pytest.raises(ModelRefused, match=r"model has x \[1,3,5\]"):
        OnnxRunner(entry, tmp_path / entry.file, threads=1)
    # The reverse (manifest fixes what the model leaves free) is fine.
    fixed = ModelEntry.model_validate(onnx_entry(tmp_path, name="fixed", input_shape=[1, 3, 5]))
    OnnxRunner(fixed, tmp_path / fixed.file, threads=1)


def test_litert_runner_on_the_bundled_forecaster(tmp_path: Path) -> None:
    entry = ModelEntry.model_validate(forecaster_entry(tmp_path))
    runner = LiteRTRunner(entry, REPO_MODELS / entry.file, threads=1)
    spec_in, spec_out = runner.inputs[0], runner.outputs[0]
    ramp = np.linspace(-1.0, 1.0, 32, dtype=np.float32)[None, :]
    (q,) = runner.run([spec_in.quantize(ramp)])
    assert q.dtype == np.int8 and q.shape == (1, 1)
    assert 0.3 < float(spec_out.dequantize(q)[0, 0]) < 2.5  # a rising ramp keeps rising
    # The batch dimension is free: resized on demand, and back again.
    batch = spec_in.quantize(np.tile(ramp, (5, 1)))
    (qb,) = runner.run([batch])
    assert qb.shape == (5, 1) and np.all(qb == q[0, 0])
    assert runner.run([spec_in.quantize(ramp)])[0].shape == (1, 1)
    with pytest.raises(ModelError, match=r"must be \[-1,32\] int8, got \[1,32\] float32"):
        runner.run([ramp])


@pytest.mark.parametrize(("field", "value", "says"), [
    ("shape", [-1, 16], r"input window is \[-1,16\] int8, the model has serving_default_window"),
    ("dtype", "float32", r"\[-1,32\] float32"),
])
def test_litert_runner_refuses_a_manifest_unlike_the_model(
        tmp_path: Path, field: str, value: object, says: str) -> None:
    raw = forecaster_entry(tmp_path)
    raw["inputs"][0][field] = value
    with pytest.raises(ModelRefused, match=says):
        LiteRTRunner(ModelEntry.model_validate(raw), tmp_path / raw["file"], threads=1)


def test_litert_runner_refuses_extra_outputs_in_the_manifest(tmp_path: Path) -> None:
    raw = forecaster_entry(tmp_path)
    raw["outputs"].append(dict(raw["outputs"][0], name="spare"))
    with pytest.raises(ModelRefused, match="manifest lists 2 outputs, the model has 1"):
        LiteRTRunner(ModelEntry.model_validate(raw), tmp_path / raw["file"], threads=1)


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_a_garbage_model_file_is_refused_by_either_runtime(tmp_path: Path, runtime: str) -> None:
    raw = onnx_entry(tmp_path) if runtime == "onnxruntime" else forecaster_entry(tmp_path)
    (tmp_path / raw["file"]).write_bytes(b"\x08\x07not a model at all" * 50)
    entry = ModelEntry.model_validate(raw)
    cls = OnnxRunner if runtime == "onnxruntime" else LiteRTRunner
    with pytest.raises(ModelRefused, match="cannot open .* rebuild it"):
        cls(entry, tmp_path / entry.file, threads=1)
