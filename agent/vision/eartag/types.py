"""What the per-frame ear-tag reader hands to the visit voter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TagReading:
    """One tag found in one frame.

    ``number`` is None when a tag was found but its number could not be read
    with confidence: the voter still counts it as a sighting (and keeps its
    crop for review), but never as evidence for a number.
    """

    number: str | None
    confidence: float  # 0..1 for the whole number (product of per-digit confidences)
    box: tuple[int, int, int, int]  # x, y, w, h in pixels of the original frame
    crop: np.ndarray | None = None  # BGR crop of the tag, for review
    digit_confidences: tuple[float, ...] = ()
