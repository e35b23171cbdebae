"""The one interface every model runner offers, whatever executes it.

A runner is made by the registry from a verified manifest entry; callers only
see ``run``. Runners are not thread-safe: one caller at a time (the vision
worker), which is also what keeps their memory bounded.
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


class Runner(Protocol):
    """A loaded model. ``run`` takes and returns arrays in the model's own order."""

    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...
