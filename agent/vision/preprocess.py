"""Frame preprocessing: undistortion, rotation and region-of-interest crop, in
one pass where possible, plus resize and colour helpers chosen for cost.

Order, cheapest first (figures: ``scripts/bench_preprocess.py``):

- No lens calibration: the ROI is cut from the raw frame first (a numpy view,
  no copy) and only that region is rotated (``cv2.rotate`` copies ROI pixels
  only). With rotation 0 and no calibration nothing is copied at all.
- With a calibration: undistortion, rotation and crop are fused into ONE
  ``cv2.remap``. The undistortion maps are built once per frame size, rotated
  like the image (a map is an image of source coordinates) and cut to the ROI,
  so each frame costs one remap of the ROI's pixels, not a full-frame remap
  plus a rotate plus a crop. Maps are kept in OpenCV's fixed-point form
  (CV_16SC2, 4 bytes a pixel plus a 2-byte interpolation table) which is both
  smaller and faster than float maps.

Undistortion keeps the calibrated camera matrix (same focal length and
centre), so ROI fractions and pixel scales stay comparable to the raw frame.

``cv2.remap`` is the one costly step (about 12 ms for a whole 720p frame on
one core here, so 100+ ms on a gateway): its cost follows the OUTPUT pixels.
So the ROI is applied inside the maps, and ``scale`` (e.g. 0.5) folds the
model's downscale into the same remap: maps sampled at half resolution, each
output pixel read at the centre of its 2x2 source block (bilinear there is
the 2x2 average), a quarter of the cost and no separate resize.

Every result carries a :class:`Geometry` that maps a box found in the
processed image back to pixels of the ORIGINAL frame (as the camera gave it,
unrotated, distorted): ``geometry.to_original(box)``. With undistortion the
box border is sampled and pushed through the lens model exactly (the same
projection the maps were built from), so the result is the bounding box of the
bent edges, not an approximation by the centre.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import cv2
import numpy as np

from agent.config.model import CameraConfig
from agent.vision.calibrate import CameraCalibration

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x, y, w, h in pixels (continuous)
Size = tuple[int, int]  # width, height
Rotation = Literal[0, 90, 180, 270]
Purpose = Literal["model", "thumbnail", "crop"]

_ROTATE_CODE = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}
# Frame sizes a camera changes between are few; keep the plans of the last two.
_PLANS_KEPT = 2
# Points sampled along each box edge when mapping through the lens model:
# distortion bends straight edges, so corners alone would miss the bulge.
_EDGE_SAMPLES = 5
# Aspect ratios that differ by more than this cannot share a calibration.
_ASPECT_TOLERANCE = 0.01


# --------------------------------------------------------------- rotation maths
def rotated_size(size: Size, rotation: int) -> Size:
    """Size of a ``size`` frame after a clockwise ``rotation``."""
    w, h = size
    return (h, w) if rotation in (90, 270) else (w, h)


def unrotate_points(pts: np.ndarray, size: Size, rotation: int) -> np.ndarray:
    """Continuous coordinates (N x 2) in the rotated frame -> the unrotated one.

    ``size`` is the UNROTATED frame size. Continuous means pixel i spans
    [i, i + 1], so a box edge maps to a box edge exactly.
    """
    w, h = size
    x, y = pts[:, 0], pts[:, 1]
    if rotation == 90:  # cv2.ROTATE_90_CLOCKWISE: out[y'][x'] = in[h-1-x'][y']
        return np.stack([y, h - x], axis=1)
    if rotation == 180:
        return np.stack([w - x, h - y], axis=1)
    if rotation == 270:  # counter-clockwise: out[y'][x'] = in[x'][w-1-y']
        return np.stack([w - y, x], axis=1)
    return pts.astype(np.float64, copy=True)


def roi_rect(size: Size, roi: tuple[float, float, float, float] | None) -> tuple[int, int, int, int]:
    """The ROI fractions of a ``size`` frame as integer pixels x, y, w, h (never empty)."""
    w, h = size
    if roi is None:
        return 0, 0, w, h
    fx, fy, fw, fh = roi
    x0 = min(round(fx * w), w - 1)
    y0 = min(round(fy * h), h - 1)
    x1 = max(min(round((fx + fw) * w), w), x0 + 1)
    y1 = max(min(round((fy + fh) * h), h), y0 + 1)
    return x0, y0, x1 - x0, y1 - y0


def native_roi(size: Size, rotation: int, roi: tuple[float, float, float, float] | None
               ) -> tuple[int, int, int, int]:
    """The ROI (fractions of the ROTATED frame) as a rectangle of the unrotated frame."""
    rx, ry, rw, rh = roi_rect(rotated_size(size, rotation), roi)
    corners = np.array([[rx, ry], [rx + rw, ry + rh]], dtype=np.float64)
    (ax, ay), (bx, by) = (map(float, p) for p in unrotate_points(corners, size, rotation))
    return round(min(ax, bx)), round(min(ay, by)), round(abs(bx - ax)), round(abs(by - ay))


# --------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Lens:
    camera_matrix: np.ndarray  # for the frame size in use (scaled from the calibration)
    dist_coeffs: np.ndarray

    def distort(self, pts: np.ndarray) -> np.ndarray:
        """Undistorted pixel centres (N x 2) -> where they lie in the raw frame."""
        k = self.camera_matrix
        norm = np.empty((len(pts), 3), dtype=np.float64)
        norm[:, 0] = (pts[:, 0] - k[0, 2]) / k[0, 0]
        norm[:, 1] = (pts[:, 1] - k[1, 2]) / k[1, 1]
        norm[:, 2] = 1.0
        zero = np.zeros(3, dtype=np.float64)
        out, _ = cv2.projectPoints(norm, zero, zero, k, self.dist_coeffs)
        return np.asarray(out, dtype=np.float64).reshape(-1, 2)


@dataclass(frozen=True)
class Geometry:
    """How a processed image relates to the original frame.

    ``crop`` is x, y, w, h of the region inside the rotated (and, with a lens,
    undistorted) full-resolution frame; ``offset`` is its origin. ``scale``
    is processed pixels per frame pixel (1 unless the Preprocessor was given
    one); ``size`` is the processed image's size. Models that resize further
    pass ``from_size`` to :meth:`to_original`.
    """

    original_size: Size
    rotation: int
    crop: tuple[int, int, int, int]
    lens: _Lens | None = None
    scale: float = 1.0

    @property
    def size(self) -> Size:
        return _scaled(self.crop[2], self.scale), _scaled(self.crop[3], self.scale)

    @property
    def offset(self) -> tuple[int, int]:
        return self.crop[0], self.crop[1]

    def points_to_original(self, pts: np.ndarray) -> np.ndarray:
        """Continuous points (N x 2) of the processed image -> the original frame."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        cw, ch = self.crop[2], self.crop[3]
        pw, ph = self.size
        pts = pts * np.array([cw / pw, ch / ph]) + np.array(self.offset)
        native = unrotate_points(pts, self.original_size, self.rotation)
        if self.lens is not None:
            # the lens model works on pixel centres; continuous = centre + 0.5
            native = self.lens.distort(native - 0.5) + 0.5
        return native

    def to_original(self, box: Box, from_size: Size | None = None) -> Box:
        """A box x, y, w, h found in the processed image -> the original frame.

        ``from_size``: the size of the image the box was found in when that was
        a resized copy of the processed image (a model input). The result is
        clipped to the frame.
        """
        x, y, w, h = (float(v) for v in box)
        if from_size is not None:
            sx, sy = self.size[0] / from_size[0], self.size[1] / from_size[1]
            x, y, w, h = x * sx, y * sy, w * sx, h * sy
        if self.lens is None:
            pts = np.array([[x, y], [x + w, y + h]], dtype=np.float64)
        else:
            t = np.linspace(0.0, 1.0, _EDGE_SAMPLES)
            xs, ys = x + w * t, y + h * t
            pts = np.concatenate([
                np.stack([xs, np.full_like(xs, y)], 1),
                np.stack([xs, np.full_like(xs, y + h)], 1),
                np.stack([np.full_like(ys, x), ys], 1),
                np.stack([np.full_like(ys, x + w), ys], 1),
            ])
        mapped = self.points_to_original(pts)
        fw, fh = self.original_size
        x0, y0 = np.clip(mapped.min(axis=0), 0, [fw, fh])
        x1, y1 = np.clip(mapped.max(axis=0), 0, [fw, fh])
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


