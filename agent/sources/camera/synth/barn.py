"""Barn pieces: backgrounds, cows, signs, and the camera's look (IR, noise, JPEG).

Cows are drawn as blobs: a body ellipse, a head (forehead and muzzle), ears
sticking out sideways, and a coat (Holstein black-and-white patches, red and
white, brown, black). Signs on the wall carry letters and digits on purpose:
a reader must not report a pen number or a herd prefix as a cow's number.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Rng = np.random.Generator

SIGN_TEXTS = ("PEN 3", "PEN 12", "DRY COWS", "NO ENTRY", "CAUTION", "BOX 7", "FRESH 2",
              "MILK ROOM", "SICK PEN", "CALVES", "EXIT", "GATE 4", "STALL 21", "ZONE B")


@dataclass(frozen=True)
class Coat:
    base: tuple[int, int, int]
    patch: tuple[int, int, int] | None
    patch_share: float  # rough share of the coat in patch colour
    hair: tuple[int, int, int]  # ear hair colour (drawn over tags)


def sample_coat(rng: Rng) -> Coat:
    kind = rng.choice(4, p=[0.55, 0.15, 0.18, 0.12])
    white = (225, 228, 230)
    black = (28, 26, 30)
    if kind == 0:  # Holstein: white with black patches, or black with white
        if rng.random() < 0.5:
            return Coat(white, black, float(rng.uniform(0.3, 0.7)), (200, 205, 210))
        return Coat(black, white, float(rng.uniform(0.1, 0.4)), (40, 40, 45))
    if kind == 1:  # red and white
        red = (45, 60, 150)
        return Coat(white, red, float(rng.uniform(0.3, 0.7)), (90, 110, 170))
    if kind == 2:  # brown (Jersey, Brown Swiss)
        brown = (int(rng.uniform(40, 80)), int(rng.uniform(80, 120)), int(rng.uniform(120, 170)))
        return Coat(brown, None, 0.0, (60, 90, 130))
    return Coat(black, None, 0.0, (35, 35, 40))


def grain(rng: Rng, h: int, w: int, sigma: float) -> np.ndarray:
    """Grey fine noise (float32, h x w x 3) tiled from a small random tile: cheap at 1080p."""
    tile = np.repeat(rng.standard_normal((64, 64, 1), dtype=np.float32) * sigma, 3, axis=2)
    return np.tile(tile, (h // 64 + 1, w // 64 + 1, 1))[:h, :w]


def background(rng: Rng, w: int, h: int) -> np.ndarray:
    """Wall above, floor below, a light gradient and a few stall bars behind.

    Drawn at a quarter of the size and scaled up (it is all low-frequency),
    then given full-size grain."""
    sw, sh = max(8, w // 4), max(8, h // 4)
    horizon = int(sh * rng.uniform(0.3, 0.6))
    wall = np.array([rng.uniform(90, 200)] * 3) + rng.uniform(-25, 25, 3)
    floor = np.array([rng.uniform(50, 130)] * 3) + rng.uniform(-15, 15, 3)
    img = np.empty((sh, sw, 3), np.float32)
    img[:horizon] = wall
    img[horizon:] = floor
    stains = cv2.resize(rng.normal(0, 14, (sh // 10 + 2, sw // 10 + 2)).astype(np.float32),
                        (sw, sh), interpolation=cv2.INTER_CUBIC)
    img += stains[..., None]
    # light from one side or from above
    gx = np.linspace(rng.uniform(0.55, 1.1), rng.uniform(0.55, 1.1), sw, dtype=np.float32)
    gy = np.linspace(rng.uniform(0.8, 1.2), rng.uniform(0.6, 1.0), sh, dtype=np.float32)
    img *= gy[:, None, None] * gx[None, :, None]
    big = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    out = cv2.add(big, grain(rng, h, w, 4.0), dtype=cv2.CV_8U)
    for _ in range(int(rng.integers(1, 4))):  # horizontal rails on the wall
        stall_bar(rng, out, int(rng.uniform(0.15, 0.8) * h), horizontal=True)
    for _ in range(int(rng.integers(0, 4))):  # posts
        stall_bar(rng, out, int(rng.uniform(0, w)), horizontal=False)
    return out


def stall_bar(rng: Rng, img: np.ndarray, at: int, horizontal: bool,
              width: int | None = None) -> np.ndarray:
    """A galvanised tube across the picture; returns its mask."""
    h, w = img.shape[:2]
    width = width or max(4, int(rng.uniform(0.008, 0.03) * h))
    mask = np.zeros((h, w), np.uint8)
    p0, p1 = ((0, at), (w, at + int(rng.uniform(-0.05, 0.05) * h))) if horizontal else \
        ((at, 0), (at + int(rng.uniform(-0.05, 0.05) * w), h))
    grey = int(rng.uniform(80, 190))
    cv2.line(img, p0, p1, (grey, grey, grey), width, cv2.LINE_AA)
    off = (0, -width // 4) if horizontal else (-width // 4, 0)
    hl = min(255, grey + 55)
    cv2.line(img, (p0[0] + off[0], p0[1] + off[1]), (p1[0] + off[0], p1[1] + off[1]),
             (hl, hl, hl), max(1, width // 4), cv2.LINE_AA)
    cv2.line(mask, p0, p1, 255, width)
    return mask


def paint_coat(rng: Rng, img: np.ndarray, mask: np.ndarray, coat: Coat,
                box: tuple[int, int, int, int]) -> None:
    """Fill ``mask`` (within ``box``) with the coat: base, patches, shading, fur grain."""
    x, y, w, h = box
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    bw, bh = x1 - x0, y1 - y0
    sw, sh = max(4, bw // 4), max(4, bh // 4)  # patches and shading are smooth: draw small
    layer = np.empty((sh, sw, 3), np.uint8)
    layer[:] = coat.base
    if coat.patch is not None:
        for _ in range(int(3 + 12 * coat.patch_share)):
            c = (int(rng.uniform(0, sw)), int(rng.uniform(0, sh)))
            ax = (max(1, int(rng.uniform(0.08, 0.35) * w / 4)),
                  max(1, int(rng.uniform(0.08, 0.3) * h / 4)))
            cv2.ellipse(layer, c, ax, float(rng.uniform(0, 180)), 0, 360, coat.patch, -1,
                        cv2.LINE_AA)
    shade = np.linspace(rng.uniform(1.0, 1.2), rng.uniform(0.65, 0.9), sh, dtype=np.float32)
    shaded = layer.astype(np.float32) * shade[:, None, None]
    big = cv2.resize(shaded, (bw, bh), interpolation=cv2.INTER_LINEAR)
    fur = cv2.add(big, grain(rng, bh, bw, 6.0), dtype=cv2.CV_8U)
    np.copyto(img[y0:y1, x0:x1], fur, where=mask[y0:y1, x0:x1, None] > 0)


@dataclass(frozen=True)
class CowHead:
    mask: np.ndarray  # frame-sized uint8, the whole cow as drawn
    ears: tuple[tuple[float, float], tuple[float, float]]  # left, right tag anchors
    coat: Coat


def draw_cow_front(rng: Rng, img: np.ndarray, cx: float, top: float, head_w: float,
                   coat: Coat | None = None) -> CowHead:
    """A cow facing the camera (head a little turned): body behind, head, ears."""
    coat = coat or sample_coat(rng)
    H, W = img.shape[:2]
    mask = np.zeros((H, W), np.uint8)
    hw = head_w
    turn = rng.uniform(-0.25, 0.25) * hw
    body_c = (int(cx + rng.uniform(-0.6, 0.6) * hw), int(top + 1.7 * hw))
    cv2.ellipse(mask, body_c, (int(rng.uniform(1.0, 1.5) * hw), int(1.2 * hw)), 0, 0, 360, 255, -1)
    cv2.ellipse(mask, (int(cx), int(top + 0.45 * hw)), (int(0.5 * hw), int(0.5 * hw)), 0, 0, 360,
                255, -1)
    muzzle = (int(cx + turn), int(top + 1.25 * hw))
    pts = np.array([[cx - 0.5 * hw, top + 0.45 * hw], [cx + 0.5 * hw, top + 0.45 * hw],
                    [muzzle[0] + 0.3 * hw, muzzle[1]], [muzzle[0] - 0.3 * hw, muzzle[1]]], np.int32)
    cv2.fillPoly(mask, [pts], 255)
    ears = []
    for side in (-1, 1):
        ec = (int(cx + side * 0.72 * hw), int(top + 0.3 * hw))
        cv2.ellipse(mask, ec, (int(0.34 * hw), int(0.14 * hw)), side * rng.uniform(5, 25), 0,
                    360, 255, -1)
        ears.append((cx + side * 0.68 * hw, top + 0.38 * hw))
    x, y = int(cx - 1.8 * hw), int(top - 0.1 * hw)
    paint_coat(rng, img, mask, coat, (x, y, int(3.6 * hw), int(3.2 * hw)))
    cv2.ellipse(img, muzzle, (int(0.3 * hw), int(0.2 * hw)), 0, 0, 360,
                (int(rng.uniform(90, 140)), int(rng.uniform(100, 140)), int(rng.uniform(140, 190))),
                -1, cv2.LINE_AA)
    for side in (-1, 1):  # eyes
        cv2.circle(img, (int(cx + side * 0.33 * hw + turn * 0.3), int(top + 0.55 * hw)),
                   max(1, int(0.06 * hw)), (15, 15, 20), -1, cv2.LINE_AA)
    return CowHead(mask, (ears[0], ears[1]), coat)


def sign(rng: Rng, img: np.ndarray, wall_bottom: int) -> dict[str, object]:
    """A printed sign or stall number on the wall; returns its distractor label."""
    H, W = img.shape[:2]
    text = SIGN_TEXTS[int(rng.integers(len(SIGN_TEXTS)))] if rng.random() < 0.7 else \
        str(int(rng.integers(1, 60)))
    th = int(rng.uniform(12, 50))
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX]))
    scale = th / 22.0
    thick = max(1, th // 7)
    (tw, tht), _ = cv2.getTextSize(text, font, scale, thick)
    pw, ph = tw + th, tht + th
    x = int(rng.uniform(0, max(1, W - pw)))
    y = int(rng.uniform(0, max(1, wall_bottom - ph)))
    bg = [(235, 235, 235), (40, 200, 240), (40, 140, 40), (30, 30, 180)][int(rng.integers(4))]
    fg = (20, 20, 20) if sum(bg) > 400 else (240, 240, 240)
    cv2.rectangle(img, (x, y), (x + pw, y + ph), bg, -1)
    cv2.putText(img, text, (x + th // 2, y + ph - th // 2), font, scale, fg, thick, cv2.LINE_AA)
    return {"text": text, "box": [x, y, min(pw, W - x), min(ph, H - y)]}


def infrared(rng: Rng, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Night look: near-infrared grey, squeezed contrast, bloom and grain.

    Returns the image, the channel weights used and the contrast factor (tags'
    legibility is re-judged with both)."""
    w = np.array([rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.4), rng.uniform(0.35, 0.6)])
    w /= w.sum()
    g = cv2.transform(img, w.reshape(1, 3).astype(np.float32))
    factor = float(rng.uniform(0.45, 0.85))
    mean = float(g.mean())
    g = (g - mean) * factor + mean + rng.uniform(-10, 25)
    bright = np.maximum(g - 190, 0)
    g += cv2.GaussianBlur(bright, (0, 0), max(2.0, img.shape[1] / 150)) * rng.uniform(0.5, 1.5)
    g += rng.standard_normal(g.shape, dtype=np.float32) * rng.uniform(3, 9)
    out = np.clip(g, 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR), w, factor


def camera_look(rng: Rng, img: np.ndarray, jpeg_q: int) -> np.ndarray:
    """Sensor grain and the JPEG loss of the stream."""
    h, w = img.shape[:2]
    noise = grain(rng, h, w, float(rng.uniform(0, 5)))
    out = cv2.add(img.astype(np.float32), noise, dtype=cv2.CV_8U)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_q)])
    if not ok:  # pragma: no cover - OpenCV always encodes a BGR uint8 array
        raise RuntimeError("OpenCV could not JPEG-encode a frame")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:  # pragma: no cover - we just encoded it
        raise RuntimeError("OpenCV could not decode its own JPEG")
    return np.asarray(decoded, np.uint8)
