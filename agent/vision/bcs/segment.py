"""Find the cow in a top-view frame: a mask of her back, and how sure we are.

Colour frames: the lane floor is what surrounds the cow, so a colour model of
the floor is taken from the frame's border strips (the lane sides; the cow
fills the middle), every pixel is scored by its distance to the nearest floor
colour, and GrabCut refines that split at low resolution, seeded from it.
Stall bars and gates that cross the cow are closed over; the largest
component is the cow. Depth frames (uint16 mm, 0 = no data): the floor is the
far mode of the depth histogram and the cow is what stands clear of it.

Everything runs on a copy scaled to ``WORK_WIDTH`` pixels: the outline's shape
is what matters, and the cost stays a few milliseconds at any camera size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_WIDTH = 320  # px: the scale outlines are measured at (hooks and pins are a few px)
SEG_WIDTH = 160  # px: the scale the colour models and GrabCut run at (cost ~ pixels)
GRABCUT_ITERATIONS = 3
BORDER = 0.06  # share of each side taken as floor samples
FLOOR_CLUSTERS = 6
MIN_AREA = 0.08  # a cow smaller than this share of the frame is "not in view"
COW_CLEARANCE_MM = 350  # depth: the back stands at least this far above the floor
BACK_ABOVE_MM = 250  # depth: nothing of the cow stands this far above her back's level
OUTLINE_MIN_SHARE = 0.5  # depth: the outline from above (the barrel's widest) is higher


class NoCow(ValueError):
    """No usable cow in the frame (empty lane, cow cut off, segmentation failed)."""


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # bool, at work scale
    scale: float  # work pixels per frame pixel
    area: float  # share of the frame covered by the cow
    quality: float  # 0-1: contrast of cow vs floor, solidity, margin from the frame
    touches: tuple[bool, bool, bool, bool]  # the mask reaches the left, top, right, bottom edge


def _work(image: np.ndarray, width: int = WORK_WIDTH) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = width / float(w)
    size = (width, max(16, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if image.dtype == np.uint16:  # depth: never average across holes
        interp = cv2.INTER_NEAREST
    return cv2.resize(image, size, interpolation=interp), scale


def _largest(mask: np.ndarray, share: float = 1.0) -> np.ndarray:
    """The biggest blob; with ``share`` < 1, also every blob at least that share
    of its size (a cow cut in two by a bar across her back)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.nonzero(areas >= share * areas.max())[0]
    return np.isin(labels, keep)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    out = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)


def _clean(mask: np.ndarray) -> np.ndarray:
    """The cow's blob without the stall bars and gates that touch her.

    Bars are long and thin: an opening with a disc wider than a bar but far
    narrower than a cow keeps her trunk (the core) and drops them. The outline
    is then taken from the unopened mask within a few pixels of that core, so
    hooks and pins, which an opening would round off, keep their shape; a
    closing bridges bars lying across her back."""
    w = mask.shape[1]
    close_k = max(3, (w // 32) | 1)
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE,
                         cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_k, close_k)))
    core_k = max(5, (w // 14) | 1)
    core = cv2.morphologyEx(m, cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (core_k, core_k)))
    core = _largest(core.astype(bool), 0.25).astype(np.uint8)
    if core.any() and cv2.connectedComponents(core)[0] > 2:
        # Pieces of one cow either side of a bar: bridge them, bar-wide.
        bridge = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_k + 1,) * 2)
        core = cv2.morphologyEx(core, cv2.MORPH_CLOSE, bridge)
        m = np.maximum(m, core)
    if not core.any():
        return np.zeros(mask.shape, bool)
    reach = max(3, (w // 48) | 1)
    near = cv2.dilate(core, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,
                                                                          2 * reach + 1)))
    return _fill_holes(_largest(np.logical_and(m > 0, near > 0)))


def _touches(mask: np.ndarray) -> tuple[bool, bool, bool, bool]:
    return (bool(mask[:, 0].any()), bool(mask[0, :].any()),
            bool(mask[:, -1].any()), bool(mask[-1, :].any()))


