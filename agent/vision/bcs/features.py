"""From a cow's mask (and her colour or depth frame) to a fixed feature vector.

The cow is turned so her spine runs left to right with the rump at the left,
and measured in units of her own median width W (so camera height and the
cow's size drop out). What a technician looks at becomes numbers:

shape    the outline around the rump from above: half-width every 0.1 W from
         the pins forward (hooks stand out and the thurl between hooks and
         pins caves in on a thin cow; a fat one is rounded and square), the
         rear edge across the pins and tailhead, the outline's angularity
         (turning angles at the scale of a hip bone), convexity deficiency;
shading  colour frames: the light across the back at the rump (hollows either
         side of the tailhead and the spine ridge cast shading), gradient and
         Laplacian energy in the rump region, normalised inside the cow so
         coat brightness and exposure drop out;
texture  colour frames: histograms of gradient orientation in cells over the
         rump region, turned with the cow (what a small CNN's first layers
         see; the fit's regularisation decides how much of it to trust);
depth    depth frames: height relief across and along the back (spine ridge,
         hook and pin prominence, rump hollows), relative to the back's height.

The layout is fixed and versioned (``FEATURES_VERSION``); a model names the
version and the groups it was fitted on in its input tensor's name, so a
model is never fed features of another layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agent.vision.bcs.segment import NoCow, Segmentation, resize_like

FEATURES_VERSION = 1
GROUPS: tuple[str, ...] = ("shape", "shading", "texture", "depth")

PROFILE_U = np.round(np.arange(0.0, 3.21, 0.1), 2)  # positions from the rear, in W
REAR_V = np.linspace(-0.45, 0.45, 10)  # across the rear edge, in W
SHADE_U = (0.4, 0.9, 1.5, 2.2)  # cross-sections for shading
DEPTH_U = (0.3, 0.7, 1.1, 1.5, 2.0, 2.6)  # cross-sections for depth relief
ACROSS = np.linspace(-0.4, 0.4, 9)  # points across a cross-section, in W
RUMP_U = 2.6  # the rump region ends here (W from the rear)

REGION_U = (1.2, 1.6, 2.0, 2.5, 3.0)  # rear regions whose convexity is measured, in W
N_SHAPE = len(PROFILE_U) + 2 * len(PROFILE_U) // 3 + len(REAR_V) + 8 + 2 * len(REGION_U)
N_SHADING = len(SHADE_U) * len(ACROSS) + 4
N_DEPTH = len(DEPTH_U) * len(ACROSS) + 4
TEXTURE_CELLS = (8, 4)  # along x across the rump region
TEXTURE_BINS = 8
N_TEXTURE = TEXTURE_CELLS[0] * TEXTURE_CELLS[1] * TEXTURE_BINS
SIZES = {"shape": N_SHAPE, "shading": N_SHADING, "texture": N_TEXTURE, "depth": N_DEPTH}


def layout_name(groups: tuple[str, ...]) -> str:
    """The model input name for a feature layout: ``bcs_v1_shape_shading``."""
    return f"bcs_v{FEATURES_VERSION}_" + "_".join(g for g in GROUPS if g in groups)


def parse_layout(name: str) -> tuple[str, ...]:
    """The groups a model input name asks for; ``ValueError`` if it is not ours."""
    prefix = f"bcs_v{FEATURES_VERSION}_"
    if not name.startswith(prefix):
        raise ValueError(f"model input {name!r} is not a BCS feature layout of version "
                         f"{FEATURES_VERSION} (expected a name starting {prefix!r}); fit the "
                         "model again with this version of dairy-edge")
    groups = tuple(name[len(prefix):].split("_"))
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise ValueError(f"model input {name!r} names unknown feature groups {unknown}")
    return groups


@dataclass(frozen=True)
class BackFeatures:
    values: dict[str, np.ndarray]  # group -> float32 vector; depth absent without depth
    quality: float  # 0-1: segmentation quality, less when the rump is cut off
    width_px: float  # the cow's median width in frame pixels
    rear: str  # which side of the frame the rump was at: left/right/top/bottom
    angle_deg: float  # the spine's angle in the frame

    def vector(self, groups: tuple[str, ...]) -> np.ndarray:
        missing = [g for g in groups if g not in self.values]
        if missing:
            raise NoCow(f"the model needs {', '.join(missing)} features and this frame has "
                        "none (a depth model needs depth frames)")
        return np.concatenate([self.values[g] for g in GROUPS if g in groups]).astype(np.float32)


@dataclass
class _Canon:
    """The cow turned spine-horizontal, rump at column 0."""

    mask: np.ndarray  # bool
    matrix: np.ndarray  # 2x3 affine, work pixels -> canonical
    size: tuple[int, int]  # (w, h) of the canonical canvas
    x0: int  # first column of the cow (the rear)
    mid: np.ndarray  # midline row per column (nan outside the cow)
    half: np.ndarray  # (2, ncols): upper and lower half-width per column
    width: float  # median width W in work pixels
    rear: str
    angle: float
    rear_cut: bool  # the frame's edge cuts the cow at the rump


def _principal_angle(mask: np.ndarray) -> tuple[float, tuple[float, float]]:
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    cov = np.cov(np.stack([xs - cx, ys - cy]))
    evals, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, int(np.argmax(evals))]
    return float(np.degrees(np.arctan2(vy, vx))), (cx, cy)


def _columns(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: top row, bottom row (nan where empty) and the filled count."""
    h = mask.shape[0]
    rows = np.arange(h)[:, None]
    any_ = mask.any(axis=0)
    top = np.where(any_, np.argmax(mask, axis=0), np.nan).astype(np.float64)
    bottom = np.where(any_, h - 1 - np.argmax(mask[::-1], axis=0), np.nan).astype(np.float64)
    count = (mask & (rows >= 0)).sum(axis=0)
    return top, bottom, count


