"""Find the milk in the cup and describe it with a fixed-length feature vector.

Everything here works on the white-balanced frame (linear reflectance, see
``balance``), scaled so its longest side is ``WORK_SIDE`` px.

``find_milk`` smooths away small bright and dark spots (highlights, foam
bubbles, flakes: a grey opening and closing of the lightness, a median of the
colour), then gathers candidate regions two ways: connected parts above or
below each step of a lightness ladder, and regions grown from seeds on a grid
(the connected pixels within a colour tolerance of the seed, lightness looser
than colour so a shade does not cut the milk; this finds a cup that no
lightness threshold separates from its surround). It keeps the large, convex,
smooth, thick (a rail or a hose is thin) ones that touch at most one side of
the frame and do not cover the reference card, and picks the one most like a
cup of milk (big, convex, smooth, compact, bright enough, with a rim, near the
middle). ``features`` then measures, on the
region shrunk away from its rim:

- colour in CIE Lab: median and 10th/90th percentiles of L, a, b, chroma and
  hue (blood: a up; colostrum: b up; watery: b down, L down);
- translucency: how much of the background pattern shows through (band-pass
  contrast and edge density inside), and lightness against the cup's surround;
- texture: small bright blobs (white top-hat) per area and their colour
  against the milk (flakes and clots), in the centre and near the rim (foam
  gathers at the rim), and the local variance;
- how sure the balance is (card found, clipped share).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE = 320  # features are measured at this size
DETECT_SIDE = 160  # the cup is looked for at this size
MAX_SHARE = 0.7  # the largest share of the frame the milk may cover (a cropped ROI)
_GROW_TOL = ((8.0, 3.0, 3.0), (13.0, 5.0, 5.0), (20.0, 8.0, 8.0))  # L, a, b
FEATURE_NAMES: tuple[str, ...] = (
    "L_med", "a_med", "b_med", "L_p10", "L_p90", "a_p10", "a_p90", "b_p10", "b_p90",
    "chroma_med", "hue_cos", "hue_sin", "L_iqr",
    "bandpass_std", "edge_density", "L_vs_surround", "dark_share",
    "blobs_centre", "blobs_rim", "dark_spots_centre", "dark_spots_rim", "blob_area", "blob_b_minus_milk", "blob_L_minus_milk",
    "local_std_med", "local_std_p90",
    "card_found", "card_clipped",
)

_M = np.array([[0.4124564, 0.3575761, 0.1804375],
               [0.2126729, 0.7151522, 0.0721750],
               [0.0193339, 0.1191920, 0.9503041]], np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)


def lab(lin_bgr: np.ndarray) -> np.ndarray:
    """Linear BGR (..., 3) reflectance to CIE Lab (D65), float32."""
    rgb = lin_bgr[..., ::-1].reshape(-1, 3).astype(np.float32)
    xyz = np.clip(rgb, 0, None) @ _M.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    out = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])],
                   axis=1)
    return out.reshape(lin_bgr.shape).astype(np.float32)


@dataclass
class MilkRegion:
    """The milk found in the work image: its mask, and the inner part used."""

    mask: np.ndarray  # uint8 0/1, work size
    inner: np.ndarray  # uint8 0/1: the mask away from the rim
    box: tuple[int, int, int, int]  # x, y, w, h in work pixels
    score: float


def _lightness(work: np.ndarray) -> np.ndarray:
    lum = work[..., 0] * 0.0722 + work[..., 1] * 0.7152 + work[..., 2] * 0.2126
    return (np.sqrt(np.clip(lum / 0.9, 0, 1)) * 255).astype(np.uint8)


_THIN = 2.5  # a region whose widest inscribed circle is thinner (px at DETECT_SIDE) is a rail


def _consider(mask: np.ndarray, labs: np.ndarray, card_mask: np.ndarray | None,
              area: int) -> MilkRegion | None:
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    cnts, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cnt = max(cnts, key=cv2.contourArea)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, [cnt], -1, 1, -1)
    a = float(filled.sum())
    solidity = a / max(1.0, cv2.contourArea(cv2.convexHull(cnt)))
    if solidity < 0.85:
        return None
    if card_mask is not None and float((filled & card_mask).sum()) > 0.2 * a:
        return None
    # thickness: the widest inscribed circle; rails, hoses and edges are thin
    r_in = float(cv2.distanceTransform(cv2.copyMakeBorder(filled, 1, 1, 1, 1,
                                                          cv2.BORDER_CONSTANT, value=0),
                                       cv2.DIST_L2, 3).max())
    if r_in < _THIN:
        return None
    region_lab = labs[filled > 0]
    med = np.median(region_lab, axis=0)
    if med[0] < 35 or not (-30 < med[1] < 80 and -40 < med[2] < 80):
        return None
    std = float(np.median(np.abs(region_lab[:, 0] - med[0])))
    smooth = 1.0 / (1.0 + std / 4.0)
    # a cup has a rim: the lightness changes across the region's edge
    k = np.ones((3, 3), np.uint8)
    outside = cv2.dilate(filled, k, iterations=2) - filled
    inside = filled - cv2.erode(filled, k, iterations=2)
    if not outside.any() or not inside.any():
        return None
    rim = abs(float(np.median(labs[outside > 0, 0])) - float(np.median(labs[inside > 0, 0])))
    # the camera is aimed at the cup: prefer regions near the middle of the frame
    m = cv2.moments(filled, binaryImage=True)
    h, w = filled.shape
    dx, dy = m["m10"] / m["m00"] / w - 0.5, m["m01"] / m["m00"] / h - 0.5
    centred = float(np.exp(-(dx * dx + dy * dy) / (2 * 0.25 ** 2)))
    # compact: inscribed radius against the size (a disc 0.56, a 1:4 bar 0.25)
    compact = min(1.0, r_in / np.sqrt(a) / 0.2)
    score = (a / area * solidity ** 4 * smooth * min(1.0, med[0] / 50)
             * (0.3 + min(1.0, rim / 15)) * centred * compact)
    x, y, bw, bh = cv2.boundingRect(cnt)
    return MilkRegion(filled, filled, (x, y, bw, bh), score)


def _side_ok(x: int, y: int, bw: int, bh: int, w: int, h: int) -> bool:
    """A long sight glass may run out of the picture on one side; a region
    touching two or more sides is background."""
    return (x <= 1) + (y <= 1) + (x + bw >= w - 1) + (y + bh >= h - 1) <= 1


def _ladder(gray: np.ndarray) -> list[np.ndarray]:
    """Candidate regions: connected parts above or below each step of a lightness ladder."""
    h, w = gray.shape
    area = h * w
    out = []
    for t in range(10, 250, 14):
        for binary in (gray > t, gray <= t):
            n, lbl, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8),
                                                                connectivity=4)
            for i in range(1, n):
                x, y, bw, bh, a = (int(v) for v in stats[i])
                if not 0.01 * area <= a <= MAX_SHARE * area or a < 0.5 * bw * bh:
                    continue
                if _side_ok(x, y, bw, bh, w, h):
                    out.append((lbl == i).astype(np.uint8))
    return out


def _grown(labf: np.ndarray) -> list[np.ndarray]:
    """Candidate regions grown from seeds on a grid: the connected pixels within a
    colour tolerance of the seed (lightness looser than colour, for shading), for
    a few tolerances. Finds a cup that no lightness threshold separates from its
    surround (grey-blue watery milk on a grey-blue wall)."""
    h, w = labf.shape[:2]
    area = h * w
    light = labf[..., 0]
    mean = cv2.blur(light, (5, 5))
    local = np.sqrt(np.clip(cv2.blur(light * light, (5, 5)) - mean * mean, 0, None))
    taken = np.zeros((h + 2, w + 2), np.uint8)
    out = []
    for fy in np.linspace(0.15, 0.85, 7):
        for fx in np.linspace(0.12, 0.88, 9):
            sx, sy = int(fx * w), int(fy * h)
            if local[sy, sx] > 3.0 or taken[sy + 1, sx + 1]:
                continue
            for tol in _GROW_TOL:
                ff = np.zeros((h + 2, w + 2), np.uint8)
                _n, _img, _ff, (x, y, bw, bh) = cv2.floodFill(
                    labf, ff, (sx, sy), 0, tol, tol,
                    4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
                a = int(ff.sum())
                if a > MAX_SHARE * area:
                    break
                if a < 0.01 * area or not _side_ok(x, y, bw, bh, w, h):
                    continue
                taken |= ff
                out.append(np.ascontiguousarray(ff[1:-1, 1:-1]))
    return out


def find_milk(work: np.ndarray, card_mask: np.ndarray | None = None) -> MilkRegion | None:
    """The region of the balanced ``work`` image most like a cup of milk, or None."""
    full_h, full_w = work.shape[:2]
    f = min(1.0, DETECT_SIDE / max(full_h, full_w))
    small = cv2.resize(work, (int(full_w * f), int(full_h * f)), interpolation=cv2.INTER_AREA)
    if card_mask is not None:
        card_mask = cv2.resize(card_mask, small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    h, w = small.shape[:2]
    area = h * w
    labs = lab(small)
    # small bright and dark spots (highlights, foam bubbles, flakes) would break the
    # milk up: open then close the lightness, median the colour
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    light8 = _lightness(small)
    light8 = cv2.morphologyEx(cv2.morphologyEx(light8, cv2.MORPH_OPEN, disc),
                              cv2.MORPH_CLOSE, disc)
    gray = cv2.GaussianBlur(light8, (0, 0), 1.0)
    labf = cv2.medianBlur(labs, 5)
    labf[..., 0] = cv2.morphologyEx(cv2.morphologyEx(labf[..., 0], cv2.MORPH_OPEN, disc),
                                    cv2.MORPH_CLOSE, disc)
    best: MilkRegion | None = None
    seen: list[tuple[int, int, int, int]] = []
    for cand in [*_ladder(gray), *_grown(labf)]:
        x, y, bw, bh = cv2.boundingRect(cand)
        if any(abs(x - s[0]) + abs(y - s[1]) + abs(bw - s[2]) + abs(bh - s[3]) < 6
               for s in seen):
            continue
        seen.append((x, y, bw, bh))
        region = _consider(cand, labs, card_mask, area)
        if region is not None and (best is None or region.score > best.score):
            best = region
    if best is None:
        return None
    mask = cv2.resize(best.mask * 255, (full_w, full_h), interpolation=cv2.INTER_LINEAR)
    best.mask = (mask > 127).astype(np.uint8)
    x, y, bw, bh = cv2.boundingRect(best.mask)
    best.box = (x, y, bw, bh)
    x, y, bw, bh = best.box
    shrink = max(2, int(0.12 * min(bw, bh)))
    dist = cv2.distanceTransform(best.mask, cv2.DIST_L2, 3)
    inner = (dist > shrink).astype(np.uint8)
    if inner.sum() < 30:
        inner = (dist > 1).astype(np.uint8)
    best.inner = inner
    return best


def _count_spots(spots: np.ndarray, depth: np.ndarray) -> tuple[int, int]:
    """Spots of 2 px or more, (in the centre, near the rim) by depth in the region."""
    n, _lbl, stats, _ = cv2.connectedComponentsWithStats(spots, connectivity=8)
    centre = rim = 0
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 2:
            continue
        cy = stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] // 2
        cx = stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] // 2
        if depth[cy, cx] > 0.45:
            centre += 1
        else:
            rim += 1
    return centre, rim


def features(work: np.ndarray, region: MilkRegion, card_found: bool,
             card_clipped: float) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES``) of the milk in ``region``."""
    inner = region.inner > 0
    labs = lab(work)
    px = labs[inner]
    # drop specular highlights: far above the milk's own lightness
    lmed = float(np.median(px[:, 0]))
    keep = px[:, 0] < lmed + 12
    px = px[keep] if keep.sum() > 20 else px
    lum_l, a, b = px[:, 0], px[:, 1], px[:, 2]
    p = np.percentile
    a_med, b_med = float(np.median(a)), float(np.median(b))
    chroma = float(np.hypot(a_med, b_med))
    hue = float(np.arctan2(b_med, a_med))

    light = labs[..., 0]
    band = cv2.GaussianBlur(light, (0, 0), 1.0) - cv2.GaussianBlur(light, (0, 0), 4.0)
    bandpass_std = float(np.std(band[inner]))
    gray8 = np.clip(light * 2.55, 0, 255).astype(np.uint8)
    edges = cv2.Canny(gray8, 20, 50) > 0
    edge_density = float(edges[inner].mean())
    ring = cv2.dilate(region.mask, np.ones((15, 15), np.uint8)) - cv2.dilate(
        region.mask, np.ones((5, 5), np.uint8))
    surround = light[ring > 0]
    l_vs = float(np.median(lum_l) - (np.median(surround) if surround.size else 50.0))
    dark_share = float((lum_l < lmed - 15).mean())

    # flakes and clots: small bright blobs (white top-hat of the lightness)
    _x, _y, bw, bh = region.box
    k = max(3, int(0.08 * min(bw, bh))) | 1
    tophat = cv2.morphologyEx(light, cv2.MORPH_TOPHAT,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    spots = ((tophat > 4.0) & inner & (light < lmed + 12)).astype(np.uint8)
    dist = cv2.distanceTransform(region.mask, cv2.DIST_L2, 3)
    depth = dist / max(1.0, float(dist.max()))
    centre, rim = _count_spots(spots, depth)
    # flake edges and lumps' shadows: small dark spots (black top-hat); foam rims are light
    blackhat = cv2.morphologyEx(light, cv2.MORPH_BLACKHAT,
                                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    dark_centre, dark_rim = _count_spots(((blackhat > 5.0) & inner).astype(np.uint8), depth)
    inner_area = float(inner.sum())
    blob_px = spots.astype(bool)
    if blob_px.sum() >= 3:
        blob_lab = labs[blob_px]
        blob_b = float(np.median(blob_lab[:, 2]) - b_med)
        blob_l = float(np.median(blob_lab[:, 0]) - lmed)
    else:
        blob_b = blob_l = 0.0
    mean = cv2.blur(light, (5, 5))
    var = cv2.blur(light * light, (5, 5)) - mean * mean
    local = np.sqrt(np.clip(var[inner], 0, None))

    vec = [
        lmed, a_med, b_med, p(lum_l, 10), p(lum_l, 90), p(a, 10), p(a, 90), p(b, 10), p(b, 90),
        chroma, np.cos(hue), np.sin(hue), p(lum_l, 75) - p(lum_l, 25),
        bandpass_std, edge_density, l_vs, dark_share,
        1000 * centre / inner_area, 1000 * rim / inner_area, 1000 * dark_centre / inner_area,
        1000 * dark_rim / inner_area, float(blob_px.mean()) * 100,
        blob_b, blob_l, float(np.median(local)), float(np.percentile(local, 90)),
        float(card_found), card_clipped,
    ]
    return np.asarray(vec, np.float32)
