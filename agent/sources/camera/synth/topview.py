"""Synthetic top-view cows for body condition scoring: depth and colour frames.

A camera above a walk-through or exit lane looks straight down on a cow's back.
The cow is a 3D height field (``topview_body``): a skeleton (barrel, rump,
hooks, pins, tailhead, spine, short ribs, ribs, the hollows between them)
covered by fat whose thickness and smoothing grow with BCS, so a thin cow shows
protruding hooks and pins, a V notch between them, a concave flank, a spine
ridge and deep hollows by the tailhead, and a fat cow a flat, rounded back with
a convex outline. One field gives both frames: the depth frame is the distance
along the camera axis (uint16 mm, floor at camera height, 0 = no data), the
colour frame shades the same field (Lambert + ambient, cast and self shadows).

    body = sample_body(rng)                       # the animal (frame, coat)
    look = sample_look(rng, "train")              # one pass under the camera
    sample = render(body, 3.25, look)             # colour, depth, mask, truth

Render pipeline: perspective rays from a pinhole camera (focal length from the
field of view) are marched through the height field (coarse at a quarter of
the size, then refined per pixel), the hit points are shaded with the coat
albedo and the normals of the field, the floor is drawn in the image plane
with the cow's cast shadow, then stall bars and rails at their own heights
(they occlude the cow and cast shadows), then the camera: white balance
residue, exposure and clipping, vignette, blur (focus and motion along the
lane), sensor noise, JPEG. Depth gets noise growing with distance squared,
flying pixels at the outline, and holes (edges, dark or shiny coat, random).

Splits: ``train`` and ``heldout`` draw from different parameter sets;
``heldout`` adds choices and ranges that ``train`` never draws, so a model
trained on ``train`` and evaluated on ``heldout`` measures generalisation:

- coats ``red_white`` and ``grey`` (Brown Swiss-like);
- floors ``slatted`` and ``straw``;
- light: colour temperatures 2300-3000 K and 7000-9000 K (train 3000-7000 K),
  sun elevation 20-35 degrees (train 35-90);
- camera heights 3.45-3.9 m (train 2.7-3.45 m) and a wider view: 2.5-2.8 m
  across the frame at the height of the back (train 1.9-2.5 m; the lens's field
  of view follows from height and span);
- cow heading 18-32 degrees off the lane axis (train within 18);
- JPEG quality 20-40 (train 45-95).

Held-out looks draw the held-back choice about half the time for each item and
the train choices otherwise. Train and held-out herds also use different random
streams for the same seed (the split is mixed into the seed).

What it does not model is in docs/bcs-generator.md (no real hair, no legs or
udder, no walking motion, a straight-down camera, Lambertian skin).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.sources.camera.synth import topview_paint as paint
from agent.sources.camera.synth.topview_body import BodyField, CowBody, build

Rng = np.random.Generator

__all__ = ["BCS_STEPS", "HERD_BCS_WEIGHTS", "LOOK_SPLITS", "CowBody", "TopViewLook",
           "TopViewSample", "draw_herd_bcs", "make_herd_photos", "render", "sample_body",
           "sample_look"]

BCS_STEPS = tuple(1.0 + 0.25 * i for i in range(17))  # 1.0 .. 5.0
# A herd: most cows 2.5-3.75, tails to 1.5 and 4.5 (weights per BCS 1.5 .. 4.5).
HERD_BCS_WEIGHTS: dict[float, float] = {
    1.5: 0.5, 1.75: 1.0, 2.0: 2.0, 2.25: 4.0, 2.5: 8.0, 2.75: 12.0, 3.0: 15.0, 3.25: 15.0,
    3.5: 12.0, 3.75: 9.0, 4.0: 5.0, 4.25: 2.0, 4.5: 1.0,
}

TRAIN_COATS = {"holstein": 6.0, "black": 1.2, "red": 1.0, "jersey": 1.2}
HELDOUT_COATS = {"red_white": 1.0, "grey": 1.0}
TRAIN_FLOORS = {"concrete": 1.0, "grooved": 1.5, "rubber": 1.2}
HELDOUT_FLOORS = {"slatted": 1.0, "straw": 1.0}


@dataclass(frozen=True)
class LookRanges:
    """What one split draws from. Ranges are (low, high)."""

    name: str
    floors: dict[str, float]
    coats: dict[str, float]
    kelvin: tuple[tuple[float, float], ...]  # one of these bands
    sun_elevation_deg: tuple[float, float]
    camera_height_m: tuple[float, float]
    back_span_m: tuple[float, float]  # frame width at the height of a cow's back
    heading_off_deg: tuple[float, float]  # |angle| of the cow to the lane axis
    jpeg_quality: tuple[int, int]
    held_back_p: float = 0.0  # chance of each held-back item (heldout only)
    held: dict[str, Any] = field(default_factory=dict)  # held-back alternatives


TRAIN_RANGES = LookRanges(
    name="train", floors=TRAIN_FLOORS, coats=TRAIN_COATS, kelvin=((3000.0, 7000.0),),
    sun_elevation_deg=(35.0, 90.0), camera_height_m=(2.7, 3.45), back_span_m=(1.9, 2.5),
    heading_off_deg=(0.0, 18.0), jpeg_quality=(45, 95))
HELDOUT_RANGES = LookRanges(
    name="heldout", floors=HELDOUT_FLOORS, coats=HELDOUT_COATS,
    kelvin=((2300.0, 3000.0), (7000.0, 9000.0)), sun_elevation_deg=(20.0, 35.0),
    camera_height_m=(3.45, 3.9), back_span_m=(2.5, 2.8), heading_off_deg=(18.0, 32.0),
    jpeg_quality=(20, 40), held_back_p=0.5)
LOOK_SPLITS = {"train": TRAIN_RANGES, "heldout": HELDOUT_RANGES}


@dataclass(frozen=True)
class Bar:
    """A steel tube: a rail along the lane or a bar across it, in world metres
    (camera axis at x = y = 0), at ``height`` above the floor."""

    x0: float
    y0: float
    x1: float
    y1: float
    height: float
    radius: float


@dataclass(frozen=True)
class TopViewLook:
    """Every random choice of one pass under the camera (the cow is separate)."""

    name: str
    split: str
    seed: int  # textures, dirt and noise of this pass
    # camera
    camera_height: float  # metres, lens above the floor
    fov_deg: float  # horizontal field of view
    principal_dx: float  # principal point offset, share of the width
    principal_dy: float
    # pose of the cow
    heading_deg: float  # 0: head towards +x (image right), 180: towards the left
    offset_x: float  # back centre from the camera axis, metres along image x
    offset_y: float
    bend: float  # spine curvature, 1/m
    head_yaw_deg: float
    tail_sway: float  # metres
    # light
    kelvin: float
    sun_elevation_deg: float
    sun_azimuth_deg: float
    sun: float  # direct light strength
    ambient: float
    shadow_blur_px: float  # 0 hard, larger soft
    exposure: float  # > 1 clips bright coats
    wb_residue: float  # 0 perfect white balance, 1 none
    vignette: float
    # surroundings
    floor: str
    floor_tone: float  # -1..1
    bars: tuple[Bar, ...]
    dirt: float  # 0..1 muck on the cow
    # camera defects
    noise_sigma: float  # 8-bit units at mid grey
    blur_sigma: float
    motion_px: float
    jpeg_quality: int
    # depth camera
    depth_noise_mm_m2: float  # sigma = a + b * z^2
    depth_noise_mm: float
    depth_holes: float  # 0..1 how many random holes
    depth_edge_px: int  # invalid band at depth edges


@dataclass
class TopViewSample:
    colour: np.ndarray  # HxWx3 uint8 BGR
    depth: np.ndarray  # HxW uint16 mm, 0 = no data
    mask: np.ndarray  # HxW bool, the cow's visible body
    bcs: float
    truth: dict[str, Any]


def _pick(rng: Rng, weights: dict[str, float]) -> str:
    names = list(weights)
    w = np.array([weights[n] for n in names], float)
    return str(names[int(rng.choice(len(names), p=w / w.sum()))])


def _split(split: str) -> LookRanges:
    if split not in LOOK_SPLITS:
        raise ValueError(f"split must be one of {sorted(LOOK_SPLITS)}, got {split!r}")
    return LOOK_SPLITS[split]


def sample_body(rng: Rng, split: str = "train") -> CowBody:
    """A random cow: frame size and proportions (independent of BCS), coat.

    ``split`` picks the coats (``heldout`` adds coats training never sees)."""
    r = _split(split)
    coats = dict(TRAIN_COATS)
    if split == "heldout":
        coats = {**{k: v * (1 - r.held_back_p) / sum(TRAIN_COATS.values())
                    for k, v in TRAIN_COATS.items()},
                 **{k: v * r.held_back_p / sum(HELDOUT_COATS.values())
                    for k, v in HELDOUT_COATS.items()}}
    coat = _pick(rng, coats)
    size = float(rng.uniform(0.86, 0.95)) if coat == "jersey" else float(rng.uniform(0.93, 1.07))
    return CowBody(
        length=1.6 * size * float(rng.uniform(0.96, 1.04)),
        rump_ratio=float(rng.uniform(0.30, 0.36)),
        barrel_half=0.345 * size * float(rng.uniform(0.88, 1.12)),
        hook_ratio=float(rng.uniform(0.82, 0.98)),
        pin_ratio=float(rng.uniform(0.42, 0.56)),
        back_height=1.45 * size * float(rng.uniform(0.97, 1.03)),
        depth_to_outline=float(rng.uniform(0.29, 0.37)),
        asymmetry=float(rng.uniform(-0.04, 0.04)),
        rumen_fill=float(rng.uniform(0.0, 1.0)),
        neck_length=float(rng.uniform(0.40, 0.50)) * size,
        head_length=float(rng.uniform(0.46, 0.54)) * size,
        coat=coat,
        coat_seed=int(rng.integers(0, 2**31 - 1)),
        patch_share=float(rng.uniform(0.2, 0.8)),
        tint=float(rng.uniform(-1.0, 1.0)),
    )


def _range(rng: Rng, train: tuple[float, float], held: tuple[float, float] | None,
           p: float) -> float:
    if held is not None and rng.random() < p:
        return float(rng.uniform(*held))
    return float(rng.uniform(*train))


def sample_look(rng: Rng, split: str = "train") -> TopViewLook:
    """A random pass under the camera: camera, light, floor, pose, bars, noise."""
    r = _split(split)
    t = TRAIN_RANGES
    held = split == "heldout"
    p = r.held_back_p if held else 0.0
    h = HELDOUT_RANGES if held else None

    floor = _pick(rng, HELDOUT_FLOORS) if held and rng.random() < p else _pick(rng, TRAIN_FLOORS)
    if h is not None and rng.random() < p:
        band = h.kelvin[int(rng.integers(0, len(h.kelvin)))]
        kelvin = float(rng.uniform(*band))
    else:
        kelvin = float(rng.uniform(*t.kelvin[0]))
    elev = _range(rng, t.sun_elevation_deg, h.sun_elevation_deg if h else None, p)
    cam_h = _range(rng, t.camera_height_m, h.camera_height_m if h else None, p)
    span = _range(rng, t.back_span_m, h.back_span_m if h else None, p)
    fov = math.degrees(2.0 * math.atan(0.5 * span / (cam_h - 1.45)))
    off = _range(rng, t.heading_off_deg, h.heading_off_deg if h else None, p)
    jpeg = round(_range(rng, t.jpeg_quality, h.jpeg_quality if h else None, p))
    heading = (0.0 if rng.random() < 0.5 else 180.0) + off * (1 if rng.random() < 0.5 else -1)

    indoor = rng.random() < 0.45  # artificial light: soft, from above
    if indoor:
        elev = float(rng.uniform(60.0, 90.0)) if not held else elev
        sun, ambient = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.35, 0.6))
        shadow_blur = float(rng.uniform(6.0, 25.0))
    else:
        sun, ambient = float(rng.uniform(0.6, 1.2)), float(rng.uniform(0.12, 0.35))
        shadow_blur = float(rng.uniform(0.0, 4.0))
    exposure = float(rng.uniform(0.75, 1.25)) if rng.random() > 0.15 else float(
        rng.uniform(1.3, 1.8))

    # the lane runs at the camera's angle to it (``off``); the cow walks along it,
    # a few degrees askew at most, forward or back so the head (or rarely the tail
    # end) may leave the frame; rails run along the lane, bars cross it above her
    lane_deg = heading
    la = math.radians(lane_deg)
    ca, sa = math.cos(la), math.sin(la)

    def world(along: float, across: float) -> tuple[float, float]:
        return (ca * along - sa * across, sa * along + ca * across)

    lane_half = float(rng.uniform(0.42, 0.55))
    lane_dy = float(rng.uniform(-0.15, 0.15))  # lane centre off the camera axis
    bars: list[Bar] = []
    if rng.random() < 0.85:  # side rails
        heights = (1.05,) if rng.random() < 0.5 else (0.75, 1.15)
        for side in (-1.0, 1.0):
            for hr in heights:
                y = lane_dy + side * lane_half
                x0, y0 = world(-5.0, y)
                x1, y1 = world(5.0, y)
                bars.append(Bar(x0, y0, x1, y1, hr + float(rng.uniform(-0.08, 0.08)),
                                float(rng.uniform(0.02, 0.035))))
    for _ in range(int(rng.choice(3, p=[0.45, 0.4, 0.15]))):  # bars across, above the cow
        x = float(rng.uniform(-1.1, 1.1))
        da = math.radians(float(rng.uniform(-20.0, 20.0)))
        x0, y0 = world(x - 2 * math.sin(da), -2 * math.cos(da))
        x1, y1 = world(x + 2 * math.sin(da), 2 * math.cos(da))
        bars.append(Bar(x0, y0, x1, y1, float(rng.uniform(1.65, 2.3)),
                        float(rng.uniform(0.02, 0.04))))
    yaw = float(rng.uniform(-5.0, 5.0))
    along = float(rng.uniform(-0.25, 0.3))
    across = lane_dy + float(rng.uniform(-0.07, 0.07))
    # mid-back position in the frame; heading 180 puts the head on the left, so
    # "along" is measured in the cow's direction
    ox, oy = world(along, across)
    heading = lane_deg + yaw

    seed = int(rng.integers(0, 2**31 - 1))
    name = (f"{split}/{floor}/{'indoor' if indoor else 'sun'}/{int(kelvin)}K/"
            f"h{cam_h:.2f}/span{span:.2f}/rot{off:.0f}/{seed}")
    return TopViewLook(
        name=name, split=split, seed=seed,
        camera_height=cam_h, fov_deg=fov,
        principal_dx=float(rng.uniform(-0.03, 0.03)),
        principal_dy=float(rng.uniform(-0.03, 0.03)),
        heading_deg=heading,
        offset_x=ox,
        offset_y=oy,
        bend=float(rng.uniform(-0.25, 0.25)),
        head_yaw_deg=float(rng.uniform(-35.0, 35.0)),
        tail_sway=float(rng.uniform(-0.06, 0.06)),
        kelvin=kelvin, sun_elevation_deg=elev,
        sun_azimuth_deg=float(rng.uniform(0.0, 360.0)),
        sun=sun, ambient=ambient, shadow_blur_px=shadow_blur, exposure=exposure,
        wb_residue=float(rng.uniform(0.0, 0.5)), vignette=float(rng.uniform(0.0, 0.35)),
        floor=floor, floor_tone=float(rng.uniform(-1.0, 1.0)), bars=tuple(bars),
        dirt=float(rng.uniform(0.0, 1.0)) if rng.random() < 0.6 else 0.0,
        noise_sigma=float(rng.uniform(1.0, 6.0)),
        blur_sigma=float(rng.uniform(0.0, 1.4)),
        motion_px=float(rng.uniform(0.0, 6.0)) if rng.random() < 0.4 else 0.0,
        jpeg_quality=jpeg,
        depth_noise_mm_m2=float(rng.uniform(1.0, 6.0)),
        depth_noise_mm=float(rng.uniform(0.5, 2.0)),
        depth_holes=float(rng.uniform(0.0, 1.0)),
        depth_edge_px=int(rng.integers(0, 6)),
    )


# --- rendering ---------------------------------------------------------------------


@dataclass
class _Camera:
    f: float
    cx: float
    cy: float
    h: float  # height above floor


def _cow_maps(cam: _Camera, look: TopViewLook, fld: BodyField, mid: float,
              xs: np.ndarray, ys: np.ndarray
              ) -> tuple[np.ndarray, np.float32, np.ndarray, np.float32]:
    """Per-pixel coefficients: grid row = Z * ai + bi, grid column = Z * aj + bj.

    World: X = Z (u - cx) / f, Y = Z (v - cy) / f. The cow: s - mid = cos th dX +
    sin th dY, t = sin th dX - cos th dY (her left is image-up when she faces right)."""
    th = math.radians(look.heading_deg)
    c, s = math.cos(th), math.sin(th)
    xu = (xs - cam.cx) / cam.f
    yv = (ys - cam.cy) / cam.f
    ai = (c * xu + s * yv) / fld.cell
    bi = (mid - fld.s0 - c * look.offset_x - s * look.offset_y) / fld.cell
    aj = (s * xu - c * yv) / fld.cell
    bj = (-fld.t0 - s * look.offset_x + c * look.offset_y) / fld.cell
    return ai.astype(np.float32), np.float32(bi), aj.astype(np.float32), np.float32(bj)


def _lookup(src: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return cv2.remap(src, j, i, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def _march(cam: _Camera, look: TopViewLook, fld: BodyField, mid: float, w: int, h: int
           ) -> np.ndarray:
    """Distance along the camera axis (metres) of the first surface on each ray:
    cow or floor. Coarse march at a quarter of the size, then per-pixel refinement."""
    q = 2 if w * h >= 40_000 else 1
    cw, ch = (w + q - 1) // q, (h + q - 1) // q
    xs = (np.arange(cw, dtype=np.float32) * q + (q - 1) / 2)[None, :].repeat(ch, 0)
    ys = (np.arange(ch, dtype=np.float32) * q + (q - 1) / 2)[:, None].repeat(cw, 1)
    ai, bi, aj, bj = _cow_maps(cam, look, fld, mid, xs, ys)
    z_near = cam.h - fld.h_max - 0.005
    z_far = cam.h - fld.h_min + 0.02
    zc: np.ndarray = np.full((ch, cw), cam.h, np.float32)
    found = np.zeros((ch, cw), bool)
    for zk in np.linspace(z_near, z_far, 16, dtype=np.float32):
        hz = _lookup(fld.height, ai * zk + bi, aj * zk + bj)
        hit = (~found) & (hz >= cam.h - zk) & (hz > 0)
        zc[hit] = zk
        found |= hit
    zc = cv2.erode(zc, np.ones((3, 3), np.uint8))  # start near at the outline
    z: np.ndarray = cv2.resize(zc, (cw * q, ch * q), interpolation=cv2.INTER_LINEAR)[:h, :w]
    z = np.minimum(z, cam.h)
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    ys = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    ai, bi, aj, bj = _cow_maps(cam, look, fld, mid, xs, ys)
    z = np.maximum(z - 0.03, z_near)
    for _ in range(4):
        hz = _lookup(fld.height, ai * z + bi, aj * z + bj)
        z = np.where(hz > 0, cam.h - hz, cam.h).astype(np.float32)
    return z


def _project(cam: _Camera, look: TopViewLook, mid: float, s: float, t: float, hgt: float
             ) -> tuple[float, float]:
    th = math.radians(look.heading_deg)
    c, si = math.cos(th), math.sin(th)
    x = look.offset_x + c * (s - mid) + si * t
    y = look.offset_y + si * (s - mid) - c * t
    z = cam.h - hgt
    return (cam.cx + cam.f * x / z, cam.cy + cam.f * y / z)


def render(body: CowBody, bcs: float, look: TopViewLook, *, width: int = 720,
           height: int = 600, rng: Rng | None = None) -> TopViewSample:
    """Draw one top-view frame of ``body`` at score ``bcs`` under ``look``.

    Deterministic for (body, bcs, look) when ``rng`` is None (the look's seed is
    used); pass an ``rng`` to vary only the textures and noise. The scene is shaded
    at half the frame size (the body and coat grid is 1 cm, about 1.5 px there),
    then scaled up; the outline, sensor noise, JPEG and depth noise are full size."""
    if not 1.0 <= bcs <= 5.0:
        raise ValueError(f"bcs must be within 1..5, got {bcs}")
    rng = rng if rng is not None else np.random.default_rng(look.seed)
    W, H = int(width), int(height)
    q = 2 if W * H >= 160_000 else 1  # internal scale
    w, h = (W + q - 1) // q, (H + q - 1) // q
    fld = build(body, bcs, bend=look.bend, head_yaw=math.radians(look.head_yaw_deg),
                tail_sway=look.tail_sway)
    mid = 0.5 * body.length
    f_full = 0.5 * W / math.tan(math.radians(look.fov_deg) / 2)
    cxf, cyf = W / 2 + look.principal_dx * W, H / 2 + look.principal_dy * H
    cam = _Camera(f_full / q, (cxf + 0.5) / q - 0.5, (cyf + 0.5) / q - 0.5, look.camera_height)
    full = _Camera(f_full, cxf, cyf, look.camera_height)

    z = _march(cam, look, fld, mid, w, h)
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    ys = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    ai, bi, aj, bj = _cow_maps(cam, look, fld, mid, xs, ys)
    gi, gj = ai * z + bi, aj * z + bj  # grid position of each pixel's hit point
    cow = z < cam.h - 1e-4

    # light, in world and in the cow's frame
    el, az = math.radians(look.sun_elevation_deg), math.radians(look.sun_azimuth_deg)
    lx, ly, lz = math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)
    th = math.radians(look.heading_deg)
    ls = math.cos(th) * lx + math.sin(th) * ly
    lt = math.sin(th) * lx - math.cos(th) * ly

    # shading of the cow: normals and self shadow on the grid, looked up per pixel
    hf = fld.height
    dh_ds, dh_dt = np.gradient(hf, fld.cell)
    lam = (lz - dh_ds * ls - dh_dt * lt) / np.sqrt(1.0 + dh_ds ** 2 + dh_dt ** 2)
    lam = np.clip(lam, 0.0, 1.0).astype(np.float32)
    hor = math.hypot(ls, lt)
    lit = np.ones_like(hf)
    if hor > 1e-3:
        tan_el = lz / hor
        gi0 = np.arange(hf.shape[0], dtype=np.float32)[:, None].repeat(hf.shape[1], 1)
        gj0 = np.arange(hf.shape[1], dtype=np.float32)[None, :].repeat(hf.shape[0], 0)
        for step in range(1, 14):
            d = step * 0.025
            hk = _lookup(hf, gi0 + (d * ls / hor) / fld.cell, gj0 + (d * lt / hor) / fld.cell)
            lit = np.minimum(lit, np.clip((hf + d * tan_el - hk) / 0.01 + 1.0, 0.0, 1.0))
        if look.shadow_blur_px > 0.5:  # soft light: soft self shadows
            lit = cv2.GaussianBlur(lit, (0, 0), 0.2 * look.shadow_blur_px)
    alb = paint.coat_albedo(body.coat, body.coat_seed, body.patch_share, body.tint,
                            hf.shape, fld.cell, fld.s0, fld.t0)
    alb = paint.add_dirt(rng, alb, look.dirt, fld.cell, fld.s0, body.length)
    grid = np.dstack([alb, (lam * lit)[..., None]]).astype(np.float32)
    px = cv2.remap(grid, gj, gi, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cow_alb, cow_sun = px[..., :3], px[..., 3]

    # the floor, with the cow's cast shadow
    floor_alb, deep = paint.floor_albedo(rng, look.floor, h, w, cam.f / cam.h, th,
                                         look.floor_tone)
    fi, fj = ai * cam.h + bi, aj * cam.h + bj
    shade = np.zeros((h, w), np.float32)
    if lz > 0.05:
        for hc in (fld.h_min + 0.05, 0.5 * (fld.h_min + fld.h_max), fld.h_max - 0.03):
            reach = hc / lz
            hs = _lookup(hf, fi + reach * ls / fld.cell, fj + reach * lt / fld.cell)
            np.maximum(shade, (hs >= hc).astype(np.float32), out=shade)

    # bars: occluders at their own height, with their shadows (drawn low to high, so
    # the nearest bar wins)
    cov8 = np.zeros((h, w), np.uint8)
    bar_depth = np.full((h, w), cam.h, np.float32)
    shadow8 = np.zeros((2, h, w), np.uint8)  # on the floor, on the cow's back
    cow_top = body.back_height - 0.05

    def pt(x: float, y: float, zz: float) -> tuple[int, int]:
        return (round((cam.cx + cam.f * x / zz) * 16),
                round((cam.cy + cam.f * y / zz) * 16))

    for bar in sorted(look.bars, key=lambda b: b.height):
        zb = cam.h - bar.height
        thick = max(1, round(2 * bar.radius * cam.f / zb))
        p0, p1 = pt(bar.x0, bar.y0, zb), pt(bar.x1, bar.y1, zb)
        cv2.line(cov8, p0, p1, 255, thick, cv2.LINE_AA, shift=4)
        cv2.line(bar_depth, p0, p1, zb, thick, cv2.LINE_8, shift=4)
        if lz <= 0.05:
            continue
        for n, hgt in enumerate((0.0, cow_top)):
            if bar.height <= hgt + 0.05:
                continue
            reach = (bar.height - hgt) / lz
            zz = cam.h - hgt
            cv2.line(shadow8[n], pt(bar.x0 - reach * lx, bar.y0 - reach * ly, zz),
                     pt(bar.x1 - reach * lx, bar.y1 - reach * ly, zz), 255,
                     max(1, round(2 * bar.radius * cam.f / zz)), cv2.LINE_AA, shift=4)
    bar_cov = cov8.astype(np.float32) * np.float32(1.0 / 255.0)
    floor_dark = np.maximum(shade, shadow8[0].astype(np.float32) * np.float32(1.0 / 255.0))
    cow_dark = shadow8[1].astype(np.float32) * np.float32(1.0 / 255.0)
    if look.shadow_blur_px > 0.5:
        sb = look.shadow_blur_px / q
        floor_dark = cv2.GaussianBlur(floor_dark, (0, 0), sb)
        cow_dark = cv2.GaussianBlur(cow_dark, (0, 0), 0.5 * sb)
    sun = np.float32(look.sun)
    amb = np.float32(look.ambient)
    cow_light = amb + sun * cow_sun * (1.0 - cow_dark)
    floor_light = amb + sun * np.float32(lz) * (1.0 - floor_dark)

    # compose in linear light
    cowf = cow.astype(np.float32)
    img: np.ndarray = (cow_alb * (cowf * cow_light)[..., None]
           + floor_alb * ((1.0 - cowf) * floor_light)[..., None])
    steel = np.array([0.30, 0.31, 0.32], np.float32) * (amb + sun * np.float32(lz * 0.8))
    img += bar_cov[..., None] * (steel - img)
    light = paint.light_colour(look.kelvin) ** np.float32(look.wb_residue)
    gain = light * np.float32(look.exposure * 1.6)
    if look.vignette > 0:
        r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
        img *= (1.0 - np.float32(look.vignette * 0.5) * r2)[..., None]
    img *= gain
    img = cv2.pow(np.clip(img, 0.0, 1.0), 1.0 / 2.2)  # encode (sRGB-like gamma)

    # the camera, at full size
    if q > 1:
        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)
    sigma = max(look.blur_sigma, 0.0)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if look.motion_px >= 1.5:
        k = round(look.motion_px)
        line = np.zeros((k, k), np.float32)
        line[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), -look.heading_deg, 1.0)
        ker = np.asarray(cv2.warpAffine(line, rot, (k, k)), np.float32)
        img = cv2.filter2D(img, -1, ker * np.float32(1.0 / max(float(ker.sum()), 1e-6)))
    # sensor noise, stronger in bright parts (shot noise); cv2's generator is seeded
    # from this render's rng so the frame stays deterministic
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    grain = np.empty((H, W, 3), np.float32)
    cv2.randn(grain, np.zeros(3), np.full(3, look.noise_sigma / 255.0))
    img += grain * cv2.sqrt(np.clip(img * np.float32(2.0), 0.1, 2.0))
    colour = cv2.convertScaleAbs(img, alpha=255.0)
    ok, enc = cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
    decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
    if decoded is not None:
        colour = decoded

    # depth: distance along the camera axis, mm, at full size
    zd = np.where(cow, z, cam.h + deep)
    zd = np.where(bar_cov > 0.5, bar_depth, zd)
    cov_cow = cowf * (1.0 - bar_cov)
    if q > 1:
        zd = cv2.resize(zd, (W, H), interpolation=cv2.INTER_NEAREST)
        cov_cow = cv2.resize(cov_cow, (W, H), interpolation=cv2.INTER_LINEAR)
    mask = cov_cow > 0.5
    jitter = np.empty((H, W), np.float32)
    cv2.randn(jitter, np.zeros(1), np.ones(1))
    sigma_mm = np.float32(look.depth_noise_mm) + np.float32(look.depth_noise_mm_m2) * zd * zd
    wobble = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (W, H),
                        interpolation=cv2.INTER_CUBIC)
    dmm = zd * np.float32(1000.0) + (jitter + 0.5 * wobble) * sigma_mm
    edges = cv2.Canny(cv2.convertScaleAbs(zd, alpha=60.0), 20, 40)
    holes = deep > 0.1
    if q > 1:
        holes = cv2.resize(holes.astype(np.uint8), (W, H),
                           interpolation=cv2.INTER_NEAREST).astype(bool)
    if look.depth_edge_px > 0:  # occlusion shadow of a stereo pair along the outline
        band = cv2.dilate(edges, np.ones((look.depth_edge_px, look.depth_edge_px), np.uint8))
        holes |= (band > 0) & (jitter > -0.5)
    else:  # flying pixels: depth mixed across the edge
        mixed = cv2.blur(dmm, (5, 5))
        dmm = np.where(edges > 0, mixed, dmm)
    small = paint.noise(rng, H // 8, W // 8, 3.0, 2)
    blobs = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    if look.depth_holes > 0.05:
        holes |= blobs > 2.4 - 1.0 * look.depth_holes
    if body.coat == "black" and look.depth_holes > 0.5:  # weak return from a black coat
        holes |= mask & (blobs < -1.2)
    holes |= (colour[..., 1] >= 254) & (jitter > 0.0)  # saturated: no pattern to match
    depth = np.clip(dmm, 1, 65535).astype(np.uint16)
    depth[holes] = 0

    truth: dict[str, Any] = {
        "look": look.name, "split": look.split, "coat": body.coat,
        "heading_deg": look.heading_deg, "camera_height_m": look.camera_height,
        "focal_px": full.f, "principal_px": (round(full.cx, 2), round(full.cy, 2)),
        "px_per_m_back": full.f / (full.h - body.back_height),
        "mask_share": float(mask.mean()),
    }
    for name, (ls_, lt_, lh) in fld.landmarks.items():
        u, v = _project(full, look, mid, ls_, lt_, lh)
        truth[name] = (round(u, 1), round(v, 1))
    truth["spine_axis"] = (truth["tailhead"], truth["withers"])
    truth["body"] = asdict(body)
    return TopViewSample(colour=colour, depth=depth, mask=mask, bcs=float(bcs), truth=truth)


# --- herds ------------------------------------------------------------------------


def draw_herd_bcs(rng: Rng) -> float:
    """One cow's score from a typical herd (most 2.5-3.75, tails to 1.5 and 4.5)."""
    keys = list(HERD_BCS_WEIGHTS)
    w = np.array([HERD_BCS_WEIGHTS[k] for k in keys])
    return float(keys[int(rng.choice(len(keys), p=w / w.sum()))])


