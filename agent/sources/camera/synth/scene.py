"""Whole barn frames and single-tag crops, each with its labels.

Label of one tag (a dict, as written to labels.jsonl):

- ``number``: the management number (the big digits) as printed, a string of
  1-6 digits, leading zeros kept;
- ``box``: [x, y, w, h], the axis-aligned box of the visible tag body (the
  plastic, neck included), clipped to the image;
- ``number_box``: [x, y, w, h], the axis-aligned box of the printed number;
- ``legible``: False only when the number clearly cannot be read; ``why``
  lists the reasons (small, covered, blur, contrast, back);
- ``borderline``: the tag is legible but near a limit (``near`` lists which:
  small, covered, blur, contrast); the limits and bands are in ``place``.
  An evaluation leaves borderline tags out of both the read rate and the
  precision: a number reported on one counts neither for nor against;
- ``digit_height_px``: height of the big digits in the final image (after tilt);
- ``covered``: share of the number's ink hidden in the final image by anything
  drawn over it (dirt, hair, bars, rails, glare, other cows and tags, the
  frame edge); ``digit_covered_max``: the same for the most hidden digit;
- ``blur_px``: blur length in px (motion length and Gaussian sigma as an
  equivalent length, hypot(motion, 3.125 sigma)); ``motion_blur_px`` and
  ``gauss_sigma_px`` are the parts;
- ``yaw_deg``, ``pitch_deg``, ``roll_deg``: the tag's pose;
- ``contrast``: |luma body - luma ink| (0..1) after fading and infrared;
- ``ir``, ``jpeg_quality``: the frame's infrared look and JPEG quality
  (repeated from the image label so a tag row stands alone);
- ``style``: how it was drawn (shape, colour, font, italic, prefix, white_ink).

A scene label also lists ``distractors`` (signs and stall numbers with their
text and box): any number a reader reports there is a wrong number.
"""

from __future__ import annotations

import math

import numpy as np

from agent.sources.camera.synth import barn
from agent.sources.camera.synth.params import SynthParams
from agent.sources.camera.synth.place import Blur, PlacedTag, Pose, bar, glare, hair, place_tag
from agent.sources.camera.synth.tag import render_tag, sample_style

Rng = np.random.Generator
Label = dict[str, object]


def _digit_px(rng: Rng, p: SynthParams) -> float:
    if rng.random() < p.tiny_p:
        return float(rng.uniform(6.0, 12.0))
    return float(rng.uniform(*p.digit_height_px))


def _occlude(placed: list[PlacedTag], mask: np.ndarray) -> None:
    for t in placed:
        t.occlude(mask)


def _decorate(rng: Rng, img: np.ndarray, t: PlacedTag, p: SynthParams,
              hair_colour: tuple[int, int, int], placed: list[PlacedTag]) -> None:
    """Things in front of one tag: hair strands, a bar, a highlight. They are
    drawn for ``t`` but may reach any tag already ``placed`` (a bar crosses the
    frame), so every one of those is occluded too; then ``t`` is frozen."""
    if rng.random() < p.hair_p:
        _occlude(placed, hair(rng, img, t, hair_colour))
    if rng.random() < p.bar_p:
        _occlude(placed, bar(rng, img, t))
    if rng.random() < p.glare_p:
        _occlude(placed, glare(rng, img, t))
    t.freeze(img)


def _labels(placed: list[PlacedTag], jpeg_quality: int) -> list[Label]:
    """Tag labels, each with the frame's JPEG quality (``ir`` comes from the tag)."""
    return [{**t.label(), "jpeg_quality": jpeg_quality} for t in placed]


def _finish(rng: Rng, img: np.ndarray, p: SynthParams,
            tags: list[PlacedTag]) -> tuple[np.ndarray, bool, int]:
    ir = bool(rng.random() < p.ir_p)
    if ir:
        img, weights, factor = barn.infrared(rng, img)
        for t in tags:
            t.apply_ir(weights, factor)
    q = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    return barn.camera_look(rng, img, q), ir, q


