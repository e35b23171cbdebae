"""One ear tag drawn flat, at design scale, before it is placed in a picture.

The tag is drawn big (main digits ``DESIGN_DIGIT_PX`` tall) and only shrunk
when it is placed, so strokes keep their anti-aliasing at every final size.
Alongside the colour image the art carries masks the placement needs to
label it honestly: the tag body (alpha), which pixel belongs to which digit of
the management number, and which digit pixels dirt already hides.

What the label is: ``number`` is the management number, the big digits. A
two-line tag also prints a small line above it (country code plus herd or
official id, e.g. ``NL 123456``): that line is a distractor, kept in
``prefix`` but never part of the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from agent.sources.camera.synth.params import COLOURS, SynthParams

DESIGN_DIGIT_PX = 80
_HERSHEY = {
    "simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "duplex": cv2.FONT_HERSHEY_DUPLEX,
    "complex": cv2.FONT_HERSHEY_COMPLEX,
    "plain": cv2.FONT_HERSHEY_PLAIN,
    "triplex": cv2.FONT_HERSHEY_TRIPLEX,
}
_DARK = {"blue", "green", "red", "purple"}
_COUNTRIES = ("NL", "DE", "UK", "FR", "DK", "BE", "IE", "US", "NZ", "PL")
Rng = np.random.Generator


@dataclass(frozen=True)
class TagStyle:
    """Everything sampled about one tag's look (kept in the label for analysis)."""

    number: str
    prefix: str  # small line above the number; "" for one-line tags
    shape: str
    colour: str
    font: str
    italic: bool
    stroke_ratio: float
    white_ink: bool


@dataclass
class TagArt:
    """A flat tag at design scale.

    ``digits`` holds 1..n on the ink pixels of digit 1..n of the number (0
    elsewhere); ``dirt`` is 255 where mud hides the tag opaquely; ``number_box``
    is x, y, w, h of the number's ink; ``contrast`` is |luma(body) - luma(ink)|
    in 0..1 after fading.
    """

    style: TagStyle
    bgr: np.ndarray
    alpha: np.ndarray  # float32 0..1
    digits: np.ndarray  # uint8
    dirt: np.ndarray  # uint8 0/255
    number_box: tuple[int, int, int, int]
    contrast: float
    body_colour: tuple[float, float, float]
    ink_colour: tuple[float, float, float]


def pick(rng: Rng, weights: dict[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_number(rng: Rng, lo: int, hi: int) -> str:
    """A management number of lo..hi digits. Leading zeros are printed as such
    (some farms pad to a fixed width), so the label keeps them."""
    n = int(rng.integers(lo, hi + 1))
    if n > 1 and rng.random() < 0.85:  # most numbers are not zero-padded
        first = str(int(rng.integers(1, 10)))
        return first + "".join(str(int(d)) for d in rng.integers(0, 10, n - 1))
    return "".join(str(int(d)) for d in rng.integers(0, 10, n))


def sample_style(rng: Rng, params: SynthParams, number: str | None = None) -> TagStyle:
    shape = pick(rng, params.shapes)
    hi = 4 if shape == "button" else params.digits[1]
    num = number if number is not None else sample_number(rng, params.digits[0], hi)
    prefix = ""
    if shape != "button" and rng.random() < params.two_line_p:
        country = _COUNTRIES[int(rng.integers(len(_COUNTRIES)))]
        herd = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(4, 8))))
        prefix = f"{country} {herd}"
    colour = pick(rng, params.colours)
    font = pick(rng, params.fonts)
    return TagStyle(
        number=num, prefix=prefix, shape=shape, colour=colour, font=font,
        italic=bool(rng.random() < params.italic_p) and font != "marker",
        stroke_ratio=float(rng.uniform(*params.stroke_ratio)),
        white_ink=colour in _DARK and bool(rng.random() < 0.7),
    )


@cache
def _glyph_height(font: int) -> float:
    """Height in px of a digit's ink at font scale 1, thickness 1."""
    img = np.zeros((120, 120), np.uint8)
    cv2.putText(img, "8", (10, 100), font, 2.0, 255, 1, cv2.LINE_8)
    rows = np.flatnonzero(img.any(axis=1))
    return float(rows[-1] - rows[0] + 1) / 2.0


def _digit(rng: Rng, ch: str, style: TagStyle, h: int) -> np.ndarray:
    """One digit's coverage (float32 0..1), ink exactly about ``h`` px tall."""
    marker = style.font == "marker"
    font = _HERSHEY["simplex" if marker else style.font]
    if style.italic:
        font |= cv2.FONT_ITALIC
    thick = max(1, round(style.stroke_ratio * h * (rng.uniform(0.8, 1.25) if marker else 1)))
    scale = max(0.1, (h - thick) / _glyph_height(font & 15))
    size = 3 * h  # the same for every digit of a number, so their baselines line up
    img: np.ndarray = np.zeros((size, size), np.uint8)
    base = h + (size - h) // 2
    cv2.putText(img, ch, (thick + h // 6, base), font, scale, 255, thick, cv2.LINE_AA)
    if marker:  # hand-written: each digit a little rotated, scaled, lifted; wobbly stroke
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-9, 9), rng.uniform(0.88, 1.1))
        m[1, 2] += rng.uniform(-0.06, 0.06) * h
        img = cv2.warpAffine(img, m, (size, size))
        img = _wobble(rng, img, 0.03 * h)
    return img.astype(np.float32) / 255.0


