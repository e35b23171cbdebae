"""The per-frame ear-tag reader: one frame in, the tags read in it out.

Used as is by the live vision worker and by ``dairy-edge vision eartag``, so
the CLI shows exactly what the agent would read.

    detect text boxes (downscaled frame) -> warp each box from full-resolution
    pixels -> recognise (digits, blank, space, other) -> strict decode ->
    tag format -> drop the small line of a two-line tag

Precision first: a crop that holds any non-digit, a digit below the digit
confidence floor, or a number outside the farm's tag format gives a reading
with ``number=None`` (a sighting for the voter, never evidence for a number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from agent.models.runner import Runner
from agent.vision.eartag.detect import DetParams, TextBox, detect
from agent.vision.eartag.read import RecParams, accept, recognise, warp_crop
from agent.vision.eartag.types import TagReading


@dataclass(frozen=True, slots=True)
class ReaderParams:
    det: DetParams = field(default_factory=DetParams)
    rec: RecParams = field(default_factory=RecParams)
    min_confidence: float = 0.0  # number confidence (product of digits) to report it
    max_boxes: int = 12  # recogniser calls per frame at most (cost bound), best boxes first
    min_text_px: float = 12.0  # box height in frame pixels below which digits are unreadable
    small_image_px: int = 480  # a smaller image may be a crop around one tag
    pad_small: int = 16  # border added around a small image before detection


class EartagReader:
    """Reads ear-tag numbers in BGR frames with the detector and recogniser runners.

    ``tag_pattern`` is the farm's tag format (a regular expression matched
    against the whole number). The runners may be swapped between calls
    (``reader.det = new``) when the registry hot-loads a new version.
    Not thread-safe: one caller at a time, like the runners.
    """

    def __init__(self, det: Runner, rec: Runner, tag_pattern: str = r"^[0-9]{1,6}$",
                 params: ReaderParams | None = None) -> None:
        self.det = det
        self.rec = rec
        self.pattern = re.compile(tag_pattern)
        self.params = params or ReaderParams()

    def read(self, image_bgr: np.ndarray) -> list[TagReading]:
        """Every tag-like text found in the frame; ``number`` set only when read
        with confidence. Boxes are x, y, w, h in pixels of ``image_bgr``."""
        if image_bgr.ndim == 2:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        h, w = image_bgr.shape[:2]
        small = max(h, w) <= self.params.small_image_px
        pad = self.params.pad_small if small else 0
        work = (cv2.copyMakeBorder(image_bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
                if pad else image_bgr)
        boxes = detect(self.det, work, self.params.det)
        readings = []
        for box in boxes[: self.params.max_boxes]:
            if min(box.size) < self.params.min_text_px:
                continue
            reading = self._read_box(work, box, pad, w, h)
            readings.append(reading)
        readings = _drop_small_lines(readings)
        if small and not any(r.number for r in readings):
            # A tight crop may leave the detector no margin to see a text line;
            # read the whole image as one line.
            whole = self._read_whole(image_bgr)
            if whole is not None:
                readings = [whole]
        return readings

    def _read_box(self, work: np.ndarray, box: TextBox, pad: int, w: int, h: int) -> TagReading:
        crop = warp_crop(work, box.points())
        number, confs = self._read_crop(crop)
        x, y, bw, bh = box.bbox(work.shape[1], work.shape[0])
        x, y = max(0, x - pad), max(0, y - pad)
        bw, bh = min(bw, w - x), min(bh, h - y)
        conf = float(np.prod(confs)) if number else 0.0
        return TagReading(number, conf, (x, y, bw, bh), crop, confs if number else ())

    def _read_crop(self, crop: np.ndarray) -> tuple[str | None, tuple[float, ...]]:
        decoded = recognise(self.rec, crop, self.params.rec)
        got = accept(decoded, self.params.rec)
        if got is None:
            return None, ()
        number, confs = got
        if not self.pattern.fullmatch(number):
            return None, ()
        if float(np.prod(confs)) < self.params.min_confidence:
            return None, ()
        return number, confs

    def _read_whole(self, image_bgr: np.ndarray) -> TagReading | None:
        h, w = image_bgr.shape[:2]
        if h < self.params.min_text_px or w < self.params.min_text_px:
            return None
        number, confs = self._read_crop(image_bgr)
        if number is None:
            return None
        return TagReading(number, float(np.prod(confs)), (0, 0, w, h), image_bgr.copy(), confs)


def _drop_small_lines(readings: list[TagReading]) -> list[TagReading]:
    """On a two-line tag the management number is the big line: drop a read line
    stacked directly above or below a clearly taller read line."""
    keep = []
    for r in readings:
        x, y, w, h = r.box
        shadowed = False
        for o in readings:
            if o is r or o.number is None or r.number is None:
                continue
            ox, oy, ow, oh = o.box
            overlap_x = min(x + w, ox + ow) - max(x, ox)
            gap_y = max(oy - (y + h), y - (oy + oh))
            if oh > 1.25 * h and overlap_x > 0.3 * min(w, ow) and gap_y < 0.6 * oh:
                shadowed = True
                break
        if not shadowed:
            keep.append(r)
    return keep
