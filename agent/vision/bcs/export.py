"""Write a fitted BCS model as a model directory the agent loads like any other.

The directory holds ``bcs.onnx`` (standardise -> linear -> clip to 1-5, plus
the interval's half width as a second output), its self-test and a
``manifest.json`` entry with the fit's data and cross-validated metrics. The
registry verifies, self-tests and hot-swaps it with rollback like the shipped
models. ``onnx`` is imported here only: nothing else in the agent builds graphs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.models.manifest import selftest_name, sha256_file, upsert_entry
from agent.models.selftest import write_self_test
from agent.vision.bcs.features import layout_name
from agent.vision.bcs.ridge import Ridge

MODEL_NAME = "bcs"
DEPTH_MODEL_NAME = "bcs_depth"  # the shipped model for depth cameras (shape + depth relief)
MODEL_NAMES = (MODEL_NAME, DEPTH_MODEL_NAME)  # tried in this order for each frame
OPSET = 13


def build_onnx(model: Ridge, half_width: float) -> bytes:
    """The ONNX bytes of ``model``: input [-1, F] float32 features, outputs
    ``bcs`` [-1, 1] and ``half_width`` [1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = len(model.mean)
    inp = layout_name(model.groups)
    inits = [
        numpy_helper.from_array(model.mean.astype(np.float32), "mean"),
        numpy_helper.from_array((1.0 / model.scale).astype(np.float32), "inv_scale"),
        numpy_helper.from_array(model.weights.astype(np.float32).reshape(n, 1), "weights"),
        numpy_helper.from_array(np.array([model.bias], np.float32), "bias"),
        numpy_helper.from_array(np.array(1.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(5.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([half_width], np.float32), "half_width_value"),
    ]
    nodes = [
        helper.make_node("Sub", [inp, "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_scale"], ["z"]),
        helper.make_node("MatMul", ["z", "weights"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["raw"]),
        helper.make_node("Clip", ["raw", "lo", "hi"], ["bcs"]),
        helper.make_node("Identity", ["half_width_value"], ["half_width"]),
    ]
    graph = helper.make_graph(
        nodes, "bcs_ridge",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("bcs", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("half_width", TensorProto.FLOAT, [1])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dairy-edge")
    proto.ir_version = 8  # readable by onnxruntime >= 1.17
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def write_model_dir(out: Path, model: Ridge, half_width: float, *, samples: np.ndarray,
                    metrics: dict[str, Any], data: str, source: str, licence: str,
                    script: str, seed: int | None, version: str | None = None,
                    name: str = MODEL_NAME) -> Path:
    """Write ``bcs.onnx``, its self-test and the manifest entry into ``out``.

    ``samples`` are a few feature rows for the self-test (the expected outputs
    are computed here with onnxruntime, so the test checks the file as built).
    ``name`` is ``bcs`` for a farm's fit (whatever its camera) and
    ``bcs_depth`` only for the shipped depth model. Returns the model file's path."""
    import onnxruntime as ort

    out.mkdir(parents=True, exist_ok=True)
    blob = build_onnx(model, half_width)
    if version is None:
        digest = hashlib.sha256(blob).hexdigest()[:8]
        version = f"{time.strftime('%Y%m%d', time.gmtime())}-{digest}"
    file_name = f"{name}.onnx"
    path = out / file_name
    tmp = out / f".{file_name}.tmp"
    tmp.write_bytes(blob)
    tmp.replace(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(samples, dtype=np.float32)
    outputs = [np.asarray(o) for o in session.run(None, {layout_name(model.groups): x})]
    st = selftest_name(name, version)
    write_self_test(out / st, [x], outputs)
    n = len(model.mean)
    entry = {
        "name": name,
        "task": "body condition score (1-5) from a top-view camera",
        "version": version,
        "runtime": "onnxruntime",
        "file": file_name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "inputs": [{"name": layout_name(model.groups), "dtype": "float32", "shape": [-1, n],
                    "meaning": "agent.vision.bcs.features, groups "
                               f"{'+'.join(model.groups)}, {n} values per photo"}],
        "outputs": [
            {"name": "bcs", "dtype": "float32", "shape": [-1, 1],
             "meaning": "body condition score, 1-5 (unrounded)"},
            {"name": "half_width", "dtype": "float32", "shape": [1],
             "meaning": "half width of the ~80 % interval around the score (cross-validated)"},
        ],
        "quantization": f"none (float32): a linear head over {n} features is {4 * n} bytes of "
                        "weights and runs in microseconds; int8 would save nothing",
        "licence": licence,
        "source": source,
        "training": {"script": script, "seed": seed, "data": data,
                     "alpha": round(model.alpha, 4), "groups": "+".join(model.groups)},
        "metrics": metrics,
        "self_test": {"file": st, "atol": 1e-4},
    }
    upsert_entry(out, entry)
    return path


def describe(out: Path, name: str = MODEL_NAME) -> str:
    """One line naming the model written into ``out`` (for the CLI)."""
    data = json.loads((out / "manifest.json").read_text())
    entry = next(m for m in data["models"] if m["name"] == name)
    return f"{out / entry['file']} ({name} {entry['version']})"