def make_herd_photos(seed: int, cows: int, photos_per_cow: tuple[int, int], split: str,
                     out_dir: Path, *, width: int = 720, height: int = 600,
                     depth: bool = False, progress: bool = False,
                     bcs_draw: str = "herd") -> Path:
    """Write a labelled herd: ``out_dir/images/*.jpg`` (and 16-bit depth ``*.png``
    with the same stem when ``depth``), ``out_dir/labels.csv`` (image,bcs,animal;
    paths relative to the CSV) and ``out_dir/truth.jsonl`` (landmarks, look).

    One body per cow, each cow's score from the herd distribution (``bcs_draw=
    "uniform"``: any of 1.0..5.0 alike), a few photos per cow, each a different
    pass (look) of ``split``. Returns the CSV path."""
    import json

    _split(split)
    lo, hi = photos_per_cow
    if cows < 1 or lo < 1 or hi < lo:
        raise ValueError("need cows >= 1 and 1 <= photos_per_cow[0] <= photos_per_cow[1]")
    rng = np.random.default_rng([int(seed), 0 if split == "train" else 1])
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    plan = []
    for c in range(cows):
        body = sample_body(rng, split)
        bcs = draw_herd_bcs(rng) if bcs_draw == "herd" else float(rng.choice(BCS_STEPS))
        plan.append((c, body, bcs, int(rng.integers(lo, hi + 1))))
    total = sum(p[3] for p in plan)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"{split} herd", unit="img")
    csv_path = out_dir / "labels.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh, \
            (out_dir / "truth.jsonl").open("w", encoding="utf-8") as tj:
        wr = csv.writer(fh)
        wr.writerow(["image", "bcs", "animal"])
        for c, body, bcs, n in plan:
            animal = f"cow{c:04d}"
            for k in range(n):
                look = sample_look(rng, split)
                smp = render(body, bcs, look, width=width, height=height)
                stem = f"{animal}_{k}"
                rel = f"images/{stem}.jpg"
                cv2.imwrite(str(out_dir / rel), smp.colour, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if depth:
                    cv2.imwrite(str(out_dir / "images" / f"{stem}.png"), smp.depth)
                wr.writerow([rel, f"{bcs:.2f}", animal])
                tj.write(json.dumps({"image": rel, "bcs": bcs, "animal": animal,
                                     **{k2: v for k2, v in smp.truth.items()
                                        if k2 != "body"}}) + "\n")
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return csv_path
