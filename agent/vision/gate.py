"""The presence gate: keeps the models off frames where nothing is in view.

Per frame it costs one thumbnail (64 px wide, grey, from the camera's region of
interest) and a handful of operations on ~2300 pixels: a few hundredths of a
millisecond after the resize (``scripts/bench_preprocess.py``).

Why a background model and not frame-to-frame difference: a cow standing still
at the lane for the seconds her tag is readable shows no motion between
frames, so a frame-difference gate would drop exactly the frames we want. The
gate compares each thumbnail with a background of the EMPTY scene:

- while the scene looks empty the background follows it (a running average,
  time constant ``EMPTY_TAU_S`` on the monotonic clock, so the frame rate does
  not matter), tracking daylight, clouds and lamps;
- while something is in view the background is left alone, so a cow standing
  still stays "present" however long she stands, and the moment she leaves
  the scene matches the background again (a background that learnt her, even
  slowly, would keep reporting her ghost);
- something in view without a break for ``ABSORB_S`` becomes the new
  background (a gate left open, a bucket put down must not cost inference
  forever); the old empty background is kept, so when the scene goes back to
  it, it is recognised as empty at once.

And a keepalive: at least one frame every ``KEEPALIVE_S`` goes through anyway,
so a cow absorbed after standing for minutes is still looked at now and then,
and a gate that is wrongly quiet cannot blind the pipeline.

Lamps switching on or a camera's auto-exposure change every pixel at once;
the thumbnail is scaled to the background's median brightness first (gain
compensation, clamped to 0.5-2x) so that alone does not read as presence.
Depth frames (16-bit, millimetres) skip that and count a pixel changed when it
moved more than ``DEPTH_DELTA_MM``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from agent.config.model import CameraConfig
from agent.vision.preprocess import native_roi, resize

THUMB_WIDTH = 64
# A thumbnail pixel counts as changed when it differs from the background by
# more than this many grey levels (0-255): well above sensor noise on a
# 16-sample average, well below a cow against straw or concrete.
PIXEL_DELTA = 18.0
DEPTH_DELTA_MM = 100.0
EMPTY_TAU_S = 5.0
ABSORB_S = 120.0
# Under the ear-tag visit gap (3 s by default) would keep every empty scene at
# half the budget; 5 s costs at most one inference per 5 s per empty camera.
KEEPALIVE_S = 5.0


@dataclass(frozen=True, slots=True)
class GateResult:
    run: bool  # send the frame to the models
    score: float  # share of changed thumbnail pixels, 0..1
    reason: str  # "off", "first", "change", "keepalive", "empty"


class MotionGate:
    """Presence gate of one camera. Not thread-safe: the vision worker owns it."""

    def __init__(
        self,
        threshold: float,
        roi: tuple[float, float, float, float] | None = None,
        rotation: int = 0,
        *,
        keepalive_s: float = KEEPALIVE_S,
        absorb_s: float = ABSORB_S,
        pixel_delta: float = PIXEL_DELTA,
    ) -> None:
        self.threshold = threshold
        self.roi = roi
        self.rotation = rotation
        self.keepalive_s = keepalive_s
        self.absorb_s = absorb_s
        self.pixel_delta = pixel_delta
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None  # the empty scene before an absorb
        self._last_ns: int | None = None
        self._last_run_ns: int | None = None
        self._present_since_ns: int | None = None
        self._depth = False

    @classmethod
    def for_camera(cls, cfg: CameraConfig) -> MotionGate:
        return cls(cfg.motion_threshold, cfg.roi, cfg.rotation)

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        """The camera's ROI as a small float32 grey image (0-255 scale; depth scaled so
        ``DEPTH_DELTA_MM`` is ``pixel_delta``)."""
        h, w = image.shape[:2]
        x, y, rw, rh = native_roi((w, h), self.rotation, self.roi)
        roi = image[y:y + rh, x:x + rw]  # a view; rotation does not change a share of pixels
        tw = THUMB_WIDTH if rw >= rh else max(4, round(THUMB_WIDTH * rw / rh))
        th = max(4, round(tw * rh / rw))
        small = resize(roi, (tw, th), "thumbnail")
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)  # on ~2300 pixels, not the frame
        self._depth = small.dtype == np.uint16
        if self._depth:  # millimetres, scaled so DEPTH_DELTA_MM compares like pixel_delta
            return small.astype(np.float32) * np.float32(PIXEL_DELTA / DEPTH_DELTA_MM)
        return small.astype(np.float32)

    def check(self, image: np.ndarray, mono_ns: int) -> GateResult:
        """Whether the frame taken at ``mono_ns`` (monotonic) should go to the models."""
        if self.threshold <= 0:
            return GateResult(True, 0.0, "off")
        thumb = cv2.GaussianBlur(self.thumbnail(image), (3, 3), 0)
        bg = self._background
        if bg is None or bg.shape != thumb.shape:  # first frame or a new frame size
            self._background, self._previous = thumb, None
            self._last_ns = self._last_run_ns = mono_ns
            self._present_since_ns = None
            return GateResult(True, 1.0, "first")
        score = self._score(thumb, bg)
        if (score >= self.threshold and self._previous is not None
                and self._score(thumb, self._previous) < self.threshold):
            # back to the scene as it was before something was absorbed
            self._background, self._previous = self._previous, None
            bg = self._background
            score = self._score(thumb, bg)
        present = score >= self.threshold
        dt = max(0.0, (mono_ns - (mono_ns if self._last_ns is None else self._last_ns)) / 1e9)
        self._last_ns = mono_ns
        if present:
            if self._present_since_ns is None:
                self._present_since_ns = mono_ns
            if (mono_ns - self._present_since_ns) / 1e9 >= self.absorb_s:
                self._previous, self._background = bg, thumb
                self._present_since_ns = None
            self._last_run_ns = mono_ns
            return GateResult(True, score, "change")
        self._present_since_ns = None
        alpha = 1.0 - math.exp(-dt / EMPTY_TAU_S)
        if alpha > 0:
            cv2.accumulateWeighted(thumb, bg, alpha)
        if (mono_ns - (self._last_run_ns or 0)) / 1e9 >= self.keepalive_s:
            self._last_run_ns = mono_ns
            return GateResult(True, score, "keepalive")
        return GateResult(False, score, "empty")

    def _score(self, thumb: np.ndarray, bg: np.ndarray) -> float:
        """Share of pixels that differ from ``bg`` by more than the pixel delta."""
        if not self._depth:
            # gain compensation: a global brightness change is not a cow
            gain = float(np.median(bg)) / max(float(np.median(thumb)), 1.0)
            thumb = thumb * min(max(gain, 0.5), 2.0)
        return float(np.count_nonzero(cv2.absdiff(thumb, bg) > self.pixel_delta)) / thumb.size
