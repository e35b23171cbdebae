"""White balance from the reference card in view.

The card (print it, or buy one close to it): a black frame, 14 % of the card's
height wide, around either a white field (``white``) or six squares in two rows
of three (``colour``: white, mid grey, dark grey; red, green, blue). Landscape
3:2 outside; portrait and upside down are found too.

``find_card`` looks for it: quadrilaterals among the image's edges, each tried
as the card's outer edge and as the inner edge of its frame, warped flat and
kept when the frame is dark against a bright inside. ``balance`` then gives
per-channel gains that map the card's neutral squares to their printed
reflectance, so the frame becomes linear reflectance (white card = 0.85):
the light's colour and its intensity are undone together.

Without a card it falls back to a grey-world guess on the whole frame, which
is wrong whenever the scene is not grey on average (and it says so:
``Balance.found`` is False).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# The printed card, linear reflectance (RGB). agent/sources/camera/synth/milkcup.py
# draws the same card; tests/test_milk.py checks the two agree.
CARD_WHITE = 0.85
CARD_NEUTRALS = (0.85, 0.40, 0.16)
CARD_BLACK = 0.035
CARD_COLOURS = ((0.55, 0.06, 0.05), (0.08, 0.40, 0.10), (0.05, 0.10, 0.50))
CARD_BORDER = 0.14  # frame width / card height (the short side)
CARD_MARK = (0.08, 0.22)  # white card: black square in a corner, offset and side / field height
CARD_ASPECT = 1.5

_W, _H = 150, 100  # the flattened card, outer edge, landscape
_BW = round(CARD_BORDER * _H)
CLIP_8BIT = 250  # a channel at or above this is clipped: no use for balance

_LUT = np.array([(v / 255) / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4
                 for v in range(256)], np.float32)


def to_linear(bgr: np.ndarray) -> np.ndarray:
    """uint8 sRGB BGR to linear float32."""
    return _LUT[bgr]


@dataclass
class Balance:
    """Per-channel gains (B, G, R) from camera linear values to reflectance."""

    gains: np.ndarray
    found: bool
    layout: str  # white, colour, or none (grey world)
    corners: np.ndarray | None = None  # the card's outer corners in the frame (4 x 2)
    clipped: float = 0.0  # share of the card's white that was clipped
    spread: float = 0.0  # disagreement of the neutral squares (0 = perfectly neutral)
    notes: list[str] = field(default_factory=list)

    def details(self) -> dict[str, object]:
        return {
            "patch_found": self.found,
            "patch_layout": self.layout,
            "wb_gains_bgr": [round(float(g), 4) for g in self.gains],
            "patch_corners": None if self.corners is None
            else [[round(float(x), 1), round(float(y), 1)] for x, y in self.corners],
            "patch_clipped": round(self.clipped, 3),
            "patch_spread": round(self.spread, 4),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def _order(quad: np.ndarray) -> np.ndarray:
    """Corners clockwise from top-left (image coordinates)."""
    c = quad.mean(axis=0)
    ang = np.arctan2(quad[:, 1] - c[1], quad[:, 0] - c[0])
    q = quad[np.argsort(ang)]
    start = int(np.argmin(q.sum(axis=1)))
    return np.roll(q, -start, axis=0)


def _landscape(quad: np.ndarray) -> np.ndarray:
    """Rotate the corner order so the first side is a long one."""
    q = _order(quad)
    top = np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])
    side = np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])
    return q if top >= side else np.roll(q, -1, axis=0)


def _outer_from_inner(inner: np.ndarray) -> np.ndarray:
    """Outer corners of the card whose frame's inner edge is ``inner`` (landscape order)."""
    iw, ih = _W - 2 * _BW, _H - 2 * _BW
    src = np.array([[0, 0], [iw, 0], [iw, ih], [0, ih]], np.float32)
    m = cv2.getPerspectiveTransform(src, inner.astype(np.float32))
    out = np.array([[-_BW, -_BW], [iw + _BW, -_BW], [iw + _BW, ih + _BW], [-_BW, ih + _BW]],
                   np.float32)
    return cv2.perspectiveTransform(out[None], m)[0]


