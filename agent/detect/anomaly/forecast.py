"""The model channel: a one-step forecaster over a normalised window.

The last ``WINDOW`` values are normalised by their own median and robust
scale, the int8 TFLite model (``models/forecaster_w32.tflite``, trained on
synthetic series by ``scripts/train_forecaster.py``) predicts the next value
in those units, and the channel's deviation is the absolute forecast error.
The same ``normalise_window`` is used in training, so the two cannot drift.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from agent.detect.anomaly.runner import LiteRTRunner, ModelRunner

WINDOW = 32
CLIP = 8.0  # normalised values beyond this are clipped (int8 range)
MODEL_NAME = "forecaster_w32"


def normalise_window(values: list[float]) -> tuple[list[float], float, float]:
    """(normalised values, median, scale) of one window."""
    s = sorted(values)
    n = len(s)
    med = s[n // 2]
    iqr = s[(3 * n) // 4] - s[n // 4]
    spread = s[-1] - s[0]
    scale = max(iqr / 1.349, spread / 20.0, 1e-9 * (1.0 + abs(med)))
    return [max(-CLIP, min(CLIP, (v - med) / scale)) for v in values], med, scale


class ForecastChannel:
    """Forecast error of the newest value given the ``WINDOW`` before it."""

    def __init__(self, runner: ModelRunner | None = None) -> None:
        self.runner = runner
        self.buf: deque[float] = deque(maxlen=WINDOW)

    def deviation(self, x: float) -> float:
        """|x - forecast| in window-scale units (0 until the window is full)."""
        if self.runner is None or len(self.buf) < WINDOW:
            return 0.0
        norm, med, scale = normalise_window(list(self.buf))
        pred = float(self.runner.run(np.asarray(norm, dtype=np.float32)[None, :])[0, 0])
        target = max(-CLIP, min(CLIP, (x - med) / scale))
        return abs(target - pred)

    def learn(self, x: float) -> None:
        self.buf.append(x)

    def to_state(self) -> dict[str, Any]:
        return {"buf": list(self.buf)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.buf = deque((float(v) for v in state.get("buf", [])), maxlen=WINDOW)


_RUNNER_CACHE: dict[str, LiteRTRunner] = {}


def shared_runner(name: str = MODEL_NAME) -> LiteRTRunner:
    """One interpreter per process for all streams (the detector is single-threaded)."""
    runner = _RUNNER_CACHE.get(name)
    if runner is None:
        runner = _RUNNER_CACHE[name] = LiteRTRunner(name)
    return runner
