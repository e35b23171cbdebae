"""Find text boxes (tag numbers) with the DB text detector.

The detector sees a downscaled copy of the frame (its cost grows with the
pixel count); the boxes come back as rotated rectangles in pixels of the
ORIGINAL frame, so the recogniser can read each from full-resolution pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agent.models.runner import Runner


@dataclass(frozen=True, slots=True)
class DetParams:
    """DB post-processing, as upstream PP-OCR defaults unless measured otherwise."""

    max_side: int = 960  # longest side the detector sees (multiple of 32)
    min_side: int = 64  # smaller inputs are padded up to this
    thresh: float = 0.3  # pixel is text when P > thresh
    box_thresh: float = 0.5  # mean P inside a box to keep it
    unclip_ratio: float = 1.6  # DB shrinks text regions; grow them back by this
    min_box_px: float = 6.0  # shorter side, in DETECTOR pixels, below which a box is noise
    max_candidates: int = 200


@dataclass(frozen=True, slots=True)
class TextBox:
    """A rotated rectangle in original-frame pixels: ``cv2.minAreaRect`` form."""

    center: tuple[float, float]
    size: tuple[float, float]  # (w, h) along the rect's own axes
    angle: float
    score: float

    def points(self) -> np.ndarray:
        """Four corners, float32 (4, 2)."""
        return cv2.boxPoints((self.center, self.size, self.angle)).astype(np.float32)

    def bbox(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Axis-aligned x, y, w, h clipped to the frame."""
        pts = self.points()
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(width, int(x1)), min(height, int(y1))
        return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def det_input(image_bgr: np.ndarray, params: DetParams) -> tuple[np.ndarray, float, float]:
    """The detector's input tensor and the x, y factors from its pixels to the frame's."""
    h, w = image_bgr.shape[:2]
    scale = min(1.0, params.max_side / max(h, w))
    # Sides rounded to multiples of 32 (the network's stride), at least min_side.
    rh = max(params.min_side, round(h * scale / 32) * 32)
    rw = max(params.min_side, round(w * scale / 32) * 32)
    if (rh, rw) == (h, w):
        small = image_bgr
    else:
        # INTER_AREA only when shrinking a lot: it is ~100x INTER_LINEAR's cost, and
        # at <= 2x LINEAR keeps thin strokes well enough for the detector.
        shrink = max(h / rh, w / rw)
        interp = cv2.INTER_AREA if shrink > 2.0 else cv2.INTER_LINEAR
        small = cv2.resize(image_bgr, (rw, rh), interpolation=interp)
    x = (small.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x), w / rw, h / rh


def _box_score(prob: np.ndarray, contour: np.ndarray) -> float:
    """Mean probability inside the contour (upstream's 'slow' score: fairer to thin
    rotated text than the bounding-box mean)."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - (x, y)], 1)
    return float(cv2.mean(prob[y:y + h, x:x + w], mask)[0])


def boxes_from_map(prob: np.ndarray, fx: float, fy: float, params: DetParams) -> list[TextBox]:
    """DB post-processing of a (H, W) probability map into frame-space boxes."""
    binary = (prob > params.thresh).astype(np.uint8)
    mask = cv2.dilate(binary, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)[: params.max_candidates]
    out: list[TextBox] = []
    for contour in contours:
        if len(contour) < 4:
            continue
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < 2:
            continue
        score = _box_score(prob, contour)
        if score < params.box_thresh:
            continue
        # Unclip: DB's text kernel is a shrunk copy of the text; offset each side by
        # area * ratio / perimeter (upstream uses a polygon offset; for a rectangle
        # the min-area rect of that offset is exactly this).
        d = w * h * params.unclip_ratio / (2.0 * (w + h))
        w, h = w + 2 * d, h + 2 * d
        if min(w, h) < params.min_box_px:
            continue
        # Back to frame pixels. fx and fy differ only by the rounding to 32, so the
        # rect stays a rect to within a pixel.
        out.append(TextBox((cx * fx, cy * fy), (w * fx, h * fy), angle, score))
    return out


def detect_window(runner: Runner, image_bgr: np.ndarray, window: tuple[int, int, int, int],
                  scale: float, params: DetParams) -> list[TextBox]:
    """Text boxes inside ``window`` (x0, y0, x1, y1 of ``image_bgr``) seen at ``scale``
    (above 1 enlarges small text for the detector), in ``image_bgr``'s pixels."""
    x0, y0, x1, y1 = window
    part = image_bgr[y0:y1, x0:x1]
    h, w = part.shape[:2]
    if h < 2 or w < 2:
        return []
    rh = max(params.min_side, round(h * scale / 32) * 32)
    rw = max(params.min_side, round(w * scale / 32) * 32)
    interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    small = cv2.resize(part, (rw, rh), interpolation=interp)
    x = (small.astype(np.float32) * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None]
    prob = runner.run([np.ascontiguousarray(x)])[0][0, 0]
    boxes = boxes_from_map(prob, w / rw, h / rh, params)
    return [TextBox((b.center[0] + x0, b.center[1] + y0), b.size, b.angle, b.score)
            for b in boxes]


def detect(runner: Runner, image_bgr: np.ndarray, params: DetParams) -> list[TextBox]:
    """Text boxes in ``image_bgr`` (original pixels), best first."""
    x, fx, fy = det_input(image_bgr, params)
    prob = runner.run([x])[0][0, 0]
    boxes = boxes_from_map(prob, fx, fy, params)
    return sorted(boxes, key=lambda b: b.score, reverse=True)
