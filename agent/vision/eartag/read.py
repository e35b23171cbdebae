"""Read the number on one text crop: recogniser, then a strict CTC decode.

The recogniser's output is folded (scripts/build_eartag_models.py) into 13
classes per time step: blank, the ten digits, space and "other" (every other
character). The decode is greedy CTC over all 13, so a position that looks
more like a letter than a digit stays a non-digit, and a crop holding one is
refused rather than forced into digits: signs, pen labels and the letters on
official tags never turn into a management number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from agent.models.runner import Runner

REC_HEIGHT = 48
BLANK, SPACE, OTHER = 0, 11, 12
_DIGITS = "0123456789"


@dataclass(frozen=True, slots=True)
class RecParams:
    max_width: int = 320  # the recogniser's trained width; longer lines are squeezed
    min_width: int = 32
    min_digit_confidence: float = 0.80  # any digit below this: the crop is not read
    max_digits: int = 8  # longer digit strings are not tag numbers (barcodes, EIDs)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a crop reads as. ``text`` keeps non-digits ('?' for other, ' ' for space)."""

    text: str
    digit_confidences: tuple[float, ...]  # one per character of ``text``; 0 for non-digits

    @property
    def digits_only(self) -> bool:
        return bool(self.text) and self.text.isdigit()

    @property
    def confidence(self) -> float:
        return float(math.prod(self.digit_confidences)) if self.text else 0.0


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left (upright reading
    order for text tilted less than 45 degrees)."""
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def warp_crop(image_bgr: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quadrilateral rectified to an upright rectangle (LINEAR: cheap, and
    the crops are small)."""
    tl, tr, br, bl = order_corners(corners)
    w = round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    h = round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    w, h = max(w, 2), max(h, 2)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(np.array([tl, tr, br, bl], dtype=np.float32), dst)
    return cv2.warpPerspective(image_bgr, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def rec_input(crop_bgr: np.ndarray, params: RecParams) -> np.ndarray:
    """(1, 3, 48, W) float32: height 48, aspect kept up to ``max_width``."""
    h, w = crop_bgr.shape[:2]
    width = math.ceil(REC_HEIGHT * w / max(h, 1))
    width = min(params.max_width, max(params.min_width, width))
    img = cv2.resize(crop_bgr, (width, REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
    x = (img.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x)


def ctc_decode(probs: np.ndarray) -> Decoded:
    """Greedy CTC over the 13 folded classes of one (T, 13) sequence."""
    best = probs.argmax(axis=1)
    text: list[str] = []
    confs: list[float] = []
    prev = BLANK
    for t, cls in enumerate(best):
        cls = int(cls)
        if cls != BLANK:
            p = float(probs[t, cls])
            if cls == prev:
                if 1 <= cls <= 10:  # the same character held: keep its best step
                    confs[-1] = max(confs[-1], p)
            elif 1 <= cls <= 10:
                text.append(_DIGITS[cls - 1])
                confs.append(p)
            else:
                text.append(" " if cls == SPACE else "?")
                confs.append(0.0)
        prev = cls
    return Decoded("".join(text), tuple(confs))


def recognise(runner: Runner, crop_bgr: np.ndarray, params: RecParams) -> Decoded:
    """Run the recogniser on one crop and decode it."""
    probs = runner.run([rec_input(crop_bgr, params)])[0][0]
    return ctc_decode(probs)


def accept(decoded: Decoded, params: RecParams) -> tuple[str, tuple[float, ...]] | None:
    """The number and its digit confidences when the crop reads as digits only,
    each confident; else None.

    Leading and trailing spaces are dropped (margins); anything else that is not
    a digit refuses the crop: half a sign or '12 34' is never a tag number.
    """
    text = decoded.text.strip(" ")
    if not text or not text.isdigit() or len(text) > params.max_digits:
        return None
    start = decoded.text.index(text)
    confs = decoded.digit_confidences[start:start + len(text)]
    if min(confs) < params.min_digit_confidence:
        return None
    return text, confs
