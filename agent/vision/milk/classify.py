"""``MilkClassifier``: one frame of a sample cup or sight glass in, one milk class out.

Per frame: white balance from the reference card (``balance``), find the milk
(``features.find_milk``), measure it (``features.features``), and ask the
``milk_cls`` model (from the model registry, onnxruntime) for the probability
of every class in ``agent.records.MILK_CLASSES``.

No reference card in view: the frame is still classified, after a grey-world
guess, but the confidence is capped at ``NO_CARD_CONFIDENCE`` (0.5) and
``details`` says ``patch_found: false`` with a note: the light's colour is not
undone, so a faint pink under warm light cannot be told from normal milk. The
runtime should not raise an alert on such a result alone.

No milk found (no cup, an empty cup, a frame that is all one colour): the
result is ``None`` with ``details["error"]`` saying so, confidence 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.errors import ConfigError
from agent.models.errors import ModelRefused
from agent.models.loader import open_runner
from agent.models.manifest import read_manifest
from agent.models.runner import Runner
from agent.records import MILK_CLASSES
from agent.vision.milk.balance import Balance, balance, to_linear
from agent.vision.milk.features import WORK_SIDE, MilkRegion, features, find_milk

MODEL_NAME = "milk_cls"
NO_CARD_CONFIDENCE = 0.5
CLIPPED_CONFIDENCE = 0.7  # more than a fifth of the card's white clipped


@dataclass
class MilkResult:
    """``result`` is a class of ``MILK_CLASSES``, or None when no milk was found
    (``details["error"]`` says why)."""

    result: str | None
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """What the model is asked about one frame, and how it was found."""

    vector: np.ndarray | None
    bal: Balance
    region: MilkRegion | None
    scale: float  # work pixels per frame pixel
    error: str | None = None


def prepare(frame_bgr: np.ndarray) -> Prepared:
    """Balance, find the milk and measure it: the part before the model."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 BGR frame, got {frame_bgr.shape} "
                         f"{frame_bgr.dtype}")
    h, w = frame_bgr.shape[:2]
    if min(h, w) < 32:
        raise ValueError(f"frame of {w} x {h} px is too small to hold a cup and a card")
    lin = to_linear(frame_bgr)
    bal = balance(frame_bgr, lin)
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(lin, (max(1, int(w * scale)), max(1, int(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else lin
    work = small * bal.gains[None, None, :].astype(np.float32)
    card_mask = None
    if bal.corners is not None:
        card_mask = np.zeros(work.shape[:2], np.uint8)
        cv2.fillConvexPoly(card_mask, np.round(bal.corners * scale).astype(np.int32), 1)
    region = find_milk(work, card_mask)
    if region is None:
        return Prepared(None, bal, None, scale,
                        "no milk found: no cup or sight glass with milk in view")
    vec = features(work, region, bal.found, bal.clipped)
    return Prepared(vec, bal, region, scale)


RunnerGetter = Callable[[], Runner | None]


class MilkClassifier:
    """Classify milk frames with the registry's ``milk_cls`` model.

    :param runner_getter: returns the active runner (``registry.get("milk_cls")``
        bound, or a fixed runner); called per frame, so a hot-swapped model is
        used from the next frame on. Not thread-safe (one caller, like runners).
    """

    def __init__(self, runner_getter: RunnerGetter) -> None:
        self._get = runner_getter

    def check(self, frame_bgr: np.ndarray) -> MilkResult:
        """One frame -> ``MilkResult``. Raises ``ValueError`` for a frame that is
        not an image (wrong shape or dtype) and ``LookupError`` when no model is
        active; everything about the scene is in the result."""
        runner = self._get()
        if runner is None:
            raise LookupError(f"model {MODEL_NAME} is not active (see the model status)")
        prep = prepare(frame_bgr)
        details: dict[str, Any] = prep.bal.details()
        details["model_version"] = runner.version
        if prep.vector is None:
            details["error"] = prep.error
            return MilkResult(None, 0.0, {}, details)
        x, y, bw, bh = prep.region.box if prep.region else (0, 0, 0, 0)
        details["milk_box"] = [round(v / prep.scale) for v in (x, y, bw, bh)]
        probs = runner.run([prep.vector[None, :].astype(np.float32)])[0][0]
        probs = np.asarray(probs, np.float64)
        scores = {c: round(float(p), 4) for c, p in zip(MILK_CLASSES, probs, strict=True)}
        best = int(np.argmax(probs))
        confidence = float(probs[best])
        notes = list(details.pop("notes", []))
        if not prep.bal.found:
            confidence = min(confidence, NO_CARD_CONFIDENCE)
            notes.append(f"confidence capped at {NO_CARD_CONFIDENCE}: no reference card")
        elif prep.bal.clipped > 0.2:
            confidence = min(confidence, CLIPPED_CONFIDENCE)
            notes.append("the card's white is over-exposed: balance less sure")
        if notes:
            details["notes"] = notes
        return MilkResult(MILK_CLASSES[best], round(confidence, 4), scores, details)


class MilkModelUnavailable(ConfigError):
    """The milk model cannot be opened; the message says why and what to do."""


def open_milk_runner(models_dir: Path, threads: int = 1) -> Runner:
    """The ``milk_cls`` runner, verified and self-tested, from ``models_dir``'s manifest
    (for the CLI, the eval and the bench; the live agent uses its ``ModelRegistry``)."""
    try:
        read = read_manifest(models_dir)
    except ConfigError as err:
        raise MilkModelUnavailable(str(err)) from err
    entry = next((e for e in read.entries if e.name == MODEL_NAME), None)
    if entry is None:
        why = read.invalid.get(MODEL_NAME, f"not listed in {read.path}")
        raise MilkModelUnavailable(f"model {MODEL_NAME}: {why}; run scripts/train_milk.py "
                                   "to build it")
    try:
        return open_runner(entry, Path(models_dir), threads)
    except ModelRefused as err:
        raise MilkModelUnavailable(str(err)) from err
