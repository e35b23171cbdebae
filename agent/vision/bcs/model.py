"""A frame in, a body condition score with its interval out.

``BcsEstimator`` runs the same steps for the CLI, the fit's report and the
live agent: segment the cow (depth when there is a depth frame, else colour),
turn her into features, and run the active ``bcs`` model. The model comes from
a getter (the registry), so a hot-swapped model is used from the next frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from agent.models.errors import ModelError
from agent.models.runner import Runner
from agent.vision.bcs.export import MODEL_NAMES
from agent.vision.bcs.features import BackFeatures, back_features, parse_layout
from agent.vision.bcs.ridge import round_step
from agent.vision.bcs.segment import NoCow, Segmentation, segment_colour, segment_depth

MIN_QUALITY = 0.25  # below this the outline is not worth a score


@dataclass(frozen=True)
class BcsEstimate:
    bcs: float  # rounded to quarter points
    low: float
    high: float
    raw: float  # unrounded model output
    half_width: float  # the model's interval half width (before widening for quality)
    quality: float
    rear: str
    model_version: str

    def as_json(self) -> dict[str, float]:
        return {"bcs": self.bcs, "low": self.low, "high": self.high}


def interval(raw: float, half_width: float, quality: float) -> tuple[float, float, float]:
    """Quarter-point score and interval; a poorer outline widens the interval."""
    widen = 1.0 + max(0.0, 1.0 - quality)
    hw = half_width * widen
    bcs = float(round_step(np.array(raw)))
    low = float(round_step(np.array(raw - hw)))
    high = float(round_step(np.array(raw + hw)))
    return bcs, min(low, bcs), max(high, bcs)


MIN_SIDE = 32  # px: smaller frames hold no measurable cow
MAX_ASPECT = 4.0  # a top view of a lane is never thinner than this


def _checked(image: np.ndarray, depth: bool) -> np.ndarray:
    """The frame as the segmenters take it (BGR uint8, or 2-D uint16 depth);
    ``NoCow`` for what no camera of ours gives (a sliver, a 1-px strip)."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_ASPECT * min(h, w):
        raise NoCow(f"a {w} x {h} frame is too small or too thin for a top view")
    if depth:
        if image.ndim != 2 or image.dtype != np.uint16:
            raise NoCow("a depth frame is a single 16-bit channel (mm)")
        return image
    if image.dtype != np.uint8:
        raise NoCow(f"a colour frame is 8-bit, this one is {image.dtype}")
    if image.ndim == 2:  # a mono or IR camera
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise NoCow(f"a colour frame has 3 channels, this one has shape {image.shape}")
    return image


def measure(colour: np.ndarray | None, depth: np.ndarray | None,
            rear: str | None = None) -> tuple[Segmentation, BackFeatures]:
    """Segment and measure one frame (``NoCow`` when there is no usable cow)."""
    if depth is not None:
        depth = _checked(depth, True)
        seg = segment_depth(depth)
    elif colour is not None:
        colour = _checked(colour, False)
        seg = segment_colour(colour)
    else:
        raise NoCow("no image")
    return seg, back_features(seg, colour=colour, depth=depth, rear=rear)


class BcsEstimator:
    """Scores frames with the active BCS models ``runner(name)`` returns now:
    ``bcs`` when the frame has the features it needs, else ``bcs_depth`` (the
    shipped colour model cannot score a depth frame; a farm's fit can be
    either, and is always named ``bcs``)."""

    def __init__(self, runner: Callable[[str], Runner | None], *, rear: str | None = None,
                 min_quality: float = MIN_QUALITY) -> None:
        self._runner = runner
        self.rear = rear
        self.min_quality = min_quality

    def _pick(self, feats: BackFeatures) -> tuple[Runner, tuple[str, ...]]:
        seen = []
        for name in MODEL_NAMES:
            runner = self._runner(name)
            if runner is None:
                continue
            groups = parse_layout(runner.inputs[0].name)
            if all(g in feats.values for g in groups):
                return runner, groups
            seen.append(f"{name} needs {'+'.join(groups)}")
        if not seen:
            raise ModelError("bcs", "no active bcs model (see `dairy-edge models list`)")
        # A configuration problem, not an empty lane: the caller counts and logs it.
        raise ModelError("bcs", f"no active BCS model fits this frame ({'; '.join(seen)}; "
                         f"the frame gives {'+'.join(feats.values)}): fit a model on this "
                         "camera's kind of frames")

    def score_features(self, feats: BackFeatures) -> BcsEstimate:
        runner, groups = self._pick(feats)
        x = feats.vector(groups)[None, :]
        out = runner.run([x])
        raw = float(np.asarray(out[0]).reshape(-1)[0])
        half = float(np.asarray(out[1]).reshape(-1)[0]) if len(out) > 1 else 0.5
        bcs, low, high = interval(raw, half, feats.quality)
        return BcsEstimate(bcs, low, high, raw, half, feats.quality, feats.rear, runner.version)

    def estimate(self, colour: np.ndarray | None, depth: np.ndarray | None = None
                 ) -> BcsEstimate:
        """One frame's score; ``NoCow`` when no cow is seen well enough."""
        _, feats = measure(colour, depth, self.rear)
        if feats.quality < self.min_quality:
            raise NoCow(f"the cow's outline is too poor to score (quality "
                        f"{feats.quality:.2f} < {self.min_quality})")
        return self.score_features(feats)


def pool(estimates: list[BcsEstimate]) -> BcsEstimate:
    """One visit's score from its frames: the quality-weighted median of the raw
    scores; the interval is the model's, or the frames' spread when wider."""
    if not estimates:
        raise ValueError("no estimates to pool")
    order = sorted(estimates, key=lambda e: e.raw)
    weights = np.array([max(e.quality, 1e-3) for e in order])
    cum = np.cumsum(weights)
    raw = order[int(np.searchsorted(cum, cum[-1] / 2))].raw
    raws = np.array([e.raw for e in estimates])
    spread = float(np.subtract(*np.percentile(raws, [75, 25]))) if len(raws) >= 4 else 0.0
    half = max(float(np.median([e.half_width for e in estimates])), spread)
    quality = float(np.max([e.quality for e in estimates]))
    bcs, low, high = interval(raw, half, quality)
    best = max(estimates, key=lambda e: e.quality)
    return BcsEstimate(bcs, low, high, raw, half, quality, best.rear, best.model_version)
