"""Put a flat tag into a picture: perspective, blur, glare, hair and bars in
front, and the label that says whether the number can be read by design.

Legibility (``legible``) is decided from what was drawn, not from any reader:
a tag is illegible when its digits are under ``MIN_DIGIT_PX`` tall, when more
than ``MAX_COVERED`` of the number's ink (or more than ``MAX_DIGIT_COVERED``
of any one digit) is hidden by dirt, hair, bars, glare, another cow or the
frame edge, when blur is too long for the digit size, when ink and body have
too little contrast, or when the tag shows its blank back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from agent.sources.camera.synth.params import SynthParams
from agent.sources.camera.synth.tag import TagArt

MIN_DIGIT_PX = 12.0
MAX_COVERED = 0.35
MAX_DIGIT_COVERED = 0.5
MIN_CONTRAST = 0.2
Rng = np.random.Generator


@dataclass(frozen=True)
class Pose:
    """Tag orientation (degrees) and camera distance in tag sizes (perspective strength)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    distance: float = 6.0

    @staticmethod
    def sample(rng: Rng, p: SynthParams) -> Pose:
        return Pose(float(rng.uniform(*p.yaw_deg)), float(rng.uniform(*p.pitch_deg)),
                    float(rng.uniform(*p.roll_deg)), float(rng.uniform(2.5, 9.0)))


@dataclass(frozen=True)
class Blur:
    motion_px: float = 0.0
    motion_angle: float = 0.0
    sigma_px: float = 0.0

    @staticmethod
    def sample(rng: Rng, p: SynthParams) -> Blur:
        m = float(rng.uniform(*p.motion_blur_px)) if rng.random() < p.motion_blur_p else 0.0
        s = float(rng.uniform(*p.gauss_sigma_px)) if rng.random() < p.gauss_blur_p else 0.0
        return Blur(m, float(rng.uniform(0, 180)), s)


@dataclass
class PlacedTag:
    """A tag drawn into a frame, with what is needed to finish its label."""

    art: TagArt
    roi: tuple[int, int, int, int]  # x, y, w, h of the warped tag, may reach outside the frame
    digits: np.ndarray  # warped digit index, roi-sized
    alpha: np.ndarray  # warped tag body coverage (float32), roi-sized
    covered: np.ndarray  # bool, roi-sized: digit pixels hidden so far
    box: list[int]  # tag body, axis-aligned, clipped to the frame
    number_box: list[int]  # the number's ink region, axis-aligned, clipped
    digit_height_px: float
    blur: Blur
    back: bool
    contrast: float
    why: list[str] = field(default_factory=list)

    def occlude(self, mask: np.ndarray) -> None:
        """Something drawn later in front: ``mask`` is frame-sized, nonzero = opaque."""
        x, y, w, h = self.roi
        fh, fw = mask.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
        if x1 > x0 and y1 > y0:
            self.covered[y0 - y:y1 - y, x0 - x:x1 - x] |= mask[y0:y1, x0:x1] > 0

    def apply_ir(self, weights: np.ndarray, factor: float) -> None:
        """The frame went infrared: contrast is now between grey levels, squeezed."""
        body = float(np.dot(weights, self.art.body_colour))
        ink = float(np.dot(weights, self.art.ink_colour))
        self.contrast = abs(body - ink) / 255.0 * factor

    def label(self) -> dict[str, object]:
        ink = self.digits > 0
        total = int(ink.sum())
        hidden = float((self.covered & ink).sum()) / total if total else 1.0
        worst = 0.0
        for k in range(1, len(self.art.style.number) + 1):
            d = self.digits == k
            n = int(d.sum())
            worst = max(worst, float((self.covered & d).sum()) / n if n else 1.0)
        why = list(self.why)
        if self.back:
            why.append("back")
        if self.digit_height_px < MIN_DIGIT_PX:
            why.append("small")
        if hidden > MAX_COVERED or worst > MAX_DIGIT_COVERED:
            why.append("covered")
        h = max(self.digit_height_px, 1e-6)
        if (self.blur.motion_px / (0.5 * h)) ** 2 + (self.blur.sigma_px / (0.16 * h)) ** 2 > 1:
            why.append("blur")
        if self.contrast < MIN_CONTRAST:
            why.append("contrast")
        s = self.art.style
        return {
            "number": s.number,
            "box": self.box,
            "number_box": self.number_box,
            "legible": not why,
            "why": why,
            "digit_height_px": round(self.digit_height_px, 1),
            "covered": round(hidden, 3),
            "style": {"shape": s.shape, "colour": s.colour, "font": s.font,
                      "italic": s.italic, "prefix": s.prefix, "white_ink": s.white_ink},
        }