def _wobble(rng: Rng, img: np.ndarray, amp: float) -> np.ndarray:
    """Smooth random displacement: a marker line is never straight."""
    hgt, wid = img.shape
    small = rng.normal(0, amp, (2, 5, 5)).astype(np.float32)
    dx = cv2.resize(small[0], (wid, hgt), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(small[1], (wid, hgt), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(wid, dtype=np.float32), np.arange(hgt, dtype=np.float32))
    return cv2.remap(img, gx + dx, gy + dy, cv2.INTER_LINEAR)


def number_layer(rng: Rng, style: TagStyle, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The management number: coverage (float32) and digit index (uint8), tight."""
    covs = [_digit(rng, ch, style, h) for ch in style.number]
    gap = int(rng.uniform(-0.02, 0.12) * h)
    cols = []
    for c in covs:
        used = np.flatnonzero(c.max(axis=0) > 0.05)
        cols.append(c[:, used[0]:used[-1] + 1] if used.size else c[:, :2])
    width = sum(c.shape[1] for c in cols) + gap * (len(cols) - 1) + 4
    height = covs[0].shape[0]
    cov = np.zeros((height, max(width, 4)), np.float32)
    idx: np.ndarray = np.zeros(cov.shape, np.uint8)
    x = 2
    for k, c in enumerate(cols, start=1):
        region = cov[:, x:x + c.shape[1]]
        np.maximum(region, c, out=region)
        idx[:, x:x + c.shape[1]][c > 0.35] = k
        x += c.shape[1] + gap
    stretch = rng.uniform(0.72, 1.12)  # real tag fonts run condensed
    new_w = max(4, round(cov.shape[1] * stretch))
    cov = cv2.resize(cov, (new_w, height), interpolation=cv2.INTER_AREA)
    idx = cv2.resize(idx, (new_w, height), interpolation=cv2.INTER_NEAREST)
    rows = np.flatnonzero(cov.max(axis=1) > 0.05)
    return cov[rows[0]:rows[-1] + 1], idx[rows[0]:rows[-1] + 1]


def _body_mask(shape: str, w: int, h: int, neck: int) -> np.ndarray:
    """Tag outline (uint8 0/255) in a (h + neck) x w canvas, neck and hole on top."""
    m = np.zeros((h + neck, w), np.uint8)
    top = neck
    r = max(2, int(0.18 * min(w, h)))
    if shape == "button":
        cv2.circle(m, (w // 2, top + h // 2), min(w, h) // 2 - 1, 255, -1, cv2.LINE_AA)
        return m
    if shape == "tombstone":
        cv2.ellipse(m, (w // 2, top + w // 2), (w // 2 - 1, w // 2 - 1), 0, 180, 360, 255, -1)
        cv2.rectangle(m, (0, top + w // 2), (w - 1, top + h - r), 255, -1)
        cv2.rectangle(m, (r, top + h - r), (w - 1 - r, top + h - 1), 255, -1)
        for cx in (r, w - 1 - r):
            cv2.circle(m, (cx, top + h - 1 - r), r, 255, -1, cv2.LINE_AA)
    elif shape == "shield":
        pts = np.array([[0, top], [w - 1, top], [w - 1, top + int(0.62 * h)],
                        [w // 2, top + h - 1], [0, top + int(0.62 * h)]], np.int32)
        cv2.fillPoly(m, [pts], 255, cv2.LINE_AA)
    else:  # panel: rounded rectangle
        cv2.rectangle(m, (r, top), (w - 1 - r, top + h - 1), 255, -1)
        cv2.rectangle(m, (0, top + r), (w - 1, top + h - 1 - r), 255, -1)
        for cx in (r, w - 1 - r):
            for cy in (top + r, top + h - 1 - r):
                cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    # neck up to the ear, with the hole of the pin
    nw = max(6, int(0.3 * w))
    cv2.rectangle(m, (w // 2 - nw // 2, 0), (w // 2 + nw // 2, top + r), 255, -1)
    cv2.circle(m, (w // 2, int(0.45 * neck)), max(2, nw // 4), 0, -1, cv2.LINE_AA)
    return m


def _luma(bgr: np.ndarray | tuple[float, ...]) -> float:
    b, g, r = (float(v) for v in bgr)
    return 0.114 * b + 0.587 * g + 0.299 * r


def render_tag(rng: Rng, style: TagStyle, params: SynthParams, back: bool = False) -> TagArt:
    """Draw the tag flat. ``back``: the blank back side (tag turned away)."""
    h = DESIGN_DIGIT_PX
    cov, idx = number_layer(rng, style, h)
    nh, nw = cov.shape
    pre_h = int(rng.uniform(0.26, 0.4) * h) if style.prefix else 0
    pre_cov = _prefix_layer(style.prefix, pre_h) if style.prefix else None
    if style.shape == "button":
        w = hgt = int(max(nw * 1.3, nh * 2.3))
        neck = 0
    else:
        w = int(max(nw + rng.uniform(0.3, 0.7) * h, 1.5 * h,
                    (pre_cov.shape[1] + 0.3 * h) if pre_cov is not None else 0))
        hgt = int(nh + pre_h + rng.uniform(0.7, 1.3) * h + (0.15 * h if pre_h else 0))
        if style.shape == "tombstone":
            hgt += w // 3
        neck = int(rng.uniform(0.35, 0.6) * h)
    body = _body_mask(style.shape, w, hgt, neck)
    full_h = hgt + neck

    base = np.array(COLOURS[style.colour], np.float32) + rng.uniform(-14, 14, 3)
    fade = float(rng.uniform(*params.fade)) if rng.random() < params.fade_p else 0.0
    base = base + (np.array([235.0, 235, 230]) - base) * 0.45 * fade  # sun-bleached
    ink = np.array([245.0, 245, 245] if style.white_ink else [22.0, 20, 24]) + rng.uniform(-10, 10, 3)
    ink = ink + (base - ink) * 0.7 * fade * rng.uniform(0.5, 1.0)
    base, ink = np.clip(base, 0, 255), np.clip(ink, 0, 255)

    img = np.empty((full_h, w, 3), np.float32)
    img[:] = base
    # moulded plastic: a soft light gradient and fine grain
    gy = np.linspace(rng.uniform(0.8, 1.05), rng.uniform(0.9, 1.15), full_h, dtype=np.float32)
    img *= gy[:, None, None]
    img += rng.normal(0, 3.0, (full_h, w, 1)).astype(np.float32)

    digits = np.zeros((full_h, w), np.uint8)
    y0 = neck + (hgt - nh - pre_h) // 2 + (pre_h + int(0.15 * h) if pre_h else 0) // 2
    if style.shape == "tombstone":
        y0 += w // 8
    x0 = (w - nw) // 2
    y0 = min(max(0, y0), full_h - nh)
    box = (x0, y0, nw, nh)
    if not back:
        a = cov[..., None]
        region = img[y0:y0 + nh, x0:x0 + nw]
        region[:] = region * (1 - a) + ink * a
        digits[y0:y0 + nh, x0:x0 + nw] = idx
        if pre_cov is not None:
            ph, pw = pre_cov.shape
            py = max(neck + 2, y0 - int(0.15 * h) - ph)
            px = (w - pw) // 2
            pa = pre_cov[..., None]
            reg = img[py:py + ph, px:px + pw]
            reg[:] = reg * (1 - pa) + ink * pa
    dirt = _dirt(rng, img, body, params) if rng.random() < params.dirt_p else np.zeros_like(digits)
    out = np.clip(img, 0, 255).astype(np.uint8)
    contrast = abs(_luma(base) - _luma(ink)) / 255.0
    return TagArt(style, out, body.astype(np.float32) / 255.0, digits, dirt, box, contrast,
                  (float(base[0]), float(base[1]), float(base[2])),
                  (float(ink[0]), float(ink[1]), float(ink[2])))


def _prefix_layer(text: str, h: int) -> np.ndarray:
    scale = max(0.1, h / _glyph_height(cv2.FONT_HERSHEY_SIMPLEX) * 0.9)
    thick = max(1, h // 9)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    img = np.zeros((th + 2 * thick + 4, tw + 4), np.uint8)
    cv2.putText(img, text, (2, th + thick), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick,
                cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


def _dirt(rng: Rng, img: np.ndarray, body: np.ndarray, params: SynthParams) -> np.ndarray:
    """Mud blotches painted on the tag; returns where they are opaque (hide ink)."""
    hgt, wid = body.shape
    a: np.ndarray = np.zeros((hgt, wid), np.float32)
    for _ in range(int(rng.integers(1, 6))):
        c = (int(rng.integers(0, wid)), int(rng.integers(0, hgt)))
        ax = (int(rng.uniform(0.04, 0.25) * wid), int(rng.uniform(0.04, 0.2) * hgt))
        cv2.ellipse(a, c, ax, rng.uniform(0, 180), 0, 360, float(rng.uniform(0.3, 1.0)), -1)
    a = cv2.GaussianBlur(a, (0, 0), max(1.0, 0.02 * wid)) * (body > 0)
    mud = np.array([rng.uniform(20, 60), rng.uniform(45, 90), rng.uniform(70, 120)], np.float32)
    img[:] = img * (1 - a[..., None]) + mud * a[..., None]
    return np.where(a > 0.6, 255, 0).astype(np.uint8)
