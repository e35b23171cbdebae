"""Run a small int8 TFLite model: the ``ModelRunner`` interface and LiteRT.

LiteRT (``ai_edge_litert``) is the runtime; ``tflite_runtime`` is the older
name of the same interpreter and is tried second (some Pi images ship it).
Models are listed in ``models/manifest.json``; a file whose sha256 does not
match its entry is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.errors import ConfigError
from agent.models.litert import interpreter_class

MODELS_DIR = Path(__file__).resolve().parents[2] / "bundled" / "models"


class ModelRunner(Protocol):
    """Float in, float out; quantization is the runner's business."""

    name: str

    def run(self, x: np.ndarray) -> np.ndarray:
        """``x`` shaped like the model input (float32); returns the output as float32."""
        ...


def load_manifest(models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    path = models_dir / "manifest.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read model manifest: {err}") from err
    return data


def manifest_entry(name: str, models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    for entry in load_manifest(models_dir).get("models", []):
        if entry.get("name") == name:
            return dict(entry)
    raise ConfigError(f"model {name!r} is not in {models_dir / 'manifest.json'}")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LiteRTRunner:
    """A TFLite model on the CPU through LiteRT, one interpreter per runner.

    Not thread-safe: give each worker its own runner.
    """

    def __init__(self, name: str, models_dir: Path = MODELS_DIR, num_threads: int = 1) -> None:
        entry = manifest_entry(name, models_dir)
        path = models_dir / entry["file"]
        if not path.is_file():
            raise ConfigError(f"model file missing: {path}")
        if sha256_file(path) != entry["sha256"]:
            raise ConfigError(f"{path}: sha256 does not match models/manifest.json")
        self.name = name
        self.version = str(entry.get("version", ""))
        self._interp = interpreter_class()(model_path=str(path), num_threads=num_threads)
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype, self._out_dtype = inp["dtype"], out["dtype"]
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        self.input_shape = tuple(int(v) for v in inp["shape"])

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(self.input_shape)
        if self._in_dtype == np.int8 and self._in_scale:
            info = np.iinfo(np.int8)
            x = np.clip(np.round(x / self._in_scale + self._in_zero), info.min, info.max)
            x = x.astype(np.int8)
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index)
        if self._out_dtype == np.int8 and self._out_scale:
            return ((y.astype(np.float32) - self._out_zero) * self._out_scale).astype(np.float32)
        return np.asarray(y, dtype=np.float32)