@dataclass(frozen=True, eq=False)
class Processed:
    """A processed frame. ``grey`` and ``rgb`` are converted once, on first use,
    and shared by every model that asks."""

    image: np.ndarray
    geometry: Geometry

    @cached_property
    def grey(self) -> np.ndarray:
        return to_grey(self.image)

    @cached_property
    def rgb(self) -> np.ndarray:
        return to_rgb(self.image)


@dataclass(frozen=True, eq=False)
class _Plan:
    geometry: Geometry
    native_crop: tuple[int, int, int, int]  # used without a lens
    maps: tuple[np.ndarray, np.ndarray] | None  # fixed-point remap maps, with a lens


class Preprocessor:
    """Per-camera preprocessing; build once per camera, call :meth:`process` per frame.

    ``scale`` (0 < scale <= 1) shrinks the result in the same pass: with a
    lens it is folded into the remap (cost follows output pixels), without
    one it is a :func:`resize` for ``"model"`` after the crop.
    Not thread-safe (the plan cache): one per camera, used by the vision worker.
    """

    def __init__(self, cfg: CameraConfig, calibration: CameraCalibration | None = None,
                 scale: float = 1.0) -> None:
        if not 0 < scale <= 1:
            raise ValueError(f"scale {scale}: must be in (0, 1]")
        self.scale = scale
        self.camera_id = cfg.id
        self.rotation: int = cfg.rotation
        self.roi = cfg.roi
        self.calibration = calibration
        # Set when the calibration cannot serve the frames (wrong aspect ratio):
        # frames then go through without undistortion, and this says why.
        self.problem: str | None = None
        self._plans: OrderedDict[Size, _Plan] = OrderedDict()

    def process(self, image: np.ndarray) -> Processed:
        """Rotate, undistort and crop ``image`` (BGR, grey or 16-bit depth)."""
        size: Size = (image.shape[1], image.shape[0])
        plan = self._plans.get(size)
        if plan is None:
            plan = self._plan(size)
            self._plans[size] = plan
            while len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        if plan.maps is not None:
            # Depth: never blend a "no data" 0 with its neighbours (a hole would
            # become something standing half-way up); nearest keeps values real.
            interp = cv2.INTER_NEAREST if image.dtype == np.uint16 else cv2.INTER_LINEAR
            out = cv2.remap(image, plan.maps[0], plan.maps[1], interp,
                            borderMode=cv2.BORDER_CONSTANT)
        else:
            x, y, w, h = plan.native_crop
            out = image[y:y + h, x:x + w]  # a view
            if self.rotation:
                out = cv2.rotate(out, _ROTATE_CODE[self.rotation])
            if self.scale != 1.0:
                out = resize(out, plan.geometry.size, "model")
        return Processed(out, plan.geometry)

    def _plan(self, size: Size) -> _Plan:
        crop = roi_rect(rotated_size(size, self.rotation), self.roi)
        lens = self._lens_for(size)
        if lens is None:
            return _Plan(Geometry(size, self.rotation, crop, None, self.scale),
                         native_roi(size, self.rotation, self.roi), None)
        mx, my = cv2.initUndistortRectifyMap(
            lens.camera_matrix, lens.dist_coeffs, None, lens.camera_matrix, size, cv2.CV_32FC1
        )
        if self.rotation:
            # a map is an image of source coordinates: rotate it like the frame
            mx = cv2.rotate(mx, _ROTATE_CODE[self.rotation])
            my = cv2.rotate(my, _ROTATE_CODE[self.rotation])
        x, y, w, h = crop
        mx, my = mx[y:y + h, x:x + w], my[y:y + h, x:x + w]
        geometry = Geometry(size, self.rotation, crop, lens, self.scale)
        if self.scale != 1.0:
            # sample the maps at the output pixels' centres (resize's convention),
            # so each output pixel reads the centre of its source block
            mx = cv2.resize(mx, geometry.size, interpolation=cv2.INTER_LINEAR)
            my = cv2.resize(my, geometry.size, interpolation=cv2.INTER_LINEAR)
        m1, m2 = cv2.convertMaps(np.ascontiguousarray(mx), np.ascontiguousarray(my),
                                 cv2.CV_16SC2)
        return _Plan(geometry, (0, 0, 0, 0), (m1, m2))

    def _lens_for(self, size: Size) -> _Lens | None:
        cal = self.calibration
        if cal is None:
            return None
        cw, ch = cal.image_size
        if abs(size[0] / size[1] - cw / ch) > _ASPECT_TOLERANCE * (cw / ch):
            self.problem = (
                f"camera {self.camera_id}: calibration is for {cw}x{ch} frames but the camera "
                f"gives {size[0]}x{size[1]} (another aspect ratio): frames are NOT undistorted; "
                f"recalibrate at this resolution (dairy-edge calibrate camera)"
            )
            log.warning("%s", self.problem)
            return None
        # same aspect ratio: the intrinsics scale with the resolution
        s = size[0] / cw
        k = cal.camera_matrix.astype(np.float64).copy()
        k[0, :] *= s
        k[1, :] *= s
        k[0, 2] = (cal.camera_matrix[0, 2] + 0.5) * s - 0.5  # pixel centres scale about 0.5
        k[1, 2] = (cal.camera_matrix[1, 2] + 0.5) * s - 0.5
        return _Lens(k, cal.dist_coeffs.astype(np.float64))


