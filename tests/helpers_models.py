"""Real model files for the model-runtime tests: a tiny ONNX graph built with
the ``onnx`` package, the committed int8 forecaster, and manifests for them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from agent.models.manifest import sha256_file, upsert_entry
from agent.models.selftest import write_self_test

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


def tiny_onnx(path: Path, gain: float, *, fixed_width: int | None = None) -> Path:
    """y = gain * x + 1 on x [1, 3, W] float32 (W free unless ``fixed_width``)."""
    width: int | str = fixed_width if fixed_width is not None else "w"
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "gain"], ["scaled"]),
         helper.make_node("Add", ["scaled", "one"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, width])],
        [helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
         helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # any onnxruntime from 1.16 on reads it
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def tensor(name: str, dtype: str, shape: list[int], quant: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "quantization": quant,
            "meaning": "test tensor"}


def onnx_entry(models_dir: Path, *, name: str = "tiny", version: str = "1.0.0",
               gain: float = 2.0, expected_gain: float | None = None,
               input_shape: list[int] | None = None) -> dict[str, Any]:
    """Build ``NAME-VERSION.onnx`` and its self-test in ``models_dir``, return
    its entry (not yet in the manifest). ``expected_gain`` other than ``gain``
    makes a self-test the model fails."""
    file = f"{name}-{version}.onnx"
    path = tiny_onnx(models_dir / file, gain)
    x = np.linspace(-1, 1, 3 * 5, dtype=np.float32).reshape(1, 3, 5)
    selftest = f"selftest/{name}-{version}.npz"
    want = (expected_gain if expected_gain is not None else gain) * x + 1
    write_self_test(models_dir / selftest, [x], [want.astype(np.float32)])
    return {
        "name": name, "task": "test: affine map", "version": version, "runtime": "onnxruntime",
        "file": file, "sha256": sha256_file(path), "bytes": path.stat().st_size,
        "inputs": [tensor("x", "float32", input_shape or [1, 3, -1])],
        "outputs": [tensor("y", "float32", [1, 3, -1])],
        "quantization": "none", "labels": None, "licence": "Apache-2.0",
        "source": "tests/helpers_models.py", "training": None, "metrics": {},
        "self_test": {"file": selftest, "atol": 1e-5},
    }


def forecaster_entry(models_dir: Path) -> dict[str, Any]:
    """Copy the committed int8 forecaster and its self-test into ``models_dir``."""
    import json

    entry: dict[str, Any] = next(
        m for m in json.loads((REPO_MODELS / "manifest.json").read_text())["models"]
        if m["name"] == "forecaster_w32")
    shutil.copy(REPO_MODELS / entry["file"], models_dir / entry["file"])
    (models_dir / "selftest").mkdir(exist_ok=True)
    shutil.copy(REPO_MODELS / entry["self_test"]["file"], models_dir / entry["self_test"]["file"])
    return entry


def models_dir(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    """A models folder holding ``entries`` in its manifest."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        upsert_entry(tmp_path, entry)
    return tmp_path
