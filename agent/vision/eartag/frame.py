"""The per-frame ear-tag reader: one frame in, the tags read in it out.

Used as is by the live vision worker and by ``dairy-edge vision eartag``, so
the CLI shows exactly what the agent would read.

    detect text boxes (downscaled frame; optionally again in full-resolution
    windows around them) -> warp each box from full-resolution pixels ->
    recognise (digits, blank, space, other) -> strict decode -> tag format ->
    re-read a longer box (other or more digits: cut or unstable, refused) ->
    plastic check (text on a large surface: refused) -> drop the small line of
    a two-line tag

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
from agent.vision.eartag.detect import DetParams, TextBox, detect, detect_window
from agent.vision.eartag.plastic import margins
from agent.vision.eartag.read import RecParams, accept, order_corners, recognise, warp_crop
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
    # A number closer than this to the frame edge may go on past it (a cut digit is
    # often left out of the box): not read. In text heights, at least edge_px.
    edge_margin: float = 0.25
    edge_px: int = 2
    # A number hidden in part (by a bar, hair, another tag) ends where the occluder
    # starts, so the box's end columns are not the tag plastic behind the digits.
    end_strip: float = 0.0  # end-column strip width, in box heights (0: off, see docs)
    end_match: float = 0.6  # share of each end strip that must look like the plastic
    # Re-read the box lengthened by this many text heights at each end of the line;
    # other or more digits there refuse the number (0: off, see _conflicts).
    reread_grow: float = 0.2
    # Text on a large surface is not a tag's: the number's background colour going
    # on this many text heights past both ends of the line (or far above and below
    # it) refuses the number (0: off). Tag plastic stops within about half a text
    # height of the digits' ends.
    surface_side: float = 1.0
    # Two stages: the detector sees the whole frame at ``det.max_side`` only to find
    # where text is; each place is then detected again from full-resolution pixels
    # in a window ``refine_margin`` text heights around it, scaled so its text is
    # ``refine_text_px`` tall (small digits enlarged). 0: one stage.
    refine_text_px: float = 0.0
    refine_margin: float = 1.0
    refine_max_scale: float = 3.0
    refine_max_px: int = 160_000  # window pixels the detector sees at most (cost bound)


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
        if image_bgr.dtype != np.uint8:
            # 16-bit grey (some IR cameras): the models read 8 bits; stretch, don't clip.
            lo, hi = float(image_bgr.min()), float(image_bgr.max())
            scaled = (image_bgr.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))
            image_bgr = scaled.astype(np.uint8)
        if image_bgr.ndim == 2:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        h, w = image_bgr.shape[:2]
        small = max(h, w) <= self.params.small_image_px
        pad = self.params.pad_small if small else 0
        work = (cv2.copyMakeBorder(image_bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
                if pad else image_bgr)
        boxes = detect(self.det, work, self.params.det)
        if self.params.refine_text_px > 0:
            boxes = self._refine(work, boxes)
        readings = []
        for box in boxes[: self.params.max_boxes]:
            if min(box.size) < self.params.min_text_px:
                continue
            reading = self._read_box(work, box, pad, w, h)
            if reading.number is not None and self._maybe_cut(work, box, reading, small):
                # The number may go on past the edge or under an occluder: '858' of
                # '85878' is a wrong number.
                reading = TagReading(None, 0.0, reading.box, reading.crop)
            readings.append(reading)
        readings = _drop_small_lines(readings)
        if small and not any(r.number for r in readings):
            # A tight crop may leave the detector no margin to see a text line;
            # read the whole image as one line.
            whole = self._read_whole(image_bgr)
            if whole is not None:
                readings = [whole]
        return readings

    def _refine(self, work: np.ndarray, coarse: list[TextBox]) -> list[TextBox]:
        """Each coarse box detected again in a full-resolution window around it;
        a coarse box whose window finds nothing is kept as it was."""
        p = self.params
        H, W = work.shape[:2]
        out: list[TextBox] = []
        for box in coarse[: p.max_boxes]:
            if any(_covers(b, box) for b in out):
                continue  # already found from an earlier window
            th = min(box.size)
            x, y, bw, bh = box.bbox(W, H)
            m = p.refine_margin * th
            win = (max(0, int(x - m)), max(0, int(y - m)),
                   min(W, int(x + bw + m)), min(H, int(y + bh + m)))
            area = (win[2] - win[0]) * (win[3] - win[1])
            scale = min(p.refine_max_scale, p.refine_text_px / max(th, 1.0),
                        (p.refine_max_px / max(area, 1)) ** 0.5)
            found = [b for b in detect_window(self.det, work, win, scale, p.det)
                     if not any(_covers(o, b) for o in out)]
            out.extend(found if any(_covers(b, box) or _covers(box, b) for b in found)
                       else found + [box])
        return sorted(out, key=lambda b: b.score, reverse=True)

    def _read_box(self, work: np.ndarray, box: TextBox, pad: int, w: int, h: int) -> TagReading:
        crop = warp_crop(work, box.points())
        number, confs = self._read_crop(crop)
        if number is not None and self.params.reread_grow > 0 and self._conflicts(
                work, box, number):
            number, confs = None, ()
        if number is not None and self.params.surface_side > 0:
            m = margins(work, box, side=max(2.0, self.params.surface_side + 0.5))
            if m is not None and m.large_surface(self.params.surface_side):
                number, confs = None, ()
        x, y, bw, bh = box.bbox(work.shape[1], work.shape[0])
        x, y = max(0, x - pad), max(0, y - pad)
        bw, bh = min(bw, w - x), min(bh, h - y)
        conf = float(np.prod(confs)) if number else 0.0
        return TagReading(number, conf, (x, y, bw, bh), crop, confs if number else ())

    def _conflicts(self, work: np.ndarray, box: TextBox, number: str) -> bool:
        """Whether the box, lengthened at both ends, reads as other digits or more of
        them: a digit cut by an occluder or the box edge shows once a little more is in
        view ('46' of '46331' reads '463'), and an unstable misread changes. A longer
        crop that reads worse ('?7' for '27': the recogniser's margin quirk) is no
        evidence either way."""
        again = recognise(self.rec, warp_crop(work, grown(box, self.params.reread_grow)),
                          self.params.rec)
        digits = "".join(c for c in again.text if c.isdigit())
        return digits != number and len(digits) >= len(number)

    def _maybe_cut(self, work: np.ndarray, box: TextBox, reading: TagReading,
                   small: bool) -> bool:
        p = self.params
        margin = max(p.edge_px, p.edge_margin * min(box.size))
        if not small and touches_edge(box, work.shape[1], work.shape[0], margin):
            return True
        if p.end_strip > 0 and reading.crop is not None:
            return not ends_on_plastic(reading.crop, p.end_strip, p.end_match)
        return False

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
    stacked directly above or below a clearly taller text box, read or not (the
    small herd-id line alone is never the management number)."""
    keep = []
    for r in readings:
        x, y, w, h = r.box
        shadowed = False
        for o in readings:
            if o is r or r.number is None:
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


def _covers(a: TextBox, b: TextBox) -> bool:
    """Whether b's centre lies inside a's rotated rectangle (the same text line)."""
    return bool(cv2.pointPolygonTest(a.points().reshape(-1, 1, 2), b.center, False) >= 0)


def grown(box: TextBox, by: float) -> np.ndarray:
    """Corners of ``box`` lengthened by ``by`` text heights at each end of its line
    (the line runs along the more horizontal side, as ``warp_crop`` reads it)."""
    tl, tr, br, bl = order_corners(box.points())
    length = float(np.linalg.norm(tr - tl))
    if length < 1:
        return box.points()
    d = (tr - tl) / length * by * float(np.linalg.norm(bl - tl))
    return np.array([tl - d, tr + d, br + d, bl - d], dtype=np.float32)


def touches_edge(box: TextBox, width: int, height: int, margin: float) -> bool:
    pts = box.points()
    return bool(pts[:, 0].min() < margin or pts[:, 1].min() < margin
                or pts[:, 0].max() > width - 1 - margin or pts[:, 1].max() > height - 1 - margin)


def ends_on_plastic(crop: np.ndarray, strip: float, min_match: float) -> bool:
    """Whether both end strips of a text crop look like the tag's plastic (see
    ``end_matches``). Ink or an occluder at an end means the number may go on there."""
    left, right = end_matches(crop, strip)
    return min(left, right) >= min_match


def end_matches(crop: np.ndarray, strip: float) -> tuple[float, float]:
    """Share of the left and right end strips (``strip`` crop heights wide) whose
    colour is within the spread of the tag plastic: the background colour of the
    crop's middle (majority Otsu class)."""
    h, w = crop.shape[:2]
    k = max(2, round(strip * h))
    if w < 4 * k:
        return 0.0, 0.0
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB).astype(np.float32)
    grey = cv2.cvtColor(crop[:, k:w - k], cv2.COLOR_BGR2GRAY)
    _, cls = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    fg = cls.astype(bool)
    bg = lab[:, k:w - k][fg if fg.sum() >= (~fg).sum() else ~fg]
    if len(bg) < 8:
        return 0.0, 0.0
    mean = bg.mean(axis=0)
    tol = float(np.linalg.norm(bg.std(axis=0))) * 2.0 + 10.0
    shares = []
    for end in (lab[:, :k], lab[:, w - k:]):
        dist = np.linalg.norm(end.reshape(-1, 3) - mean, axis=1)
        shares.append(float((dist < tol).mean()))
    return shares[0], shares[1]