def homography(w: int, h: int, pose: Pose, centre: tuple[float, float],
               scale: float) -> np.ndarray:
    """Map the flat tag (w x h px) to the image: rotate in 3-D, project, place."""
    y, p, r = (math.radians(a) for a in (pose.yaw, pose.pitch, pose.roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rot = rz @ ry @ rx
    d = pose.distance * max(w, h)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    pts = np.c_[src - [w / 2, h / 2], np.zeros(4)] @ rot.T
    z = pts[:, 2] + d
    dst = (pts[:, :2] * (d / z)[:, None]) * scale + centre
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _project(hm: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), hm).reshape(-1, 2)


def _clip_box(pts: np.ndarray, fw: int, fh: int) -> list[int]:
    x0, y0 = np.clip(pts.min(axis=0), 0, [fw, fh])
    x1, y1 = np.clip(pts.max(axis=0), 0, [fw, fh])
    return [int(x0), int(y0), max(0, math.ceil(x1 - x0)), max(0, math.ceil(y1 - y0))]


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    n = max(3, math.ceil(length) | 1)
    k = np.zeros((n, n), np.float32)
    c = n // 2
    dx, dy = math.cos(math.radians(angle)) * length / 2, math.sin(math.radians(angle)) * length / 2
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return k / max(k.sum(), 1e-6)


def place_tag(frame: np.ndarray, art: TagArt, digit_px: float, pose: Pose,
              centre: tuple[float, float], blur: Blur, back: bool = False,
              alpha_out: np.ndarray | None = None) -> PlacedTag:
    """Draw ``art`` into ``frame`` (BGR, in place) so its digits are about
    ``digit_px`` tall before tilt, centred at ``centre``. ``alpha_out``, when
    given (frame-sized float32), receives the tag's coverage (for sprites)."""
    fh, fw = frame.shape[:2]
    s = digit_px / art.number_box[3]
    # shrink first with area averaging; the perspective warp then only resamples mildly
    sw, sh = max(2, round(art.bgr.shape[1] * s)), max(2, round(art.bgr.shape[0] * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    bgr = cv2.resize(art.bgr, (sw, sh), interpolation=interp)
    alpha = cv2.resize(art.alpha, (sw, sh), interpolation=interp)
    digits = cv2.resize(art.digits, (sw, sh), interpolation=cv2.INTER_NEAREST)
    dirt = cv2.resize(art.dirt, (sw, sh), interpolation=cv2.INTER_NEAREST)
    hm = homography(sw, sh, pose, centre, 1.0)
    corners = _project(hm, np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], float))
    pad = int(blur.motion_px + 3 * blur.sigma_px) + 2
    x, y = (np.floor(corners.min(axis=0)) - pad).astype(int)
    x1, y1 = (np.ceil(corners.max(axis=0)) + pad).astype(int)
    w, h = int(x1 - x), int(y1 - y)
    t = np.array([[1, 0, -x], [0, 1, -y], [0, 0, 1]], float) @ hm
    wb = cv2.warpPerspective(bgr, t, (w, h), flags=cv2.INTER_LINEAR)
    wa: np.ndarray = cv2.warpPerspective(alpha, t, (w, h), flags=cv2.INTER_LINEAR)
    wd = cv2.warpPerspective(digits, t, (w, h), flags=cv2.INTER_NEAREST)
    wdirt = cv2.warpPerspective(dirt, t, (w, h), flags=cv2.INTER_NEAREST)
    # blur colour premultiplied by alpha so the edge blurs into the background
    pm: np.ndarray = wb.astype(np.float32) * wa[..., None]
    if blur.motion_px >= 1.5:
        k = _motion_kernel(blur.motion_px, blur.motion_angle)
        pm, wa = cv2.filter2D(pm, -1, k), cv2.filter2D(wa, -1, k)
    if blur.sigma_px >= 0.4:
        pm = cv2.GaussianBlur(pm, (0, 0), blur.sigma_px)
        wa = cv2.GaussianBlur(wa, (0, 0), blur.sigma_px)
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if fx1 > fx0 and fy1 > fy0:
        sl = (slice(fy0 - y, fy1 - y), slice(fx0 - x, fx1 - x))
        dst = frame[fy0:fy1, fx0:fx1]
        a = wa[sl][..., None]
        dst[:] = np.clip(dst * (1 - a) + pm[sl], 0, 255).astype(np.uint8)
        if alpha_out is not None:
            ao = alpha_out[fy0:fy1, fx0:fx1]
            np.maximum(ao, wa[sl], out=ao)
    covered = wdirt > 0
    # ink outside the frame is as hidden as ink behind a bar
    outside = np.ones((h, w), bool)
    if fx1 > fx0 and fy1 > fy0:
        outside[fy0 - y:fy1 - y, fx0 - x:fx1 - x] = False
    covered |= outside
    nx, ny, nw, nh = art.number_box
    nq = _project(hm, np.array([[nx, ny], [nx + nw, ny], [nx + nw, ny + nh], [nx, ny + nh]],
                               float) * s)
    height = (np.linalg.norm(nq[3] - nq[0]) + np.linalg.norm(nq[2] - nq[1])) / 2
    body = np.argwhere(wa > 0.5)
    if body.size:
        (by0, bx0), (by1, bx1) = body.min(axis=0), body.max(axis=0)
        box = _clip_box(np.array([[bx0 + x, by0 + y], [bx1 + 1 + x, by1 + 1 + y]], float), fw, fh)
    else:
        box = [0, 0, 0, 0]
    return PlacedTag(art=art, roi=(x, y, w, h), digits=wd, alpha=wa, covered=covered, box=box,
                     number_box=_clip_box(nq, fw, fh), digit_height_px=float(height),
                     blur=blur, back=back, contrast=art.contrast)


def hair(rng: Rng, frame: np.ndarray, tag: PlacedTag, colour: tuple[int, int, int]) -> np.ndarray:
    """Ear-hair strands across the tag. Returns their mask (frame-sized)."""
    mask = np.zeros(frame.shape[:2], np.uint8)
    x, y, w, h = tag.roi
    for _ in range(int(rng.integers(3, 25))):
        p0 = np.array([x + rng.uniform(0, w), y + rng.uniform(-0.2, 0.5) * h])
        ang = rng.uniform(math.pi * 0.25, math.pi * 0.75)
        length = rng.uniform(0.3, 1.0) * h
        pts = [p0 + [math.cos(ang + 0.3 * math.sin(t * 3)) * length * t,
                     math.sin(ang) * length * t] for t in np.linspace(0, 1, 6)]
        cv2.polylines(mask, [np.array(pts, np.int32)], False, 255, int(rng.integers(1, 3)),
                      cv2.LINE_AA)
    col = np.array(colour, np.float32) + rng.uniform(-20, 20, 3)
    opacity = rng.uniform(0.6, 1.0)
    fh, fw = frame.shape[:2]
    x0, y0 = max(0, x - h), max(0, y - h)  # strands stay within one tag height of it
    x1, y1 = min(fw, x + w + h), min(fh, y + 2 * h)
    if x1 > x0 and y1 > y0:
        dst = frame[y0:y1, x0:x1]
        a = (mask[y0:y1, x0:x1].astype(np.float32) / 255.0)[..., None] * opacity
        dst[:] = np.clip(dst * (1 - a) + col * a, 0, 255).astype(np.uint8)
    return np.where(mask > 128, 255, 0).astype(np.uint8)


def bar(rng: Rng, frame: np.ndarray, tag: PlacedTag) -> np.ndarray:
    """A pen bar or gate rail in front of the tag (a steel tube with a highlight)."""
    x, y, w, h = tag.roi
    fh, fw = frame.shape[:2]
    mask = np.zeros((fh, fw), np.uint8)
    width = max(3, int(rng.uniform(0.12, 0.6) * min(w, h)))
    cx, cy = x + rng.uniform(0.1, 0.9) * w, y + rng.uniform(0.1, 0.9) * h
    ang = math.radians(rng.choice([0.0, 90.0, float(rng.uniform(0, 180))]))
    reach = 4 * max(w, h)
    p0 = (int(cx - math.cos(ang) * reach), int(cy - math.sin(ang) * reach))
    p1 = (int(cx + math.cos(ang) * reach), int(cy + math.sin(ang) * reach))
    grey = int(rng.uniform(60, 190))
    cv2.line(frame, p0, p1, (grey, grey, grey + int(rng.uniform(-10, 10))), width, cv2.LINE_AA)
    off = (int(-math.sin(ang) * width * 0.2), int(math.cos(ang) * width * 0.2))
    hl = min(255, grey + 50)
    cv2.line(frame, (p0[0] + off[0], p0[1] + off[1]), (p1[0] + off[0], p1[1] + off[1]),
             (hl, hl, hl), max(1, width // 5), cv2.LINE_AA)
    cv2.line(mask, p0, p1, 255, width)
    return mask


def glare(rng: Rng, frame: np.ndarray, tag: PlacedTag) -> np.ndarray:
    """A specular highlight on the tag; where it washes the ink out counts as hidden."""
    x, y, w, h = tag.roi
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    mask = np.zeros((fh, fw), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return mask
    g = np.zeros((h, w), np.float32)
    cv2.ellipse(g, (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h)),
                (max(1, int(rng.uniform(0.05, 0.3) * w)), max(1, int(rng.uniform(0.04, 0.2) * h))),
                float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    g = cv2.GaussianBlur(g, (0, 0), max(1.0, 0.05 * w)) * float(rng.uniform(0.5, 1.0))
    g *= tag.alpha  # only on the tag itself
    sub = g[y0 - y:y1 - y, x0 - x:x1 - x]
    dst = frame[y0:y1, x0:x1]
    dst[:] = np.clip(dst + (255 - dst.astype(np.float32)) * sub[..., None], 0, 255).astype(np.uint8)
    mask[y0:y1, x0:x1] = np.where(sub > 0.55, 255, 0).astype(np.uint8)
    return mask
