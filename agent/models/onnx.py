"""ONNX Runtime runner: for models better served by it (for instance the
PP-OCR text detector and recogniser, which are ONNX files upstream)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.metrics import MODEL_SECONDS
from agent.models.checks import check_inputs, compare_specs
from agent.models.errors import ModelError, ModelRefused
from agent.models.manifest import ModelEntry
from agent.models.runner import TensorSpec

_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64",
}


def _actual(nodes: list[Any]) -> tuple[TensorSpec, ...]:
    # Symbolic ("batch") and unknown (None) dimensions are free: -1.
    return tuple(
        TensorSpec(n.name, _ORT_DTYPES.get(n.type, n.type),
                   tuple(d if isinstance(d, int) and d > 0 else -1 for d in n.shape))
        for n in nodes
    )


class OnnxRunner:
    """One ``InferenceSession`` on the CPU. Not thread-safe by contract (one
    caller at a time); ``threads`` intra-op threads, no inter-op parallelism,
    so a gateway's few cores stay predictable."""

    def __init__(self, entry: ModelEntry, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.name = entry.name
        self.version = entry.version
        self.inputs = entry.input_specs()
        self.outputs = entry.output_specs()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
        # The arena keeps the peak of every input size it has seen (frames differ in
        # size): off, the resident memory of the ear-tag models fell from 194 to 122 MB.
        opts.enable_cpu_mem_arena = False
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelRefused(self.name, f"onnxruntime cannot open {path}: {err}. The file "
                               "matches its hash, so the model itself is bad: rebuild it") from err
        compare_specs(self.name, "input", self.inputs, _actual(self._session.get_inputs()),
                      by_name=True)
        compare_specs(self.name, "output", self.outputs, _actual(self._session.get_outputs()),
                      by_name=True)
        self._input_names = [s.name for s in self.inputs]
        self._output_names = [s.name for s in self.outputs]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays in the manifest's input order and dtypes -> outputs in its order.

        Raises ``ModelError`` for an input that does not fit or a runtime failure.
        """
        check_inputs(self.name, self.inputs, inputs)
        start = time.perf_counter()
        try:
            out = self._session.run(self._output_names, dict(zip(self._input_names, inputs,
                                                                  strict=True)))
        except Exception as err:
            raise ModelError(self.name, f"onnxruntime failed: {err}") from err
        finally:
            MODEL_SECONDS.labels(model=self.name).observe(time.perf_counter() - start)
        return [np.asarray(y) for y in out]
