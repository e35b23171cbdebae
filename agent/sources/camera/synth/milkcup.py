"""Synthetic milk samples: a sample cup or sight glass in a cluttered frame, with
a reference card in view, under coloured light. For training and a held-out
check of ``agent.vision.milk``; not proof that it works on real cups.

One image is drawn from one integer seed, a class (``agent.records.MILK_CLASSES``)
and a look (``MILK_TRAIN`` or ``MILK_HELDOUT``). The scene is built in linear
reflectance, lit, then passed through a camera (noise, sRGB gamma, blur, JPEG):

- the milk: a colour per class drawn in CIE Lab (normal: white to cream;
  blood: normal milk with haemoglobin's green and blue absorption, faint
  pink (a* about +4 over normal) to red; colostrum: thick yellow,
  opaque; watery: bluish grey and translucent, the cup background shows
  through; clots: normal colour with white or yellowish flakes and lumps),
  a meniscus shade at the rim, foam bubbles, specular highlights;
- the cup: an ellipse (a cup seen from above at an angle) or a rectangle (a
  sight glass), a wall of white, clear, black or steel plastic, a background
  behind the milk (dark plate, graduation lines, a grid or mottled plastic);
- the reference card: a black frame around a white field (``white``) or around
  six squares (``colour``: white, grey, dark grey over red, green, blue);
- the light: a colour temperature (blackbody), an intensity, a spatial
  gradient and vignette, sometimes a hard shadow, a green or magenta tint;
- clutter: a textured wall or floor, hoses, buckets, boxes and rails.

``MILK_HELDOUT`` keeps back nuisance ranges that training never sees: colour
temperatures (2300-2700 K, 3400-3900 K, 6300-8000 K), cup shapes (flatter
ellipses, narrow tubes, rounded rectangles), card positions (top or bottom
middle of the frame instead of the left or right side) and stronger card
rotation. The class definitions (the milk colours) are the same in both.
Held-out images use seeds >= ``MILK_EVAL_SEED_MIN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

Rng = np.random.Generator

MILK_EVAL_SEED_MIN = 900_000
CLASSES = ("normal", "blood", "colostrum", "watery", "clots")  # = agent.records.MILK_CLASSES

# The reference card (= agent.vision.milk.balance): linear reflectances, neutrals equal in R, G, B.
CARD_WHITE = 0.85
CARD_NEUTRALS = (0.85, 0.40, 0.16)  # white, grey, dark grey (top row of the colour card)
CARD_BLACK = 0.035  # the frame
CARD_COLOURS = ((0.55, 0.06, 0.05), (0.08, 0.40, 0.10), (0.05, 0.10, 0.50))  # R, G, B squares
CARD_BORDER = 0.14  # frame width / card height
CARD_MARK = (0.08, 0.22)  # white card: black square, offset and side / white field height


@dataclass(frozen=True)
class MilkLook:
    """Nuisance ranges of one split; (low, high) pairs, a list of them = a union."""

    name: str
    cct_k: tuple[tuple[float, float], ...]
    shapes: tuple[str, ...]  # ellipse, rect, tube, rounded, flat_ellipse
    card_zone: str  # "sides" (left/right third) or "middle" (top/bottom of the middle third)
    card_rot_deg: tuple[float, float]
    intensity: tuple[float, float]  # exposure: white card's brightest channel, linear
    shadow_p: float = 0.3


MILK_TRAIN = MilkLook("train", cct_k=((2700.0, 3400.0), (3900.0, 6300.0)),
                      shapes=("ellipse", "rect"), card_zone="sides", card_rot_deg=(-12.0, 12.0),
                      intensity=(0.35, 0.85))
MILK_HELDOUT = MilkLook("heldout", cct_k=((2300.0, 2700.0), (3400.0, 3900.0), (6300.0, 8000.0)),
                        shapes=("flat_ellipse", "tube", "rounded"), card_zone="middle",
                        card_rot_deg=(-30.0, 30.0), intensity=(0.3, 0.9))
MILK_LOOKS = {"train": MILK_TRAIN, "heldout": MILK_HELDOUT}


# -- colour ------------------------------------------------------------------

_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def lab_to_linear_rgb(lab: tuple[float, float, float]) -> np.ndarray:
    """CIE Lab (D65) to linear sRGB, clipped to 0..1 (RGB order)."""
    lum, a, b = lab
    fy = (lum + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    return np.clip(_XYZ_TO_RGB @ xyz, 0.0, 1.0)


def cct_rgb(kelvin: float) -> np.ndarray:
    """Linear RGB of a blackbody at ``kelvin``, green = 1 (Tanner Helland's fit)."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = (99.4708025861 * math.log(t) - 161.1195681661 if t <= 66
         else 288.1221695283 * (t - 60) ** -0.0755148492)
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10)
                               - 305.0447927307)
    srgb = np.clip(np.array([r, g, b]) / 255.0, 1e-3, 1.0)
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return lin / lin[1]


