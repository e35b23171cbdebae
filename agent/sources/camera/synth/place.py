"""Put a flat tag into a picture: perspective, blur, glare, hair and bars in
front, and the label that says whether the number can be read by design.

Legibility is decided from what was drawn, not from any reader, in three
bands per condition: clearly illegible (``legible`` False, the reason in
``why``), near the limit (``borderline`` True, the reason in ``near``) and
clear. The limits:

- size: digits under ``MIN_DIGIT_PX`` tall are illegible, under
  ``NEAR_DIGIT_PX`` borderline;
- cover: more than ``MAX_COVERED`` of the number's ink hidden (or more than
  ``MAX_DIGIT_COVERED`` of any one digit) is illegible, more than
  ``NEAR_COVERED`` (``NEAR_DIGIT_COVERED``) borderline;
- blur: ``blur_px`` (motion length plus Gaussian sigma as an equivalent
  length) over ``MAX_BLUR`` half digit heights is illegible, over
  ``NEAR_BLUR`` borderline;
- contrast (|luma body - luma ink|, 0..1, after fading and infrared): under
  ``MIN_CONTRAST`` illegible, under ``NEAR_CONTRAST`` borderline;
- a tag showing its blank back is illegible.

What counts as hidden: ink under opaque dirt, outside the frame, under a mask
an occluder returned (hair, bars, glare, a cow, a rail, a later tag) and,
whatever drew it, ink whose pixels changed by more than half the ink-to-body
colour distance between :meth:`PlacedTag.freeze` (right after the tag and its
own decorations) and :meth:`PlacedTag.settle` (the finished picture, before
the camera look). A scene must occlude every placed tag with every mask and
settle all of them, so nothing drawn later escapes the label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from agent.sources.camera.synth.params import SynthParams
from agent.sources.camera.synth.tag import TagArt

MIN_DIGIT_PX = 11.0
NEAR_DIGIT_PX = 15.0
MAX_COVERED = 0.45
NEAR_COVERED = 0.25
MAX_DIGIT_COVERED = 0.6
NEAR_DIGIT_COVERED = 0.4
MAX_BLUR = 1.2  # blur_px / (half the digit height)
NEAR_BLUR = 0.8
MIN_CONTRAST = 0.15
NEAR_CONTRAST = 0.25
# A Gaussian of sigma s smears a stroke about as much as a motion streak this
# many times s long (the old ellipse rule: motion 0.5 h ~ sigma 0.16 h).
SIGMA_AS_LENGTH = 0.5 / 0.16
# An ink pixel counts as hidden once it moved this share of the ink-to-body
# colour distance (and at least CHANGED_MIN levels): it no longer reads as ink.
CHANGED_SHARE = 0.5
CHANGED_MIN = 24.0
MIN_MOTION_PX = 1.5  # shorter streaks and smaller sigmas are not worth a filter pass
MIN_SIGMA_PX = 0.4
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

    @property
    def drawn(self) -> Blur:
        """The blur as drawn: streaks under 1.5 px and sigmas under 0.4 px are skipped."""
        return Blur(self.motion_px if self.motion_px >= MIN_MOTION_PX else 0.0,
                    self.motion_angle, self.sigma_px if self.sigma_px >= MIN_SIGMA_PX else 0.0)

    @property
    def length_px(self) -> float:
        """Motion length plus the Gaussian as an equivalent length (``blur_px``)."""
        return math.hypot(self.motion_px, SIGMA_AS_LENGTH * self.sigma_px)


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
    pose: Pose = field(default_factory=Pose)
    why: list[str] = field(default_factory=list)
    ir: bool = False
    _ref: np.ndarray | None = field(default=None, repr=False)  # frame pixels when frozen

    def _in_frame(self, fw: int, fh: int) -> tuple[int, int, int, int] | None:
        """The roi clipped to a frame: x0, y0, x1, y1 in frame pixels, or None."""
        x, y, w, h = self.roi
        x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def occlude(self, mask: np.ndarray) -> None:
        """Something drawn later in front: ``mask`` is frame-sized, nonzero = opaque."""
        x, y = self.roi[:2]
        clip = self._in_frame(mask.shape[1], mask.shape[0])
        if clip is not None:
            x0, y0, x1, y1 = clip
            self.covered[y0 - y:y1 - y, x0 - x:x1 - x] |= mask[y0:y1, x0:x1] > 0

    def occlude_by(self, other: PlacedTag) -> None:
        """A tag drawn later in front of this one: its body hides what it overlaps."""
        ax, ay, aw, ah = self.roi
        bx, by, bw, bh = other.roi
        x0, y0 = max(ax, bx), max(ay, by)
        x1, y1 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
        if x1 > x0 and y1 > y0:
            body = other.alpha[y0 - by:y1 - by, x0 - bx:x1 - bx] > 0.5
            self.covered[y0 - ay:y1 - ay, x0 - ax:x1 - ax] |= body

    def freeze(self, frame: np.ndarray) -> None:
        """Remember how the tag looks now (placed and decorated), for :meth:`settle`."""
        clip = self._in_frame(frame.shape[1], frame.shape[0])
        if clip is not None:
            x0, y0, x1, y1 = clip
            self._ref = frame[y0:y1, x0:x1].copy()

    def settle(self, frame: np.ndarray) -> None:
        """The picture is drawn: ink whose pixels changed since :meth:`freeze`
        counts as hidden, whatever drew over it (the catch-all behind the masks)."""
        clip = self._in_frame(frame.shape[1], frame.shape[0])
        if self._ref is None or clip is None:
            return
        x0, y0, x1, y1 = clip
        x, y = self.roi[:2]
        diff = frame[y0:y1, x0:x1].astype(np.float32) - self._ref
        moved = np.sqrt((diff * diff).sum(axis=2))
        gap = float(np.linalg.norm(np.subtract(self.art.body_colour, self.art.ink_colour)))
        self.covered[y0 - y:y1 - y, x0 - x:x1 - x] |= moved > max(CHANGED_MIN,
                                                                    CHANGED_SHARE * gap)
        self._ref = None

    def apply_ir(self, weights: np.ndarray, factor: float) -> None:
        """The frame went infrared: contrast is now between grey levels, squeezed."""
        body = float(np.dot(weights, self.art.body_colour))
        ink = float(np.dot(weights, self.art.ink_colour))
        self.contrast = abs(body - ink) / 255.0 * factor
        self.ir = True

    def hidden(self) -> tuple[float, float]:
        """Share of the number's ink hidden, and the most hidden share of one digit."""
        ink = self.digits > 0
        total = int(ink.sum())
        hidden = float((self.covered & ink).sum()) / total if total else 1.0
        worst = 0.0
        for k in range(1, len(self.art.style.number) + 1):
            d = self.digits == k
            n = int(d.sum())
            worst = max(worst, float((self.covered & d).sum()) / n if n else 1.0)
        return hidden, worst

    def label(self) -> dict[str, object]:
        hidden, worst = self.hidden()
        h = max(self.digit_height_px, 1e-6)
        blur = self.blur.length_px / (0.5 * h)
        why, near = list(self.why), []
        if self.back:
            why.append("back")
        for reason, value, limit, close in (
                ("small", -self.digit_height_px, -MIN_DIGIT_PX, -NEAR_DIGIT_PX),
                ("covered", hidden, MAX_COVERED, NEAR_COVERED),
                ("covered", worst, MAX_DIGIT_COVERED, NEAR_DIGIT_COVERED),
                ("blur", blur, MAX_BLUR, NEAR_BLUR),
                ("contrast", -self.contrast, -MIN_CONTRAST, -NEAR_CONTRAST)):
            if value > limit:
                why.append(reason)
            elif value > close:
                near.append(reason)
        why, near = list(dict.fromkeys(why)), [r for r in dict.fromkeys(near) if r not in why]
        s = self.art.style
        return {
            "number": s.number,
            "box": self.box,
            "number_box": self.number_box,
            "legible": not why,
            "why": why,
            # only a legible tag is borderline: a clear failure stays a failure
            "borderline": not why and bool(near),
            "near": near if not why else [],
            "digit_height_px": round(self.digit_height_px, 1),
            "covered": round(hidden, 3),
            "digit_covered_max": round(worst, 3),
            "blur_px": round(self.blur.length_px, 2),
            "motion_blur_px": round(self.blur.motion_px, 2),
            "gauss_sigma_px": round(self.blur.sigma_px, 2),
            "yaw_deg": round(self.pose.yaw, 1),
            "pitch_deg": round(self.pose.pitch, 1),
            "roll_deg": round(self.pose.roll, 1),
            "contrast": round(self.contrast, 3),
            "ir": self.ir,
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
    blur = blur.drawn
    if blur.motion_px:
        k = _motion_kernel(blur.motion_px, blur.motion_angle)
        pm, wa = cv2.filter2D(pm, -1, k), cv2.filter2D(wa, -1, k)
    if blur.sigma_px:
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
                     blur=blur, back=back, contrast=art.contrast, pose=pose)


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