def _quality(mask: np.ndarray, contrast: float) -> float:
    """0-1 from the cow/floor contrast and the outline's solidity (a blob with
    bites out of it is a poor outline), less when the cow is cut by two sides."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    c = max(contours, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(c))
    solidity = cv2.contourArea(c) / hull if hull > 0 else 0.0
    cut = sum(_touches(mask))
    q = min(1.0, contrast) * min(1.0, max(0.0, (solidity - 0.6) / 0.3))
    return float(q * (1.0 if cut <= 2 else 0.5))


def _grabcut(small: np.ndarray, seeds: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """GrabCut at half the segmentation scale (its cost grows with pixels)."""
    h, w = seeds.shape
    half = cv2.resize(small, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    gc = cv2.resize(seeds, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(half, gc, None, bgd, fgd, GRABCUT_ITERATIONS,  # type: ignore[call-overload]
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a degenerate colour model (a flat frame): keep the rough mask
        return fallback
    cow_half = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(cow_half, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def _edge_refine(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """The outline at the measuring scale: colour histograms of cow and floor
    from the coarse cut, back-projected in a band along its edge (cheap, and
    sharp where the coarse cut is blocky); far inside stays cow."""
    h, w = fine.shape[:2]
    cow = cv2.resize(coarse.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    hsv = cv2.cvtColor(fine, cv2.COLOR_BGR2HSV)
    bins, ranges = [12, 8, 8], [0, 180, 0, 256, 0, 256]
    h_cow = cv2.calcHist([hsv], [0, 1, 2], cow, bins, ranges) + 1.0
    h_bg = cv2.calcHist([hsv], [0, 1, 2], 1 - cow, bins, ranges) + 1.0
    ratio = (h_cow / h_cow.sum()) / (h_cow / h_cow.sum() + h_bg / h_bg.sum())
    prob = cv2.calcBackProject([hsv], [0, 1, 2], (ratio * 255).astype(np.float32), ranges, 1)
    prob = cv2.GaussianBlur(prob, (3, 3), 0)
    k = np.ones((7, 7), np.uint8)
    band = np.logical_and(cv2.dilate(cow, k) > 0, cv2.erode(cow, k) == 0)
    return _clean(np.where(band, prob > 127, cow > 0))


def segment_colour(frame_bgr: np.ndarray) -> Segmentation:
    """The cow's mask in a colour top-view frame; ``NoCow`` when there is none."""
    small, _ = _work(frame_bgr, SEG_WIDTH)
    h, w = small.shape[:2]
    lab = cv2.cvtColor(cv2.GaussianBlur(small, (3, 3), 0), cv2.COLOR_BGR2LAB).astype(np.float32)
    # Floor samples: strips along the two long sides of the lane. The lane runs
    # along the frame's longer axis, so its sides are the other two edges; all
    # four strips are used and the farthest-from-floor quarter of them dropped
    # (a cow that reaches a border must not become "floor").
    bw, bh = max(2, int(w * BORDER)), max(2, int(h * BORDER))
    strips = np.concatenate([lab[:, :bw].reshape(-1, 3), lab[:, -bw:].reshape(-1, 3),
                             lab[:bh].reshape(-1, 3), lab[-bh:].reshape(-1, 3)])
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 15, 0.5)
    k = min(FLOOR_CLUSTERS, len(strips))
    _, labels, centres = cv2.kmeans(  # type: ignore[call-overload]
        strips, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    # Clusters holding few border pixels are the cow or a bar touching the border.
    floor = centres[counts >= 0.08 * len(strips)]
    if len(floor) == 0:
        floor = centres[np.argsort(-counts)[:2]]
    dist = np.min(np.linalg.norm(lab.reshape(-1, 1, 3) - floor[None], axis=2), axis=1)
    dist = dist.reshape(h, w)
    # Spread of the floor itself: the same distance over the border samples.
    spread = float(np.percentile(np.min(np.linalg.norm(strips[:, None] - floor[None], axis=2),
                                        axis=1), 75)) + 1.0
    d8 = np.clip(dist / (4.0 * spread) * 255.0, 0, 255).astype(np.uint8)
    _, rough = cv2.threshold(d8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    rough_mask = _clean(rough > 0)
    # GrabCut, seeded: the border strips and whatever is far from the rough cow
    # are floor; the rough cow is probably cow and its deep inside surely is.
    # Colour models of both sides then settle the outline, which a colour
    # distance alone cannot where a coat patch matches the floor. Without a
    # rough cow, the middle of the frame (where the lane puts her) is the guess.
    seed = rough_mask
    if seed.mean() < MIN_AREA:
        yy, xx = np.mgrid[0:h, 0:w]
        seed = ((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.2 * h)) ** 2 <= 1.0
    gc = np.full((h, w), cv2.GC_BGD, np.uint8)
    u8 = seed.astype(np.uint8)
    near = cv2.dilate(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (w // 6 | 1,) * 2))
    gc[near > 0] = cv2.GC_PR_BGD
    gc[seed] = cv2.GC_PR_FGD
    inner = cv2.erode(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (w // 10 | 1,) * 2))
    gc[inner > 0] = cv2.GC_FGD
    edge = max(2, int(0.025 * w))
    for strip in (np.s_[:, :edge], np.s_[:, -edge:], np.s_[:edge, :], np.s_[-edge:, :]):
        sub = gc[strip]
        sub[sub != cv2.GC_FGD] = cv2.GC_BGD
    coarse = _clean(_grabcut(small, gc, rough_mask))
    if coarse.mean() < MIN_AREA:
        raise NoCow("no cow in view (the outline found is too small)")
    inside = float(np.median(dist[coarse]))
    contrast = inside / (3.0 * spread)
    fine, scale = _work(frame_bgr)
    mask = _edge_refine(fine, coarse)
    area = float(mask.mean())
    if area < MIN_AREA:
        raise NoCow("no cow in view (the outline found is too small)")
    return Segmentation(mask, scale, area, _quality(mask, contrast), _touches(mask))


def segment_depth(depth_mm: np.ndarray) -> Segmentation:
    """The cow's mask in a uint16 depth frame (mm from the camera, 0 = no data)."""
    small, scale = _work(depth_mm)
    valid = small > 0
    if valid.mean() < 0.3:
        raise NoCow("depth frame has too few valid pixels")
    floor = float(np.percentile(small[valid], 90))
    height = np.where(valid, floor - small.astype(np.float32), 0.0)
    above = height > COW_CLEARANCE_MM
    if not above.any():
        raise NoCow("no cow in view (nothing stands above the floor)")
    # The back is the biggest surface at one level: the mode of the heights
    # that stand clear of the floor (5 cm bins). Gates and bars over the lane
    # stand higher and are cut off above it; rails along it are thin and drop
    # out of the trunk's core in the cleaning, or lie below half the back's
    # height, under the barrel's widest line, where nothing of the outline is.
    bins = np.arange(COW_CLEARANCE_MM, float(height.max()) + 100.0, 50.0)
    counts, edges = np.histogram(height[above], bins=bins)
    back = float(edges[int(np.argmax(counts)) + 1])
    cow = above & (height > back * OUTLINE_MIN_SHARE) & (height < back + BACK_ABOVE_MM)
    # Holes inside the back (no data, or a bar's shadow in depth) are filled.
    mask = _clean(cow)
    area = float(mask.mean())
    if area < MIN_AREA:
        raise NoCow("no cow in view (nothing stands above the floor)")
    return Segmentation(mask, scale, area, _quality(mask, 1.0), _touches(mask))


def resize_like(image: np.ndarray, seg: Segmentation) -> np.ndarray:
    """``image`` at the segmentation's work scale (nearest for depth)."""
    h, w = seg.mask.shape
    interp = cv2.INTER_NEAREST if image.dtype == np.uint16 else cv2.INTER_AREA
    return cv2.resize(image, (w, h), interpolation=interp)