def encode_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear 0..1 to sRGB 0..1."""
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)


_LUT_N = 8192
_ENCODE_LUT = (encode_srgb(np.arange(_LUT_N) / (_LUT_N - 1)) * 255 + 0.5).astype(np.uint8)


def to_srgb8(lin: np.ndarray) -> np.ndarray:
    """Linear float image to sRGB uint8 through a table (fast at frame size)."""
    idx = np.clip(lin * (_LUT_N - 1) + 0.5, 0, _LUT_N - 1).astype(np.int32)
    return _ENCODE_LUT[idx]


def _rgb2bgr(c: np.ndarray) -> np.ndarray:
    return np.asarray(c, np.float32)[::-1].copy()


# -- the milk of each class ------------------------------------------------------

def milk_colour(rng: Rng, cls: str) -> tuple[np.ndarray, float, dict[str, Any]]:
    """(linear BGR reflectance, opacity 0..1, label details) for one sample."""
    normal = (float(rng.uniform(87, 95)), float(rng.uniform(-3.0, 0.5)),
              float(rng.uniform(1.0, 9.0)))
    if cls in ("normal", "clots"):
        lab = normal if cls == "normal" else (normal[0], normal[1], normal[2] + rng.uniform(0, 3))
        return _rgb2bgr(lab_to_linear_rgb(lab)), float(rng.uniform(0.93, 1.0)), {"lab": lab}
    if cls == "blood":
        # haemoglobin absorbs green and blue: faint pink (a* about +4 over normal) to red
        conc = float(np.exp(rng.uniform(np.log(0.1), np.log(1.0))))
        rgb = lab_to_linear_rgb(normal) * np.exp(-conc * np.array([0.1, 2.0, 1.5])
                                                 * rng.uniform(0.85, 1.15, 3))
        return _rgb2bgr(rgb), float(rng.uniform(0.93, 1.0)), {"lab": normal,
                                                              "blood_conc": conc}
    if cls == "colostrum":
        lab = (float(rng.uniform(76, 90)), float(rng.uniform(-1.0, 7.0)),
               float(rng.uniform(20, 45)))
        return _rgb2bgr(lab_to_linear_rgb(lab)), 1.0, {"lab": lab}
    if cls == "watery":
        lab = (float(rng.uniform(70, 86)), float(rng.uniform(-3.5, 0.0)),
               float(rng.uniform(-11, -3)))
        return _rgb2bgr(lab_to_linear_rgb(lab)), float(rng.uniform(0.3, 0.68)), {"lab": lab}
    raise ValueError(f"unknown milk class {cls!r}; one of {CLASSES}")


# -- scene pieces --------------------------------------------------------------

_CLUTTER = [(0.45, 0.45, 0.45), (0.30, 0.32, 0.33), (0.60, 0.60, 0.58), (0.20, 0.35, 0.15),
            (0.10, 0.20, 0.45), (0.55, 0.15, 0.08), (0.75, 0.70, 0.55), (0.05, 0.05, 0.05),
            (0.70, 0.45, 0.10), (0.80, 0.80, 0.80), (0.15, 0.40, 0.60)]


def _background(rng: Rng, h: int, w: int) -> np.ndarray:
    base = np.array(_CLUTTER[rng.integers(len(_CLUTTER))], np.float32)[::-1]
    base = base * rng.uniform(0.5, 1.0)
    low = cv2.resize(rng.uniform(0.7, 1.3, (6, 8)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    fine = 1 + rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(0.02, 0.12))
    img = base[None, None, :] * (low * fine)[..., None]
    if rng.random() < 0.4:  # tiles, grating or panels
        step = int(rng.integers(20, 80))
        for x in range(int(rng.integers(0, step)), w, step):
            cv2.line(img, (x, 0), (x, h), tuple(float(v) * 0.6 for v in base), 2)
    return img


def _clutter(rng: Rng, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(3, 9))):
        col = tuple(float(v) * rng.uniform(0.6, 1.1)
                    for v in _CLUTTER[rng.integers(len(_CLUTTER))][::-1])
        kind = rng.integers(4)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.uniform(0.04, 0.16) * w)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.3, 1.5))), col, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), s // 2, col, -1)
        elif kind == 2:  # a hose
            pts = np.array([[x, y], [x + rng.integers(-w // 2, w // 2),
                                     y + rng.integers(-h // 2, h // 2)]], np.int32)
            cv2.polylines(img, [pts], False, col, int(rng.integers(4, 14)))
        else:  # a rail
            yy = int(rng.integers(0, h))
            cv2.line(img, (0, yy), (w, yy + int(rng.integers(-20, 20))), col,
                     int(rng.integers(3, 10)))


def _card_image(rng: Rng, layout: str, ch: int) -> tuple[np.ndarray, np.ndarray]:
    """The card, ch px high, linear BGR, and its mask; landscape 3:2 frame."""
    cw = round(ch * 1.5)
    card = np.full((ch, cw, 3), CARD_BLACK, np.float32)
    bw = max(2, round(CARD_BORDER * ch))
    x0, y0, x1, y1 = bw, bw, cw - bw, ch - bw
    if layout == "white":
        card[y0:y1, x0:x1] = CARD_WHITE
        ih = y1 - y0  # the mark in the top-left corner of the white field
        mo, ms = round(CARD_MARK[0] * ih), round(CARD_MARK[1] * ih)
        card[y0 + mo:y0 + mo + ms, x0 + mo:x0 + mo + ms] = CARD_BLACK
    else:
        cells = [*[(v, v, v) for v in CARD_NEUTRALS], *CARD_COLOURS]
        cell_w, cell_h = (x1 - x0) / 3, (y1 - y0) / 2
        for i, rgb in enumerate(cells):
            r, c = divmod(i, 3)
            ya, xa = int(y0 + r * cell_h), int(x0 + c * cell_w)
            yb, xb = int(y0 + (r + 1) * cell_h), int(x0 + (c + 1) * cell_w)
            card[ya:yb, xa:xb] = np.array(rgb[::-1], np.float32)
    # paper texture
    card *= (1 + rng.normal(0, 0.01, card.shape[:2]).astype(np.float32))[..., None]
    return card, np.ones((ch, cw), np.float32)


def _place_card(rng: Rng, img: np.ndarray, look: MilkLook, layout: str,
                cup_box: tuple[int, int, int, int]) -> list[list[float]]:
    h, w = img.shape[:2]
    ch = int(rng.uniform(0.13, 0.22) * min(h, w))
    card, mask = _card_image(rng, layout, ch)
    if rng.random() < 0.5 and layout == "white":  # portrait white card
        card, mask = np.ascontiguousarray(np.rot90(card)), np.ascontiguousarray(np.rot90(mask))
    if rng.random() < 0.5 and layout == "colour":  # upside down
        card, mask = card[::-1, ::-1].copy(), mask[::-1, ::-1].copy()
    sh, sw = int(card.shape[0]), int(card.shape[1])
    src = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float32)
    ang = math.radians(rng.uniform(*look.card_rot_deg))
    cx0, cy0, cx1, cy1 = cup_box
    half = math.hypot(sw, sh) / 2
    for _ in range(60):
        if look.card_zone == "sides":
            cx = rng.uniform(half, w / 3) if rng.random() < 0.5 else rng.uniform(2 * w / 3,
                                                                               w - half)
            cy = rng.uniform(half, h - half)
        else:
            cx = rng.uniform(max(half, w / 3), min(w - half, 2 * w / 3))
            cy = rng.uniform(half, h / 3) if rng.random() < 0.5 else rng.uniform(2 * h / 3,
                                                                               h - half)
        if not (cx + half > cx0 and cx - half < cx1 and cy + half > cy0 and cy - half < cy1):
            break
    corners = np.array([[-sw / 2, -sh / 2], [sw / 2, -sh / 2], [sw / 2, sh / 2],
                        [-sw / 2, sh / 2]])
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    persp = 1 + rng.uniform(-0.08, 0.08, (4, 2))  # mild perspective
    dst = (corners * persp) @ rot.T + [cx, cy]
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(card, m, (w, h), flags=cv2.INTER_AREA)
    wmask = cv2.warpPerspective(mask, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    img[:] = img * (1 - wmask) + warped * wmask
    return dst.tolist()


def _cup_mask(rng: Rng, shape: str, h: int, w: int) -> tuple[np.ndarray, tuple[int, int, int,
                                                                               int]]:
    """Outer mask (wall included) of the cup, as float32 0/1, and its box."""
    mask = np.zeros((h, w), np.uint8)
    s = min(h, w)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    if shape in ("ellipse", "flat_ellipse"):
        a = rng.uniform(0.2, 0.34) * s
        ratio = rng.uniform(0.6, 1.0) if shape == "ellipse" else rng.uniform(0.4, 0.6)
        ang = rng.uniform(-20, 20)
        cv2.ellipse(mask, ((cx, cy), (2 * a, 2 * a * ratio), ang), 1, -1)
    else:
        if shape == "rect":
            bw, bh = rng.uniform(0.25, 0.45) * s, rng.uniform(0.35, 0.7) * s
        elif shape == "tube":
            bw, bh = rng.uniform(0.14, 0.22) * s, rng.uniform(0.5, 0.8) * s
        else:  # rounded
            bw, bh = rng.uniform(0.3, 0.5) * s, rng.uniform(0.3, 0.5) * s
        if rng.random() < 0.3:
            bw, bh = bh, bw  # lying sight glass
        box = ((cx, cy), (bw, bh), rng.uniform(-8, 8))
        pts = cv2.boxPoints(box).astype(np.int32)
        cv2.fillConvexPoly(mask, pts, 1)
        if shape == "rounded":
            r = int(min(bw, bh) * 0.5) | 1
            mask = np.asarray(cv2.morphologyEx(
                mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r, r))),
                np.uint8)
    ys, xs = np.nonzero(mask)
    return mask.astype(np.float32), (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def _cup_background(rng: Rng, h: int, w: int) -> np.ndarray:
    """What is behind the milk (seen through translucent milk), linear BGR."""
    kind = rng.integers(4)
    if kind == 0:  # black strip-cup plate
        bg = np.full((h, w, 3), rng.uniform(0.02, 0.08), np.float32)
    else:
        col = np.array(_CLUTTER[rng.integers(len(_CLUTTER))][::-1], np.float32)
        bg = np.empty((h, w, 3), np.float32)
        bg[:] = col * rng.uniform(0.3, 0.8)
    if kind == 1:  # graduation lines
        step = int(rng.integers(8, 24))
        for y in range(0, h, step):
            cv2.line(bg, (0, y), (w, y), (0.03, 0.03, 0.03), 2)
    elif kind == 2:  # grid
        step = int(rng.integers(10, 30))
        for v in range(0, max(h, w), step):
            cv2.line(bg, (v, 0), (v, h), (0.04, 0.04, 0.04), 1)
            cv2.line(bg, (0, v), (w, v), (0.04, 0.04, 0.04), 1)
    elif kind == 3:  # mottled
        low = cv2.resize(rng.uniform(0.4, 1.6, (5, 5)).astype(np.float32), (w, h))
        bg *= low[..., None]
    return bg


def _particles(rng: Rng, liquid: np.ndarray, inner: np.ndarray, milk: np.ndarray,
               n: int, size: tuple[float, float]) -> int:
    """White or yellowish flakes and lumps with a darker edge; returns the count drawn."""
    ys, xs = np.nonzero(inner > 0.5)
    if len(xs) == 0:
        return 0
    drawn = 0
    for i in rng.integers(0, len(xs), n):
        x, y = int(xs[i]), int(ys[i])
        r = max(1.0, rng.uniform(*size))
        tint = np.array([rng.uniform(0.55, 0.85), rng.uniform(0.8, 0.95),
                         rng.uniform(0.85, 1.0)], np.float32)  # white to yellowish (BGR)
        col = tuple(float(v) for v in tint)
        edge = tuple(float(v) for v in milk * rng.uniform(0.45, 0.7))
        axes = (max(1, int(r)), max(1, int(r * rng.uniform(0.5, 1.0))))
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(liquid, (x, y), (axes[0] + 1, axes[1] + 1), ang, 0, 360, edge, -1)
        cv2.ellipse(liquid, (x, y), axes, ang, 0, 360, col, -1)
        drawn += 1
    return drawn


def _bubbles(rng: Rng, liquid: np.ndarray, inner: np.ndarray, scale: float) -> int:
    """Foam bubbles, mostly near the rim: light rings with a bright spot."""
    dist = cv2.distanceTransform((inner > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero((dist > 1) & (dist < max(3.0, 0.15 * scale)))
    if len(xs) == 0:
        return 0
    n = int(rng.integers(4, 40))
    for i in rng.integers(0, len(xs), n):
        r = int(max(2, rng.uniform(0.01, 0.04) * scale))
        c = (int(xs[i]), int(ys[i]))
        cv2.circle(liquid, c, r, (0.93, 0.93, 0.93), 1, cv2.LINE_AA)
        cv2.circle(liquid, (c[0] - r // 3, c[1] - r // 3), max(1, r // 4), (1.0, 1.0, 1.0), -1)
    return n


def _light(rng: Rng, h: int, w: int, look: MilkLook) -> tuple[np.ndarray, float, np.ndarray]:
    """(per-pixel light field h x w x 3, colour temperature, light colour BGR green=1)."""
    lo, hi = look.cct_k[rng.integers(len(look.cct_k))]
    kelvin = float(rng.uniform(lo, hi))
    colour = cct_rgb(kelvin)[::-1].astype(np.float32)
    if rng.random() < 0.3:  # fluorescent: green or magenta tint
        colour = colour * np.array([1.0, rng.uniform(0.9, 1.12), 1.0], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    field = 1 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    field = field * (1 - rng.uniform(0, 0.35) * r2 / 0.5)
    return field[..., None] * colour[None, None, :], kelvin, colour


def render_milk(seed: int, cls: str, look: MilkLook = MILK_TRAIN,
                card: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One BGR uint8 frame of a milk sample of class ``cls`` and its label.

    :param card: ``white``, ``colour``, ``none`` (no reference card in view) or
        None (white or colour, at random).
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown milk class {cls!r}; one of {CLASSES}")
    if look.name == "heldout" and seed < MILK_EVAL_SEED_MIN:
        raise ValueError(f"held-out images use seeds >= {MILK_EVAL_SEED_MIN}, got {seed}")
    if look.name != "heldout" and seed >= MILK_EVAL_SEED_MIN:
        raise ValueError(f"seeds >= {MILK_EVAL_SEED_MIN} are kept for held-out evaluation")
    rng = np.random.default_rng([seed, CLASSES.index(cls)])
    w = int(rng.integers(480, 801))
    h = round(w * rng.uniform(0.6, 0.8))
    img = _background(rng, h, w)
    _clutter(rng, img)

    shape = str(look.shapes[rng.integers(len(look.shapes))])
    outer, box = _cup_mask(rng, shape, h, w)
    size = max(box[2] - box[0], box[3] - box[1])
    wall = max(2, int(rng.uniform(0.03, 0.08) * size))
    inner = (cv2.distanceTransform(outer.astype(np.uint8), cv2.DIST_L2, 3) > wall).astype(
        np.float32)
    wall_kind = rng.integers(4)
    wall_col = [np.full(3, rng.uniform(0.65, 0.85)),  # white plastic
                np.full(3, rng.uniform(0.02, 0.06)),  # black
                np.full(3, rng.uniform(0.35, 0.55)),  # steel
                None][wall_kind]  # clear: the scene behind, a little darker
    o3 = outer[..., None]
    img = (img * (1 - 0.2 * o3) if wall_col is None
           else img * (1 - o3) + np.asarray(wall_col, np.float32) * o3)

    milk, opacity, details = milk_colour(rng, cls)
    behind = _cup_background(rng, h, w)
    liquid = (np.float32(opacity) * milk[None, None, :]
              + np.float32(1 - opacity) * behind * (0.6 + 0.4 * milk)).astype(np.float32)
    if cls == "colostrum" and rng.random() < 0.6:  # thick: slow streaks
        streak = cv2.resize(rng.uniform(0.94, 1.04, (4, 24)).astype(np.float32), (w, h))
        liquid *= streak[..., None]
    n_particles = 0
    if cls == "clots":
        n_particles = _particles(rng, liquid, inner, milk, int(rng.integers(15, 80)),
                                 (0.006 * size, 0.03 * size))
    n_bubbles = _bubbles(rng, liquid, inner, size) if rng.random() < 0.45 else 0
    # meniscus: darker towards the wall
    dist = cv2.distanceTransform((inner > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    shade = 1 - np.float32(rng.uniform(0.05, 0.25)) * np.exp(-dist / np.float32(max(2.0, 0.05 * size)))
    liquid *= shade[..., None]
    soft = cv2.GaussianBlur(inner, (0, 0), 1.0)[..., None]
    img = img * (1 - soft) + liquid * soft

    layout = card if card is not None else ("white" if rng.random() < 0.5 else "colour")
    corners = None if layout == "none" else _place_card(rng, img, look, layout, box)

    light, kelvin, colour = _light(rng, h, w, look)
    exposure = float(rng.uniform(*look.intensity)) / (CARD_WHITE * float(colour.max()))
    img = img * (light * np.float32(exposure))
    shadow = False
    if rng.random() < look.shadow_p:  # a hard shadow: an arm, a hose, a post
        pts = rng.uniform([0, 0], [w, h], (4, 2)).astype(np.int32)
        smask: np.ndarray = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(smask, cv2.convexHull(pts), 1.0)
        smask = cv2.GaussianBlur(smask, (0, 0), 3)
        img *= (1 - rng.uniform(0.2, 0.5) * smask)[..., None]
        shadow = True
    n_spec = 0
    if rng.random() < 0.6:  # specular highlights on the liquid surface
        ys, xs = np.nonzero(inner > 0.5)
        for i in rng.integers(0, len(xs), int(rng.integers(1, 4))):
            spot: np.ndarray = np.zeros((h, w), np.float32)
            r = max(2, int(rng.uniform(0.01, 0.05) * size))
            cv2.ellipse(spot, (int(xs[i]), int(ys[i])), (r, max(1, r // 2)),
                        float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            spot = cv2.GaussianBlur(spot, (0, 0), max(1.0, r / 3))
            img += spot[..., None] * colour[None, None, :] * rng.uniform(0.5, 1.5)
            n_spec += 1
    # camera: shot and read noise, gamma, blur, JPEG
    sigma = rng.uniform(0.002, 0.012)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img = img + noise * (np.float32(sigma) + np.float32(0.02) * np.sqrt(np.clip(img, 0, None)))
    out = to_srgb8(img)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2))
    q = int(rng.integers(55, 96))
    out = np.asarray(cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])[1],
                                  cv2.IMREAD_COLOR), np.uint8)
    label: dict[str, Any] = {
        "seed": seed, "class": cls, "look": look.name, "size": [w, h], "shape": shape,
        "cup_box": list(box), "card": layout, "card_corners": corners,
        "cct_k": round(kelvin, 1), "exposure": round(exposure, 4), "shadow": shadow,
        "opacity": round(opacity, 3), "particles": n_particles, "bubbles": n_bubbles,
        "speculars": n_spec, "jpeg_quality": q,
        **{k: (round(v, 4) if isinstance(v, float) else [round(x, 2) for x in v])
           for k, v in details.items()},
    }
    return out, label


def station_roi(label: dict[str, Any], margin: float = 0.15) -> tuple[float, float, float, float]:
    """The region of interest an installer would configure for this frame's fixed
    sample point (``CameraConfig.roi``: x, y, w, h fractions): the cup and the
    card, with ``margin`` of their extent around them, inside the frame."""
    w, h = label["size"]
    x0, y0, x1, y1 = (float(v) for v in label["cup_box"])
    if label.get("card_corners"):
        pts = np.asarray(label["card_corners"], np.float64)
        x0, y0 = min(x0, float(pts[:, 0].min())), min(y0, float(pts[:, 1].min()))
        x1, y1 = max(x1, float(pts[:, 0].max())), max(y1, float(pts[:, 1].max()))
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = max(0.0, x0 - mx), max(0.0, y0 - my)
    x1, y1 = min(float(w), x1 + mx), min(float(h), y1 + my)
    return x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h