def render_scene(seed: int, params: SynthParams, size: tuple[int, int] = (1280, 720),
                 ) -> tuple[np.ndarray, Label]:
    """A barn frame with 0-3 cows and 0-4 tags. Deterministic in (seed, params, size)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = barn.background(rng, w, h)
    distractors = [barn.sign(rng, img, int(0.45 * h)) for _ in range(int(rng.integers(0, 3)))]
    placed: list[PlacedTag] = []
    n_cows = int(rng.choice(4, p=[0.1, 0.35, 0.35, 0.2]))
    for i in (int(v) for v in rng.permutation(n_cows)):  # back to front: later cows hide earlier ones
        if len(placed) >= 4:
            break
        digit_px = _digit_px(rng, params)
        style = sample_style(rng, params)
        head_w = digit_px * rng.uniform(5.0, 8.0)  # a tag is about a third of a head wide
        cx = (i + 0.5) / n_cows * w + rng.uniform(-0.15, 0.15) * w / max(n_cows, 1)
        top = rng.uniform(0.05, 0.6) * h
        cow = barn.draw_cow_front(rng, img, cx, top, head_w)
        for t in placed:
            t.occlude(cow.mask)
        sides = [0, 1] if rng.random() < 0.5 else [int(rng.integers(2))]
        if rng.random() < 0.1:
            sides = []  # head turned away: no tag seen
        pose = Pose.sample(rng, params)
        back = bool(rng.random() < params.back_p)
        for side in sides[: 4 - len(placed)]:
            art = render_tag(rng, style, params, back=back)
            ax, ay = cow.ears[side]
            s = digit_px / art.number_box[3]
            tag_h = art.bgr.shape[0] * s
            yaw = pose.yaw + (20 if side else -20) * rng.uniform(0, 1)
            tp = Pose(yaw=float(np.clip(yaw, -60, 60)), pitch=pose.pitch,
                      roll=pose.roll + rng.uniform(-8, 8), distance=pose.distance)
            roll = math.radians(tp.roll)
            centre = (ax - math.sin(roll) * tag_h / 2, ay + math.cos(roll) * tag_h / 2)
            t = place_tag(img, art, digit_px, tp, centre, Blur.sample(rng, params), back=back)
            for earlier in placed:  # the other ear's tag, a cow further back
                earlier.occlude_by(t)
            placed.append(t)
            _decorate(rng, img, t, params, cow.coat.hair, placed)
    if rng.random() < 0.3:  # a rail between the camera and the cows
        _occlude(placed, barn.stall_bar(rng, img, int(rng.uniform(0.2, 0.9) * h),
                                        horizontal=True, width=int(rng.uniform(0.01, 0.04) * h)))
    for t in placed:  # whatever was drawn over a number since, by any code path
        t.settle(img)
    img, ir, q = _finish(rng, img, params, placed)
    label: Label = {"seed": seed, "split": params.name, "width": w, "height": h, "ir": ir,
                    "jpeg_quality": q, "tags": _labels(placed, q),
                    "distractors": distractors}
    return img, label


def render_crop(seed: int, params: SynthParams) -> tuple[np.ndarray, Label]:
    """One tag with some ear, coat or barn around it. Deterministic in (seed, params)."""
    rng = np.random.default_rng(seed)
    digit_px = _digit_px(rng, params)
    style = sample_style(rng, params)
    back = bool(rng.random() < params.back_p)
    art = render_tag(rng, style, params, back=back)
    s = digit_px / art.number_box[3]
    th, tw = art.bgr.shape[0] * s, art.bgr.shape[1] * s
    margin = rng.uniform(1.15, 2.2)
    cw, ch = int(max(tw, th) * margin) + 8, int(max(tw, th) * margin) + 8
    coat = barn.sample_coat(rng)
    if rng.random() < 0.6:  # the ear and head behind the tag
        img = np.empty((ch, cw, 3), np.uint8)
        img[:] = coat.base
        mask = np.full((ch, cw), 255, np.uint8)
        barn.paint_coat(rng, img, mask, coat, (0, 0, cw, ch))
    else:
        img = barn.background(rng, cw, ch)
    centre = (cw / 2 + rng.uniform(-0.1, 0.1) * cw, ch / 2 + rng.uniform(-0.1, 0.1) * ch)
    t = place_tag(img, art, digit_px, Pose.sample(rng, params), centre, Blur.sample(rng, params),
                  back=back)
    _decorate(rng, img, t, params, coat.hair, [t])
    t.settle(img)
    img, ir, q = _finish(rng, img, params, [t])
    label: Label = {"seed": seed, "split": params.name, "width": cw, "height": ch, "ir": ir,
                    "jpeg_quality": q, "tags": _labels([t], q), "distractors": []}
    return img, label


__all__ = ["render_crop", "render_scene"]
