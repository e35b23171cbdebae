"""Checks shared by the runners: the model's real tensors against the
manifest at load, and each call's arrays against the specs before the runtime
sees them (a runtime error on a bad shape is far less clear)."""

from __future__ import annotations

import numpy as np

from agent.models.errors import ModelError, ModelRefused
from agent.models.runner import TensorSpec


def dims_fit(declared: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    """The manifest may fix a dimension the model leaves free (-1), never the
    other way round: a model fixed at 48 cannot take the 'any' it promises."""
    return len(declared) == len(actual) and all(
        a == -1 or d == a for d, a in zip(declared, actual, strict=True)
    )


def compare_specs(model: str, kind: str, declared: tuple[TensorSpec, ...],
                  actual: tuple[TensorSpec, ...], *, by_name: bool) -> None:
    """``ModelRefused`` unless the model's ``actual`` tensors are those declared.

    ``by_name``: ONNX names are the model's own and are compared; TFLite names
    are converter artefacts (``serving_default_x:0``), so only order counts.
    """
    if len(declared) != len(actual):
        raise ModelRefused(model, f"manifest lists {len(declared)} {kind}s, the model has "
                           f"{len(actual)} ({', '.join(a.name for a in actual)}): fix the "
                           "manifest entry or the model file")
    for d, a in zip(declared, actual, strict=True):
        if (by_name and d.name != a.name) or d.dtype != a.dtype or not dims_fit(d.shape, a.shape):
            raise ModelRefused(model, f"manifest says {kind} {d.name} is {d.describe()}, the "
                               f"model has {a.name} {a.describe()}: fix the manifest entry or "
                               "rebuild the model")


def check_inputs(model: str, specs: tuple[TensorSpec, ...], inputs: list[np.ndarray]) -> None:
    """``ModelError`` unless ``inputs`` match ``specs`` in number, dtype and shape."""
    if len(inputs) != len(specs):
        raise ModelError(model, f"takes {len(specs)} inputs, got {len(inputs)}")
    for spec, x in zip(specs, inputs, strict=True):
        if not isinstance(x, np.ndarray):
            raise ModelError(model, f"input {spec.name} must be a numpy array, got "
                             f"{type(x).__name__}")
        if x.dtype != np.dtype(spec.dtype) or not spec.accepts(tuple(x.shape)):
            raise ModelError(model, f"input {spec.name} must be {spec.describe()}, got "
                             f"[{','.join(str(d) for d in x.shape)}] {x.dtype}")