def _canonical(seg: Segmentation, rear_hint: str | None) -> _Canon:
    mask = seg.mask
    angle, (cx, cy) = _principal_angle(mask)
    h, w = mask.shape
    side = int(np.ceil(np.hypot(h, w))) + 4
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    matrix[0, 2] += side / 2 - cx
    matrix[1, 2] += side / 2 - cy
    turned = cv2.warpAffine(mask.astype(np.uint8), matrix, (side, side),
                            flags=cv2.INTER_NEAREST) > 0
    top, bottom, _ = _columns(turned)
    cols = np.nonzero(~np.isnan(top))[0]
    if len(cols) < 10:
        raise NoCow("the cow's outline is too small to measure")
    widths = (bottom - top + 1)[cols]
    width = float(np.median(widths))
    # Which end is the rump? A cow cut by the frame is cut at the front (the
    # camera is aimed at the rump); else the rump widens within a short way of
    # its end (tail root, pins, hooks) while the head end stays narrow for
    # about a body width (head and neck): the end that widens sooner is the rear.
    def run_in(ws: np.ndarray) -> int:
        wide = np.nonzero(ws >= 0.7 * width)[0]
        return int(wide[0]) if len(wide) else len(ws)
    rear_left = run_in(widths) <= run_in(widths[::-1])
    # Where the frame edge cuts the cow: map the canonical ends back to frame sides.
    inv = cv2.invertAffineTransform(matrix)
    ends = []
    for c in (cols[0], cols[-1]):
        px, py = inv @ np.array([c, (top[c] + bottom[c]) / 2, 1.0])
        ends.append((px, py))
    def at_edge(p: tuple[float, float]) -> bool:
        m = 3
        return p[0] < m or p[1] < m or p[0] > w - 1 - m or p[1] > h - 1 - m
    cut_left, cut_right = at_edge(ends[0]), at_edge(ends[1])
    if cut_left != cut_right:
        rear_left = cut_right  # the cut end is the front
    if abs(ends[0][0] - ends[1][0]) < abs(ends[0][1] - ends[1][1]):  # mostly vertical
        first_is_low = ends[0][1] < ends[1][1]
        names = ("top", "bottom")
    else:
        first_is_low = ends[0][0] < ends[1][0]
        names = ("left", "right")
    rear_is_low = first_is_low == rear_left
    frame_side = names[0] if rear_is_low else names[1]
    # A hint naming a side along the spine (the camera's mounting) overrides.
    if rear_hint in names and rear_hint != frame_side:
        rear_left = not rear_left
        frame_side = rear_hint
    rear_cut = cut_left if rear_left else cut_right
    if not rear_left:  # flip so the rump is at column 0
        flip = np.array([[-1.0, 0.0, side - 1.0], [0.0, 1.0, 0.0]])
        matrix = flip @ np.vstack([matrix, [0, 0, 1]])
        turned = turned[:, ::-1]
        top, bottom = top[::-1], bottom[::-1]
        cols = np.sort(side - 1 - cols)
    mid = (top + bottom) / 2
    # A bent cow: the midline is smoothed and the half-widths measured from it.
    valid = ~np.isnan(mid)
    smooth = mid.copy()
    k = max(3, int(width * 0.6)) | 1
    filled = np.interp(np.arange(side), np.nonzero(valid)[0], mid[valid])
    smooth = np.convolve(np.pad(filled, k // 2, mode="edge"), np.ones(k) / k, "valid")
    smooth[~valid] = np.nan
    half = np.stack([smooth - top, bottom - smooth])
    return _Canon(turned, matrix, (side, side), int(cols[0]), smooth, half, width,
                  frame_side, angle if rear_left else angle + 180.0, rear_cut)


def _at(profile: np.ndarray, x0: int, width: float, u: np.ndarray) -> np.ndarray:
    """``profile`` (per canonical column) at positions ``u`` W from the rear."""
    xs = x0 + np.asarray(u) * width
    idx = np.arange(len(profile))
    ok = ~np.isnan(profile)
    if ok.sum() < 2:
        return np.zeros(len(xs))
    vals = np.interp(xs, idx[ok], profile[ok], left=0.0, right=0.0)
    return np.asarray(vals, dtype=np.float64)


def _turning(contour: np.ndarray, step: int) -> np.ndarray:
    """Turning angle (radians, signed) at each contour point over ``step`` points."""
    p = contour.reshape(-1, 2).astype(np.float64)
    a = np.roll(p, step, axis=0) - p
    b = np.roll(p, -step, axis=0) - p
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    dot = (a * b).sum(axis=1)
    return np.pi - np.abs(np.arctan2(cross, dot))


def _shape(c: _Canon) -> np.ndarray:
    w = c.width
    upper = _at(c.half[0], c.x0, w, PROFILE_U) / w
    lower = _at(c.half[1], c.x0, w, PROFILE_U) / w
    mean = (upper + lower) / 2
    # Coarser left/right detail: asymmetry, and the narrower side's profile (a
    # cast shadow or a rail merged into the outline widens one side only).
    coarse = slice(0, len(PROFILE_U), 3)
    asym = np.abs(upper - lower)[coarse]
    sharper = np.minimum(upper, lower)[coarse] * 2
    # The rear edge across the pins and tailhead: first cow column per row.
    rows = np.round(np.nanmedian(c.mid[c.x0:c.x0 + int(2 * w)]) + REAR_V * w).astype(int)
    rows = np.clip(rows, 0, c.mask.shape[0] - 1)
    region = c.mask[:, c.x0:c.x0 + int(RUMP_U * w) + 1]
    first = np.array([np.argmax(region[r]) if region[r].any() else RUMP_U * w for r in rows])
    rear = first / w
    # Angularity of the rump's outline and its convexity deficiency.
    rump = np.zeros_like(c.mask, dtype=np.uint8)
    rump[:, c.x0:c.x0 + int(RUMP_U * w) + 1] = c.mask[:, c.x0:c.x0 + int(RUMP_U * w) + 1]
    contours, _ = cv2.findContours(rump, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise NoCow("no rump outline")
    cnt = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(cnt)
    hull = cv2.contourArea(cv2.convexHull(cnt))
    deficiency = (hull - area) / hull if hull > 0 else 0.0
    step = max(2, int(w * 0.12))
    turn = _turning(cnt, step) if len(cnt) > 2 * step + 2 else np.zeros(1)
    # Second differences of the profile: the hooks' and pins' corners.
    d2 = np.abs(np.diff(mean[:int(RUMP_U * 10) + 1], 2))
    hooks = float(mean[5:20].max() - mean[:8].min())
    flank = float(mean[5:20].max() - mean[20:].min()) if len(mean) > 20 else 0.0
    extra = np.array([
        deficiency,
        float(np.percentile(turn, 90)),
        float((turn > np.radians(35)).mean()),
        float(d2.sum()),
        float(d2.max()) if len(d2) else 0.0,
        hooks,
        flank,
        float(np.nanmean(np.abs(np.diff(first))) / w) if len(first) > 1 else 0.0,
    ])
    return np.concatenate([mean, asym, sharper, rear, extra, _convexity(c)])


def _convexity(c: _Canon) -> np.ndarray:
    """Solidity (area / convex hull) and the deepest convexity defect (in W) of
    the rear 1.2 to 3 W: the V between hook and pin and the caved-in flank of a
    thin cow are dents in the hull; a fat cow's rump is nearly convex."""
    out = []
    w = c.width
    for u in REGION_U:
        region = np.zeros_like(c.mask, dtype=np.uint8)
        x1 = c.x0 + int(u * w) + 1
        region[:, c.x0:x1] = c.mask[:, c.x0:x1]
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not contours:
            out += [1.0, 0.0]
            continue
        cnt = max(contours, key=cv2.contourArea)
        hull_pts = cv2.convexHull(cnt)
        hull = cv2.contourArea(hull_pts)
        solidity = cv2.contourArea(cnt) / hull if hull > 0 else 1.0
        deepest = 0.0
        if len(cnt) > 3:
            idx = cv2.convexHull(cnt, returnPoints=False)
            try:
                defects = cv2.convexityDefects(cnt, idx)
            except cv2.error:  # a self-touching outline: no defects to report
                defects = None
            if defects is not None and len(defects):
                d = np.asarray(defects).reshape(-1, 4)
                # Defects where the region was cut at x1 are the cut, not the cow.
                far = cnt.reshape(-1, 2)[d[:, 2], 0]
                keep = d[far < x1 - 2, 3]
                deepest = float(keep.max()) / 256.0 / w if len(keep) else 0.0
        out += [solidity, deepest]
    return np.array(out)


def _warp(image: np.ndarray, c: _Canon) -> np.ndarray:
    return cv2.warpAffine(image, c.matrix, c.size, flags=cv2.INTER_LINEAR)


def _sections(img: np.ndarray, c: _Canon, us: tuple[float, ...]) -> np.ndarray:
    out = []
    w = c.width
    for u in us:
        x = round(c.x0 + u * w)
        x = min(max(x, 0), img.shape[1] - 1)
        centre = c.mid[x] if not np.isnan(c.mid[x]) else np.nanmedian(c.mid)
        ys = np.clip(np.round(centre + ACROSS * w).astype(int), 0, img.shape[0] - 1)
        lo, hi = max(0, x - 1), min(img.shape[1], x + 2)
        out.append(img[ys, lo:hi].mean(axis=1))
    return np.concatenate(out)


def _shading(gray: np.ndarray, c: _Canon) -> np.ndarray:
    turned = _warp(gray.astype(np.float32), c)
    m = c.mask
    vals = turned[m]
    mu, sd = float(vals.mean()), float(vals.std()) + 1.0
    z = (turned - mu) / sd
    z[~m] = 0.0
    rump = np.zeros_like(m)
    rump[:, c.x0:c.x0 + int(RUMP_U * c.width) + 1] = m[:, c.x0:c.x0 + int(RUMP_U * c.width) + 1]
    rump = cv2.erode(rump.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if rump.sum() < 10:
        raise NoCow("too little of the rump in view for shading")
    gx = cv2.Sobel(z, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(z, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.hypot(gx, gy)
    s1 = max(1.0, c.width / 16)
    lap1 = cv2.Laplacian(cv2.GaussianBlur(z, (0, 0), s1), cv2.CV_32F)
    lap2 = cv2.Laplacian(cv2.GaussianBlur(z, (0, 0), 2 * s1), cv2.CV_32F)
    blurred = cv2.GaussianBlur(z, (0, 0), s1)
    energies = np.array([grad[rump].mean(), np.abs(lap1[rump]).mean() * 10,
                         np.abs(lap2[rump]).mean() * 10, z[rump].std()])
    return np.concatenate([_sections(blurred, c, SHADE_U), energies])


def _texture(gray: np.ndarray, c: _Canon) -> np.ndarray:
    """Orientation histograms (gradient-magnitude weighted, per-cell L2) over
    the rump region: rear RUMP_U W along the spine, +-0.6 W across it."""
    turned = _warp(gray.astype(np.float32), c)
    w = c.width
    centre = float(np.nanmedian(c.mid[c.x0:c.x0 + int(RUMP_U * w) + 1]))
    x0, x1 = c.x0, c.x0 + int(RUMP_U * w)
    y0, y1 = int(centre - 0.6 * w), int(centre + 0.6 * w)
    ny, nx = TEXTURE_CELLS[1] * 6, TEXTURE_CELLS[0] * 6
    src = np.array([[x0, y0], [x1, y0], [x0, y1]], np.float32)
    dst = np.array([[0, 0], [nx, 0], [0, ny]], np.float32)
    patch = cv2.warpAffine(turned, cv2.getAffineTransform(src, dst), (nx, ny),
                           flags=cv2.INTER_AREA if w > nx else cv2.INTER_LINEAR)
    patch = (patch - patch.mean()) / (patch.std() + 1.0)
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    ang = (np.arctan2(gy, gx) % np.pi) / np.pi * TEXTURE_BINS  # unsigned orientation
    idx = np.minimum(ang.astype(int), TEXTURE_BINS - 1)
    out = np.zeros((TEXTURE_CELLS[1], TEXTURE_CELLS[0], TEXTURE_BINS), np.float64)
    for b in range(TEXTURE_BINS):
        weighted = np.where(idx == b, mag, 0.0)
        out[:, :, b] = weighted.reshape(TEXTURE_CELLS[1], 6, TEXTURE_CELLS[0], 6).sum(axis=(1, 3))
    out /= np.linalg.norm(out, axis=2, keepdims=True) + 1e-6
    return out.ravel()


def _depth(depth_mm: np.ndarray, c: _Canon) -> np.ndarray:
    d = depth_mm.astype(np.float32)
    valid = d > 0
    floor = float(np.percentile(d[valid], 90)) if valid.any() else 0.0
    height = np.where(valid, floor - d, 0.0).astype(np.float32)
    turned = _warp(height, c)
    m = c.mask & (turned > 0)
    if m.sum() < 20:
        raise NoCow("too little depth on the cow's back")
    top = float(np.percentile(turned[m], 95))
    rel = np.where(m, turned / max(top, 1.0), 0.0).astype(np.float32)
    sm = cv2.GaussianBlur(rel, (0, 0), max(1.0, c.width / 20))
    sections = _sections(sm, c, DEPTH_U)
    rump = m[:, c.x0:c.x0 + int(RUMP_U * c.width) + 1]
    region = sm[:, c.x0:c.x0 + int(RUMP_U * c.width) + 1]
    lap = cv2.Laplacian(sm, cv2.CV_32F)[:, c.x0:c.x0 + int(RUMP_U * c.width) + 1]
    vals = region[rump] if rump.any() else np.zeros(1)
    extra = np.array([vals.std(), float(np.percentile(vals, 10)),
                      np.abs(lap[rump]).mean() * 100 if rump.any() else 0.0,
                      top / max(c.width, 1.0)])
    return np.concatenate([sections, extra])


def back_features(seg: Segmentation, *, colour: np.ndarray | None = None,
                  depth: np.ndarray | None = None, rear: str | None = None) -> BackFeatures:
    """Every feature group the inputs allow. ``rear`` (left/right/top/bottom or
    auto/None) fixes the side the rump is on when the camera's mounting says so."""
    c = _canonical(seg, rear)
    values: dict[str, np.ndarray] = {"shape": _shape(c)}
    if colour is not None:
        gray = cv2.cvtColor(resize_like(colour, seg), cv2.COLOR_BGR2GRAY)
        values["shading"] = _shading(gray, c)
        values["texture"] = _texture(gray, c)
    if depth is not None:
        values["depth"] = _depth(resize_like(depth, seg), c)
    for g, v in values.items():
        if v.shape != (SIZES[g],):  # pragma: no cover - a layout bug, not an input error
            raise AssertionError(f"{g}: {v.shape} != {SIZES[g]}")
        if not np.all(np.isfinite(v)):
            values[g] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    # The rump cut off by the frame: what we measured is not the rump.
    quality = seg.quality * (0.3 if c.rear_cut else 1.0)
    return BackFeatures(values, quality, c.width / seg.scale, c.rear, c.angle % 360.0)
