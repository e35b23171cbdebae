"""The walk-through lane seen from the side: background, cow sprites, a front rail.

Everything costly is drawn once: the lane when the source opens, each cow's
two sprites (tag facing the camera, tag turned away) when she is next in
line. A frame is then a copy of the lane, one sprite pasted at her position,
the front rail on top, and a little sensor grain.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agent.sources.camera.synth import barn
from agent.sources.camera.synth.params import DEV
from agent.sources.camera.synth.place import Blur, Pose, hair, place_tag
from agent.sources.camera.synth.tag import render_tag, sample_style

Rng = np.random.Generator

# Lane tags: the dev look, a little kinder (the camera is placed for reading
# tags), no bars (the lane's own rail does that) and no infrared.
LANE = DEV.with_(name="lane", yaw_deg=(-30.0, 30.0), pitch_deg=(-20.0, 20.0),
                 roll_deg=(-20.0, 20.0), dirt_p=0.2, fade_p=0.2, bar_p=0.0, glare_p=0.1,
                 ir_p=0.0, back_p=0.0, tiny_p=0.0)


@dataclass
class Sprite:
    """A cow drawn on her own canvas: colour, opaque mask, tag box and readability."""

    image: np.ndarray
    mask: np.ndarray  # uint8 0/1, H x W (cv2.copyTo is ~50x faster than np.copyto where=)
    tag_box: tuple[int, int, int, int]  # in sprite coordinates
    readable: bool  # legible and not borderline


@dataclass
class Lane:
    background: np.ndarray
    rail_rows: tuple[int, int]  # the front rail covers these rows
    rail: np.ndarray  # the rail band (rows rail_rows), BGR
    rail_mask: np.ndarray  # uint8 band mask
    grain: list[np.ndarray]  # uint8 noise frames, cycled


def build_lane(rng: Rng, w: int, h: int) -> Lane:
    bg = barn.background(rng, w, h)
    front = bg.copy()
    y = int(0.78 * h)
    m = barn.stall_bar(rng, front, y, horizontal=True, width=max(6, int(0.03 * h)))
    rows = np.flatnonzero(m.any(axis=1))
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    grains = [np.clip(rng.normal(0, 1.2, (h, w, 1)), 0, 4).astype(np.uint8).repeat(3, axis=2)
              for _ in range(3)]
    return Lane(bg, (r0, r1), front[r0:r1].copy(), (m[r0:r1] > 0).astype(np.uint8), grains)


def cow_sprites(rng: Rng, number: str, frame_h: int) -> tuple[Sprite, Sprite]:
    """One cow walking right, her tag facing the camera and turned away."""
    length = 0.75 * frame_h
    sw, sh = int(1.45 * length), int(0.95 * length)
    coat = barn.sample_coat(rng)
    mask = np.zeros((sh, sw), np.uint8)
    L = length
    cv2.ellipse(mask, (int(0.5 * L), int(0.42 * L)), (int(0.42 * L), int(0.2 * L)), 0, 0, 360,
                255, -1)
    for lx in (0.2, 0.3, 0.68, 0.78):
        dx = rng.uniform(-0.03, 0.03) * L
        cv2.rectangle(mask, (int((lx + dx / L) * L), int(0.5 * L)),
                      (int((lx + 0.07) * L + dx), int(0.88 * L)), 255, -1)
    neck = np.array([[0.82 * L, 0.28 * L], [1.08 * L, 0.27 * L], [1.12 * L, 0.45 * L],
                     [0.86 * L, 0.58 * L]], np.int32)
    cv2.fillPoly(mask, [neck], 255)
    cv2.ellipse(mask, (int(1.2 * L), int(0.38 * L)), (int(0.17 * L), int(0.085 * L)), 35, 0, 360,
                255, -1)
    cv2.ellipse(mask, (int(1.06 * L), int(0.27 * L)), (int(0.09 * L), int(0.035 * L)), -15, 0,
                360, 255, -1)
    img = np.zeros((sh, sw, 3), np.uint8)
    barn.paint_coat(rng, img, mask, coat, (0, 0, sw, sh))
    cv2.circle(img, (int(1.17 * L), int(0.33 * L)), max(2, int(0.012 * L)), (15, 15, 20), -1)
    style = sample_style(rng, LANE, number=number)
    digit_px = float(rng.uniform(0.055, 0.085) * L)
    pose = Pose.sample(rng, LANE)
    sprites = []
    for back in (False, True):
        canvas, alpha = img.copy(), mask.astype(np.float32) / 255.0
        art = render_tag(np.random.default_rng(rng.integers(2**32)), style, LANE, back=back)
        s = digit_px / art.number_box[3]
        centre = (1.06 * L, 0.3 * L + art.bgr.shape[0] * s / 2)
        t = place_tag(canvas, art, digit_px, pose, centre, Blur(), back=back, alpha_out=alpha)
        if rng.random() < LANE.hair_p:
            t.occlude(hair(rng, canvas, t, coat.hair))
        label = t.label()
        bx, by, bw, bh = t.box
        # a reader is expected to read only clear tags; borderline ones may go either way
        sprites.append(Sprite(canvas, (alpha > 0.5).astype(np.uint8), (bx, by, bw, bh),
                              bool(label["legible"]) and not label["borderline"]))
    return sprites[0], sprites[1]


def compose(lane: Lane, sprite: Sprite | None, x: int, y: int, k: int) -> np.ndarray:
    """One frame: the lane, the sprite at (x, y) (may reach outside), the rail, grain."""
    frame = lane.background.copy()
    h, w = frame.shape[:2]
    if sprite is not None:
        sh, sw = sprite.image.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + sw), min(h, y + sh)
        if x1 > x0 and y1 > y0:
            src = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
            cv2.copyTo(sprite.image[src], sprite.mask[src], frame[y0:y1, x0:x1])
    r0, r1 = lane.rail_rows
    cv2.copyTo(lane.rail, lane.rail_mask, frame[r0:r1])
    cv2.add(frame, lane.grain[k % len(lane.grain)], dst=frame)
    return frame
