"""Parameter ranges of the synthetic ear-tag generator, and the seed rules.

Three named sets:

- ``TRAIN``: what any training, tuning or threshold-picking run may see.
- ``DEV``: the same ranges as ``TRAIN`` (a held-in check); dev runs use their own
  seed block so dev images are never training images.
- ``HELDOUT``: evaluation only. It adds variations no training or dev run sees:
  two tag colours (purple, lime), a tag shape (shield), a font (Hershey TRIPLEX),
  italic print, stronger perspective (yaw up to 50 degrees, roll up to 35) and
  three times as many infrared night frames.

Seeds: every image is rendered from its own integer seed (the label keeps it).
Held-out images use seeds >= ``EVAL_SEED_MIN`` (900000); train and dev images
must stay below it. :func:`check_seed` enforces this, so a training script
cannot draw an evaluation image by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Split = Literal["train", "dev", "heldout"]

EVAL_SEED_MIN = 900_000
DEFAULT_SEEDS: dict[str, int] = {"train": 0, "dev": 500_000, "heldout": EVAL_SEED_MIN}

# Tag body colours (BGR). The weights follow what barns use: yellow dominates.
COLOURS: dict[str, tuple[int, int, int]] = {
    "yellow": (20, 205, 245),
    "orange": (20, 120, 245),
    "white": (235, 238, 236),
    "salmon": (140, 150, 245),
    "blue": (200, 110, 30),
    "green": (60, 150, 40),
    "red": (40, 40, 200),
    "purple": (140, 50, 110),
    "lime": (60, 230, 170),
}
# Font names: Hershey fonts from OpenCV, plus "marker" (hand-written: a Hershey
# font drawn digit by digit with jittered placement and a wobbly stroke).
FONTS = ("simplex", "duplex", "complex", "plain", "triplex", "marker")
SHAPES = ("panel", "tombstone", "button", "shield")


@dataclass(frozen=True)
class SynthParams:
    """Ranges the renderer samples from. Ranges are (low, high), inclusive."""

    name: str
    colours: dict[str, float] = field(default_factory=dict)  # name -> weight
    shapes: dict[str, float] = field(default_factory=dict)
    fonts: dict[str, float] = field(default_factory=dict)
    digits: tuple[int, int] = (1, 6)  # management number length
    two_line_p: float = 0.45  # share of tags with a small herd/official-id line on top
    italic_p: float = 0.0
    digit_height_px: tuple[float, float] = (20.0, 60.0)  # big digits, final image, before tilt
    stroke_ratio: tuple[float, float] = (0.08, 0.2)  # stroke thickness / digit height
    yaw_deg: tuple[float, float] = (-45.0, 45.0)  # out-of-plane, about the vertical axis
    pitch_deg: tuple[float, float] = (-30.0, 30.0)  # out-of-plane, about the horizontal axis
    roll_deg: tuple[float, float] = (-30.0, 30.0)  # in-plane
    motion_blur_px: tuple[float, float] = (0.0, 9.0)  # kernel length, final image
    motion_blur_p: float = 0.35
    gauss_sigma_px: tuple[float, float] = (0.0, 2.5)
    gauss_blur_p: float = 0.35
    jpeg_quality: tuple[int, int] = (20, 95)
    ir_p: float = 0.12  # infrared night look (grey, low contrast, bloom)
    dirt_p: float = 0.4
    fade: tuple[float, float] = (0.0, 0.6)  # 0 new, 1 fully bleached
    fade_p: float = 0.35
    hair_p: float = 0.35  # ear hair strands across the tag
    bar_p: float = 0.2  # a pen bar or gate rail in front of the tag
    glare_p: float = 0.25  # specular highlight
    back_p: float = 0.0  # tag turned away (blank back); scenes and the video only
    tiny_p: float = 0.05  # share of far tags drawn below the asked height (illegible by size)

    def with_(self, **changes: object) -> SynthParams:
        """A copy with some fields changed (for tests and one-off sets)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_TRAIN_COLOURS = {"yellow": 5.0, "orange": 1.2, "white": 1.0, "salmon": 0.8,
                  "blue": 0.8, "green": 0.7, "red": 0.6}
_TRAIN_SHAPES = {"panel": 3.0, "tombstone": 2.0, "button": 1.0}
_TRAIN_FONTS = {"simplex": 3.0, "duplex": 2.0, "complex": 1.0, "plain": 0.7, "marker": 0.8}

TRAIN = SynthParams(name="train", colours=_TRAIN_COLOURS, shapes=_TRAIN_SHAPES,
                    fonts=_TRAIN_FONTS)
DEV = TRAIN.with_(name="dev")
HELDOUT = TRAIN.with_(
    name="heldout",
    colours={**_TRAIN_COLOURS, "purple": 0.8, "lime": 0.6},
    shapes={**_TRAIN_SHAPES, "shield": 1.0},
    fonts={**_TRAIN_FONTS, "triplex": 1.2},
    italic_p=0.15,
    yaw_deg=(-50.0, 50.0),
    roll_deg=(-35.0, 35.0),
    ir_p=0.35,
)
SPLITS: dict[str, SynthParams] = {"train": TRAIN, "dev": DEV, "heldout": HELDOUT}


def check_seed(split: str, first: int, count: int = 1) -> None:
    """Refuse a seed block that crosses the evaluation boundary.

    Held-out images live at seeds >= EVAL_SEED_MIN, everything else below it.
    """
    last = first + count - 1
    if first < 0:
        raise ValueError(f"seed must be >= 0, got {first}")
    if split == "heldout" and first < EVAL_SEED_MIN:
        raise ValueError(
            f"held-out seeds start at {EVAL_SEED_MIN}; got {first}. Use --seed {EVAL_SEED_MIN} "
            "or higher so evaluation never reuses a training or dev image.")
    if split != "heldout" and last >= EVAL_SEED_MIN:
        raise ValueError(
            f"{split} seeds must stay below {EVAL_SEED_MIN} (reserved for evaluation); "
            f"seeds {first}..{last} cross it. Pick a lower --seed or a smaller count.")