def _scaled(n: int, scale: float) -> int:
    return n if scale == 1.0 else max(1, round(n * scale))


# ------------------------------------------------------------------ resize/colour
def resize(img: np.ndarray, size: Size, purpose: Purpose = "model") -> np.ndarray:
    """Resize ``img`` to ``size`` (width, height) with the cheapest method that
    keeps what ``purpose`` needs (one thread, figures in scripts/bench_preprocess.py):

    - ``"model"``: a model input where small print must survive. Up to 2x
      down: INTER_LINEAR (at exactly 2x OpenCV's bilinear averages each 2x2
      block: identical to INTER_AREA, same cost). Beyond 2x: INTER_LINEAR to
      twice the target, then an exact 2x step: anti-aliased within a grey
      level or two of INTER_AREA for a fraction of its cost (INTER_AREA at
      non-integer factors is 5-15x slower).
    - ``"thumbnail"``: tiny images (the presence gate), 8x down or more.
      INTER_NEAREST to four times the target, then two exact 2x steps: each
      output pixel averages 16 samples (sensor noise averaged out, so the gate
      does not fire on noise) at about a tenth of a millisecond, where
      INTER_AREA over the whole frame reads every pixel (~2 ms at 720p, ~7 ms
      at 1080p). Smaller factors follow ``"model"``.
    - ``"crop"``: a small crop (a tag) for a recogniser: upscales use
      INTER_CUBIC (sharper strokes; microseconds at crop sizes), downscales
      follow ``"model"``.
    """
    sw, sh = img.shape[1], img.shape[0]
    dw, dh = size
    if (sw, sh) == (dw, dh):
        return img
    if img.dtype == np.uint16:  # depth: never average across holes (0 = no data)
        return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST)
    down = min(sw / dw, sh / dh)
    if purpose == "thumbnail" and down >= 8:
        mid = cv2.resize(img, (dw * 4, dh * 4), interpolation=cv2.INTER_NEAREST)
        mid = cv2.resize(mid, (dw * 2, dh * 2), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(mid, size, interpolation=cv2.INTER_LINEAR)
    if purpose == "crop" and (dw > sw or dh > sh):
        return cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    if down > 2:
        mid = cv2.resize(img, (dw * 2, dh * 2), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(mid, size, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def to_grey(img: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grey -> grey (a grey image is returned as is)."""
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[:, :, 0]
    code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(img, code)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """BGR (OpenCV's order) -> RGB (what most models were trained on); grey -> RGB."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