def _flatten(lin: np.ndarray, outer: np.ndarray) -> np.ndarray:
    dst = np.array([[0, 0], [_W, 0], [_W, _H], [0, _H]], np.float32)
    m = cv2.getPerspectiveTransform(outer.astype(np.float32), dst)
    return cv2.warpPerspective(lin, m, (_W, _H), flags=cv2.INTER_AREA)


def _lum(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.0722 + x[..., 1] * 0.7152 + x[..., 2] * 0.2126


def _ring_dark(flat: np.ndarray) -> float | None:
    """The frame's brightness when it is evenly dark against the inside, else None."""
    lum = _lum(flat)
    m = 2
    ring = np.concatenate([lum[m:_BW - m, m:-m].ravel(), lum[-_BW + m:-m, m:-m].ravel(),
                           lum[m:-m, m:_BW - m].ravel(), lum[m:-m, -_BW + m:-m].ravel()])
    inside = lum[_BW + 2:-_BW - 2, _BW + 2:-_BW - 2]
    dark = float(np.percentile(ring, 90)) + 1e-4
    if float(np.percentile(inside, 90)) < 4.0 * dark:
        return None
    return dark


def _mark_box(corner: str) -> tuple[slice, slice]:
    ih = _H - 2 * _BW
    mo, ms = round(CARD_MARK[0] * ih), round(CARD_MARK[1] * ih)
    a, b = _BW + mo + 2, _BW + mo + ms - 2
    if corner == "tl":
        return slice(a, b), slice(a, b)
    return slice(_H - b, _H - a), slice(_W - b, _W - a)


def _white_field(flat: np.ndarray, dark: float) -> tuple[np.ndarray, str] | None:
    """(mask of the usable white field, mark corner) when ``flat`` is the white card."""
    lum = _lum(flat)
    field = np.zeros(lum.shape, bool)
    field[_BW + 3:-_BW - 3, _BW + 3:-_BW - 3] = True
    for corner in ("tl", "br"):
        ys, xs = _mark_box(corner)
        other = _mark_box("br" if corner == "tl" else "tl")
        mark, opposite = float(np.median(lum[ys, xs])), float(np.median(lum[other]))
        if mark < 2.5 * dark and opposite > 4.0 * mark:
            pad = np.zeros(lum.shape, bool)
            pad[ys.start - 5:ys.stop + 5, xs.start - 5:xs.stop + 5] = True
            use = field & ~pad
            vals = lum[use]
            # evenly white (a shadow may cover part of it): most of it near its top
            if float(np.mean(vals > 0.6 * np.percentile(vals, 90))) > 0.6:
                return use, corner
    return None


def _cells(flat: np.ndarray) -> np.ndarray:
    """Median linear BGR of the six squares (2 rows x 3), centres only."""
    cw, ch = (_W - 2 * _BW) / 3, (_H - 2 * _BW) / 2
    out = np.zeros((2, 3, 3), np.float32)
    for r in range(2):
        for c in range(3):
            ya, yb = int(_BW + (r + 0.25) * ch), int(_BW + (r + 0.75) * ch)
            xa, xb = int(_BW + (c + 0.25) * cw), int(_BW + (c + 0.75) * cw)
            out[r, c] = np.median(flat[ya:yb, xa:xb].reshape(-1, 3), axis=0)
    return out


def _chroma(bgr: np.ndarray) -> np.ndarray:
    s = bgr.sum(axis=-1, keepdims=True) + 1e-6
    return (bgr / s)[..., :2]


def _colour_cells(flat: np.ndarray) -> tuple[np.ndarray, bool, float] | None:
    """(neutral squares white-grey-dark, upside down?, chroma spread of the neutrals)
    when ``flat`` is the colour card."""
    cells = _cells(flat)
    chroma = _chroma(cells)
    spread = [float(np.ptp(chroma[r], axis=0).max()) for r in range(2)]
    n = int(np.argmin(spread))
    row, colours = cells[n], cells[1 - n]
    lum = _lum(row)
    flipped = n == 1
    if flipped:
        row, lum = row[::-1], lum[::-1]
    if not (lum[0] > 1.4 * lum[1] and lum[1] > 1.4 * lum[2]):
        return None
    if spread[n] > 0.06 or spread[1 - n] < 0.15:
        return None
    # the colour row, balanced by the neutrals, must be red, green, blue in that order
    gains = row[0] + 1e-6
    bal = colours[::-1] if flipped else colours
    bal = bal / gains
    if not (int(np.argmax(bal[0])) == 2 and int(np.argmax(bal[1])) == 1
            and int(np.argmax(bal[2])) == 0):
        return None
    return row, flipped, spread[n]


def find_card(lin: np.ndarray, max_side: int = 640) -> tuple[np.ndarray, np.ndarray] | None:
    """(outer corners 4 x 2 in frame pixels, flattened card 100 x 150 x 3) or None."""
    h, w = lin.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(lin, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else lin
    gray = (np.sqrt(np.clip(_lum(small), 0, 1)) * 255).astype(np.uint8)
    edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 30, 90)
    edges = cv2.dilate(edges, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    area_min = 0.002 * small.shape[0] * small.shape[1]
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for cnt in contours:
        if cv2.contourArea(cnt) < area_min:
            continue
        hull = cv2.convexHull(cnt)  # the mark may notch the frame's inner edge
        peri = cv2.arcLength(hull, True)
        quad = cv2.approxPolyDP(hull, 0.04 * peri, True)
        if len(quad) != 4 or not cv2.isContourConvex(quad):
            continue
        q = _landscape(quad.reshape(4, 2).astype(np.float32))
        for outer in (q, _outer_from_inner(q)):
            full = outer / scale
            if (full[:, 0].min() < -2 or full[:, 1].min() < -2 or full[:, 0].max() > w + 2
                    or full[:, 1].max() > h + 2):
                continue
            flat = _flatten(lin, full)
            dark = _ring_dark(flat)
            if dark is None:
                continue
            if _white_field(flat, dark) is None and _colour_cells(flat) is None:
                continue
            score = float(np.percentile(_lum(flat[_BW:-_BW, _BW:-_BW]), 90)) / dark
            if best is None or score > best[0]:
                best = (score, full, flat)
    if best is None:
        return None
    return best[1], best[2]


def balance(bgr: np.ndarray, lin: np.ndarray | None = None) -> Balance:
    """Gains from the card in ``bgr`` (uint8), or a grey-world guess without one."""
    lin = to_linear(bgr) if lin is None else lin
    found = find_card(lin)
    if found is None:
        mean = lin.reshape(-1, 3).mean(axis=0) + 1e-6
        gains = mean.mean() / mean
        top = float(np.percentile(_lum(lin * gains), 99)) + 1e-6
        return Balance(gains * (CARD_WHITE / top), False, "none",
                       notes=["no reference card found: grey-world balance, colour unreliable"])
    corners, flat = found
    flat8 = _flatten(bgr.astype(np.float32), corners)
    dark = _ring_dark(flat) or 1e-3
    white = _white_field(flat, dark)
    if white is not None:
        use_mask, corner = white
        if corner == "br":
            corners = np.roll(corners, 2, axis=0)
        inside, inside8 = flat[use_mask], flat8[use_mask]
        ok = inside8.max(axis=1) < CLIP_8BIT
        clipped = 1.0 - float(ok.mean())
        use = inside[ok] if ok.sum() > 20 else inside
        lum = _lum(use)
        bright = use[lum >= np.percentile(lum, 50)]  # a shadow on part of the card is ignored
        ref = np.median(bright, axis=0) + 1e-6
        spread = float(np.ptp(_chroma(use[lum >= np.percentile(lum, 50)]), axis=0).max())
        return Balance(CARD_WHITE / ref, True, "white", corners, clipped, spread)
    cells = _colour_cells(flat)
    assert cells is not None  # find_card kept it for one of the two layouts
    row, flipped, spread = cells
    if flipped:
        corners = np.roll(corners, 2, axis=0)
    ref_n = np.array(CARD_NEUTRALS, np.float32)
    gains = (row * ref_n[:, None]).sum(axis=0) / ((row ** 2).sum(axis=0) + 1e-9)
    clipped = float((flat8[_BW:-_BW, _BW:-_BW].max(axis=-1) >= CLIP_8BIT).mean())
    return Balance(gains.astype(np.float32), True, "colour", corners, clipped, spread)
