"""The one interface every model runner offers, whatever executes it.

A runner is made by the registry from a verified manifest entry; callers only
see ``run``. Runners are not thread-safe: one caller at a time (the vision
worker), which is also what keeps their memory bounded.

``run`` takes and returns arrays in the model's own dtypes (an int8 model takes
int8); ``TensorSpec.quantize`` / ``dequantize`` convert with the manifest's
scale and zero point. A wrong dtype or shape raises ``ModelError`` before the
runtime sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "int8", "uint8", "float32"
    shape: tuple[int, ...]  # -1 for a dimension the model accepts at any size
    # (scale, zero_point) for a quantised tensor: real = scale * (q - zero_point)
    quantization: tuple[float, int] | None = None

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """True when an array of ``shape`` fits this spec (-1 matches any size)."""
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )

    def describe(self) -> str:
        """``[1,3,48,-1] float32``: the form error messages use."""
        return f"[{','.join(str(d) for d in self.shape)}] {self.dtype}"

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real values to this tensor's dtype (rounded and clipped when quantised)."""
        if self.quantization is None or not np.issubdtype(np.dtype(self.dtype), np.integer):
            return np.asarray(x, dtype=self.dtype)
        scale, zero = self.quantization
        info = np.iinfo(np.dtype(self.dtype))
        q = np.round(np.asarray(x, dtype=np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's values as float32 real values."""
        if self.quantization is None:
            return np.asarray(q, dtype=np.float32)
        scale, zero = self.quantization
        return ((np.asarray(q, dtype=np.float32) - zero) * scale).astype(np.float32)


class Runner(Protocol):
    """A loaded model. ``run`` takes and returns arrays in the model's own order."""

    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...
