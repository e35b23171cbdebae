"""LiteRT runner: TFLite models, int8 first (the gateway's default runtime).

``ai_edge_litert`` is the runtime; ``tflite_runtime`` is the older name of the
same interpreter and is tried second (some Pi images ship it).
"""

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


def interpreter_class() -> Any:
    """The TFLite ``Interpreter`` class, or ``ModelRefused`` saying what to install."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found,no-redef,unused-ignore]

        return Interpreter
    except ImportError as err:
        raise ModelRefused(
            "litert", "no TFLite runtime: pip install 'dairy-edge[litert]' (or ai-edge-litert)"
        ) from err


def _actual(details: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    # shape_signature has -1 where the model accepts any size; shape is the
    # size allocated now.
    return tuple(
        TensorSpec(d["name"], np.dtype(d["dtype"]).name,
                   tuple(int(v) for v in d.get("shape_signature", d["shape"])))
        for d in details
    )


class LiteRTRunner:
    """One TFLite interpreter on the CPU with ``threads`` threads. Not
    thread-safe by contract (one caller at a time). Dynamic dimensions are
    handled by resizing the input tensors when a call's shapes change."""

    def __init__(self, entry: ModelEntry, path: Path, threads: int = 1) -> None:
        self.name = entry.name
        self.version = entry.version
        self.inputs = entry.input_specs()
        self.outputs = entry.output_specs()
        try:
            self._interp = interpreter_class()(model_path=str(path), num_threads=threads)
            self._interp.allocate_tensors()
        except ModelRefused:
            raise
        except Exception as err:  # the interpreter raises ValueError/RuntimeError
            raise ModelRefused(self.name, f"LiteRT cannot open {path}: {err}. The file "
                               "matches its hash, so the model itself is bad: rebuild it") from err
        in_details = self._interp.get_input_details()
        out_details = self._interp.get_output_details()
        compare_specs(self.name, "input", self.inputs, _actual(in_details), by_name=False)
        compare_specs(self.name, "output", self.outputs, _actual(out_details), by_name=False)
        self._in_index = [int(d["index"]) for d in in_details]
        self._out_index = [int(d["index"]) for d in out_details]
        self._shapes = [tuple(int(v) for v in d["shape"]) for d in in_details]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays in the manifest's input order and dtypes -> outputs in its order.

        Raises ``ModelError`` for an input that does not fit or a runtime failure.
        """
        check_inputs(self.name, self.inputs, inputs)
        start = time.perf_counter()
        try:
            shapes = [tuple(x.shape) for x in inputs]
            if shapes != self._shapes:
                for index, shape in zip(self._in_index, shapes, strict=True):
                    self._interp.resize_tensor_input(index, list(shape), strict=True)
                self._interp.allocate_tensors()
                self._shapes = shapes
            for index, x in zip(self._in_index, inputs, strict=True):
                self._interp.set_tensor(index, np.ascontiguousarray(x))
            self._interp.invoke()
            # get_tensor copies: the interpreter reuses its buffers on the next call.
            return [self._interp.get_tensor(i) for i in self._out_index]
        except Exception as err:
            self._shapes = []  # force a clean resize on the next call
            raise ModelError(self.name, f"LiteRT failed: {err}") from err
        finally:
            MODEL_SECONDS.labels(model=self.name).observe(time.perf_counter() - start)
