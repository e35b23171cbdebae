"""The cow's back as a 3D height field, shaped by body condition score.

Coordinates (metres, the cow's own frame): ``s`` along the spine, 0 at the pin
bones, positive towards the head; ``t`` across, positive on the cow's left.
Heights are metres above the floor.

The trunk is built as a *skeleton* (bone and muscle: a superelliptic barrel
and rump, ellipsoid caps for the hooks and pins, the tailhead and tail root,
a spine ridge, the ends of the short ribs, the ribs, and the hollows either
side of the tailhead and in front of the hooks), then covered with *fat*:

    g = smooth_max(skeleton + cover, blur_sigma(skeleton) + fill)

with ``cover``, ``fill`` and ``sigma`` growing with BCS. A thin cow is the
skeleton (hooks and pins stick out of the outline, a V notch between them, a
concave flank, a roof-shaped back with a spine ridge, deep hollows by the
tailhead); a fat cow is the blurred skeleton lifted by a thick layer (hollows
filled, bones buried, a flat U-shaped back, a convex outline). The outline is
the level set ``g = 0`` of the same field, so the depth and the colour image
(which shades this field) always agree with each other.

The neck and head are a separate field (they do not depend on BCS), turned by
the look's head yaw.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CELL = 0.01  # grid cell, metres
S_MIN, T_HALF = -0.35, 0.60  # grid extent behind the pins, and to each side


@dataclass
class BodyField:
    """A cow's height field on a regular grid in her own frame."""

    height: np.ndarray  # float32 (ns, nt), metres above floor, 0 outside the cow
    trunk: np.ndarray  # bool (ns, nt): trunk (not neck/head)
    s0: float  # s of row 0
    t0: float  # t of column 0
    cell: float
    landmarks: dict[str, tuple[float, float, float]]  # name -> (s, t, height)
    h_min: float  # lowest outline height (the ray march stops below it)
    h_max: float


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (polynomial, blend width k metres)."""
    hh = np.clip(0.5 + 0.5 * (a - b) / k, 0.0, 1.0)
    return b + (a - b) * hh + k * hh * (1.0 - hh)


def _rows(s1: np.ndarray, lo: float, hi: float) -> slice:
    """Grid rows whose s lies in [lo, hi] (s1 is the (ns, 1) column of s)."""
    cell = float(s1[1, 0] - s1[0, 0])
    a = int(np.clip(np.floor((lo - float(s1[0, 0])) / cell), 0, len(s1)))
    b = int(np.clip(np.ceil((hi - float(s1[0, 0])) / cell) + 1, 0, len(s1)))
    return slice(a, b)


def _blob(g: np.ndarray, s1: np.ndarray, t: np.ndarray, sc: float, tc: float, rs: float,
          rt: float, top: float, expo: float = 2.0, angle: float = 0.0,
          profile: float = 0.5) -> None:
    """Raise ``g`` (in place, by max) to a superellipsoid cap of height ``top`` centred
    at (sc, tc). ``expo`` < 2 gives a pointed, angular footprint."""
    r = max(rs, rt)
    rows = _rows(s1, sc - 1.3 * r, sc + 1.3 * r)
    ds, dt = s1[rows] - sc, t[rows] - tc
    if angle:
        c, si = np.cos(angle), np.sin(angle)
        ds, dt = c * ds + si * dt, -si * ds + c * dt
    d = (np.abs(ds / rs) ** expo + np.abs(dt / rt) ** expo) ** (1.0 / expo)
    cap = np.where(d < 1.0, top * np.clip(1.0 - d * d, 0.0, 1.0) ** profile,
                   -2.5 * (d - 1.0) * min(rs, rt))
    np.maximum(g[rows], cap, out=g[rows])


def _dent(g: np.ndarray, s1: np.ndarray, t: np.ndarray, sc: float, tc: float, ss: float,
          st: float, depth: float) -> None:
    """Lower ``g`` (in place) by a Gaussian hollow."""
    rows = _rows(s1, sc - 3 * ss, sc + 3 * ss)
    g[rows] -= depth * np.exp(-0.5 * (((s1[rows] - sc) / ss) ** 2 + ((t[rows] - tc) / st) ** 2))


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    y = np.clip((x - a) / (b - a), 0.0, 1.0)
    return y * y * (3.0 - 2.0 * y)


@dataclass(frozen=True)
class CowBody:
    """The latent animal: frame size and proportions, coat. BCS is separate.

    Lengths in metres. ``length`` runs from the pin bones to the withers;
    the proportions vary independently of BCS, so that no single width or
    ratio gives the score away.
    """

    length: float = 1.60  # pins to withers
    rump_ratio: float = 0.33  # pins-to-hooks length / length
    barrel_half: float = 0.31  # half width of the rib cage at the outline
    hook_ratio: float = 0.90  # hook width / barrel width
    pin_ratio: float = 0.42  # pin width / hook width
    back_height: float = 1.45  # spine at the hooks, above the floor
    depth_to_outline: float = 0.33  # spine above the level where the outline forms
    asymmetry: float = 0.0  # left half wider by this share (right narrower)
    rumen_fill: float = 0.5  # 0..1, bulge of the left flank behind the ribs
    neck_length: float = 0.45
    head_length: float = 0.50
    coat: str = "holstein"
    coat_seed: int = 0  # the coat's own pattern (patches, markings)
    patch_share: float = 0.5  # holstein-like coats: share of the coloured patches
    tint: float = 0.0  # -1..1, shade of a solid coat


def build(b: CowBody, bcs: float, *, bend: float = 0.0, head_yaw: float = 0.0,
          tail_sway: float = 0.0) -> BodyField:
    """The height field of cow ``b`` at score ``bcs`` (1..5).

    ``bend``: lateral bend of the spine (1/m curvature); ``head_yaw``: radians;
    ``tail_sway``: lateral offset of the tail tip, metres.
    """
    L = b.length
    R = b.rump_ratio * L  # pins to hooks
    wb = b.barrel_half
    wh = b.hook_ratio * wb  # half hook width
    wp = b.pin_ratio * wh  # half pin width
    hb0, D = b.back_height, b.depth_to_outline
    neck_len, head_len = b.neck_length, b.head_length

    bcs = float(np.clip(bcs, 1.0, 5.0))
    thin = float(np.clip((3.5 - bcs) / 2.5, 0.0, 1.0))  # 1 at BCS 1, 0 from 3.5
    fat = float(np.clip((bcs - 1.0) / 4.0, 0.0, 1.0))  # 0 at BCS 1, 1 at 5

    s_max = L + neck_len + head_len + 0.15
    ns = round((s_max - S_MIN) / CELL)
    nt = round(2 * T_HALF / CELL)
    s_all = (S_MIN + CELL * np.arange(ns, dtype=np.float32))[:, None]
    t1 = (-T_HALF + CELL * np.arange(nt, dtype=np.float32))[None, :]
    # the spine bends: the body's own lateral coordinate follows the curve
    centre_all = (bend * ((s_all - 0.5 * L) ** 2 - (0.5 * L) ** 2)).astype(np.float32)
    t_all = (t1 - centre_all).astype(np.float32)

    # --- trunk (rows up to just past the withers) ------------------------------------
    nr = int(min(ns, round((L + 0.3 - S_MIN) / CELL)))
    s1, t = s_all[:nr], t_all[:nr]
    at = np.abs(t)
    flank = wh * (0.76 + 0.22 * fat)  # concave flank in front of the hooks when thin
    thurl_mid = 0.5 * (wh + wp) * (0.74 + 0.38 * fat)  # V notch between hook and pin
    knots_s = np.array([-0.11, -0.08, -0.04, 0.0, 0.5 * R, R, R + 0.13 * L, R + 0.32 * L,
                        0.68 * L, 0.90 * L, L, L + 0.08, L + 0.16])
    knots_a = np.array([0.0, 0.55 * wp, (0.85 + 0.15 * fat) * wp, (0.88 + 0.12 * fat) * wp,
                        thurl_mid, (0.80 + 0.12 * fat) * wh, flank, 0.96 * wb, wb, 0.95 * wb,
                        0.84 * wb, 0.55 * wb, 0.0])
    a1 = np.interp(s1[:, 0], knots_s, knots_a).astype(np.float32)
    a1 = cv2.GaussianBlur(a1[:, None], (1, 0), sigmaX=0.1, sigmaY=0.035 / CELL)[:, 0][:, None]
    a = a1 * np.where(t >= 0, 1.0 + b.asymmetry, 1.0 - b.asymmetry).astype(np.float32)
    # a full rumen bulges the left flank behind the ribs
    bulge = b.rumen_fill * 0.05 * np.exp(-0.5 * ((s1 - (R + 0.25 * L)) / (0.12 * L)) ** 2)
    a = np.maximum(a + bulge * (t >= 0), 0.005).astype(np.float32)

    # spine height profile, relative to the outline level
    top_s = np.array([-0.10, 0.0, 0.5 * R, R, R + 0.2 * L, 0.7 * L, L, L + 0.2])
    top_v = np.array([D - 0.30, D - 0.13, D - 0.05, D, D - 0.01, D, D + 0.04, D - 0.15])
    top = np.interp(s1[:, 0], top_s, top_v).astype(np.float32)[:, None]
    # cross-section: roof-shaped when thin, flat-topped and rounded when fat
    p = 1.35 + 1.9 * fat
    x = at / a
    inside = top * np.clip(1.0 - np.minimum(x, 1.0) ** p, 0.0, 1.0) ** (1.0 / 1.7)
    g = np.where(x < 1.0, inside, -2.5 * (at - a)).astype(np.float32)
    g[:2] = -1.0

    # bones
    hook_top, pin_top = D - 0.08, D - 0.17
    expo = 1.45 + 0.55 * fat  # hooks and pins pointed when thin
    for sd in (1.0, -1.0):
        # the wing of the pelvis, from beside the spine out to the hook point
        _blob(g, s1, t, R, sd * 0.60 * wh, 0.10, 0.40 * wh, hook_top, expo, angle=sd * 0.2,
              profile=1.2)
        _blob(g, s1, t, 0.0, sd * (wp - 0.05), 0.06, 0.05, pin_top, expo, profile=1.0)
        _blob(g, s1, t, 0.90 * L, sd * 0.45 * wb, 0.12, 0.06, D - 0.02)  # shoulder blades
    _blob(g, s1, t, 0.04, 0.0, 0.09, 0.05, D - 0.10)  # tailhead
    # the tail root, hanging down behind the pins
    rows = _rows(s1, -0.28, 0.05)
    st = s1[rows]
    tail_t = t[rows] - tail_sway * _smoothstep(-st, 0.0, 0.25)
    tail = (D - 0.11 - 0.9 * np.maximum(0.0, -st)) * np.sqrt(
        np.clip(1.0 - (tail_t / 0.035) ** 2, 0.0, 1.0)) - 2.5 * np.maximum(
        0.0, np.abs(tail_t) - 0.035)
    np.maximum(g[rows], tail, out=g[rows])

    # spine ridge and vertebrae (dorsal processes)
    rows = _rows(s1, 0.05, L + 0.12)
    ss, ts = s1[rows], t[rows]
    along = _smoothstep(ss, 0.08, 0.2) * (1.0 - _smoothstep(ss, L - 0.05, L + 0.1))
    vert = 0.6 + 0.4 * np.cos(2.0 * np.pi * ss / 0.075)
    g[rows] += along * (0.012 + 0.014 * thin * vert) * np.exp(-0.5 * (ts / 0.022) ** 2)
    # ends of the short ribs: a shelf on the loin that drops beyond them
    rows = _rows(s1, R, R + 0.3 * L)
    ss, xs = s1[rows], x[rows]
    loin = _smoothstep(ss, R + 0.02, R + 0.07) * (1.0 - _smoothstep(ss, R + 0.2 * L,
                                                                    R + 0.28 * L))
    g[rows] -= loin * (0.02 + 0.04 * thin) * _smoothstep(xs, 0.55, 0.85)
    # ribs: ripples across the barrel
    rows = _rows(s1, R + 0.2 * L, 0.96 * L)
    ss, xs = s1[rows], x[rows]
    ribs = _smoothstep(ss, R + 0.22 * L, R + 0.3 * L) * (1.0 - _smoothstep(ss, 0.85 * L,
                                                                           0.95 * L))
    g[rows] -= ribs * (0.004 + 0.012 * thin) * (0.5 + 0.5 * np.cos(2 * np.pi * ss / 0.085)) \
        * _smoothstep(xs, 0.35, 0.8)
    # hollows: either side of the tailhead (sacral ligament), on the rump between hooks
    # and tailhead, the paralumbar fossa in front of the hooks
    for sd in (1.0, -1.0):
        _dent(g, s1, t, 0.10, sd * 0.075, 0.07, 0.03, 0.06)
        _dent(g, s1, t, 0.55 * R, sd * 0.45 * wh, 0.08, 0.05, 0.03)
        _dent(g, s1, t, R + 0.09 * L, sd * 0.85 * wh, 0.07, 0.07, 0.05)

    # fat: a cover over everything, and a fill that buries the bones and the hollows
    cover = 0.004 + 0.012 * fat
    fill = -0.02 + 0.11 * fat
    sigma = (0.02 + 0.07 * fat) / CELL
    blurred = cv2.GaussianBlur(g, (0, 0), sigmaX=sigma, sigmaY=sigma,
                               borderType=cv2.BORDER_REPLICATE)
    g = _smax(g + cover, blurred + fill, 0.01 + 0.02 * fat)
    height = np.zeros((ns, nt), np.float32)
    trunk = np.zeros((ns, nt), bool)
    trunk[:nr] = g > 0.0
    outline_level = hb0 - D
    height[:nr] = np.where(trunk[:nr], outline_level + g, 0.0)

    # --- neck and head (independent of BCS) ------------------------------------------
    r0 = int(max(0, round((L - 0.15 - S_MIN) / CELL)))
    ds_ = s_all[r0:] - (L - 0.02)
    dt_ = t_all[r0:]
    ang = head_yaw * np.clip(ds_ / (neck_len + head_len), 0.0, 1.0)  # turns gradually
    u = np.cos(ang) * ds_ + np.sin(ang) * dt_
    v = -np.sin(ang) * ds_ + np.cos(ang) * dt_
    un = np.clip(u / neck_len, 0.0, 1.0)
    neck_half = 0.14 - 0.04 * un
    neck_h = hb0 + 0.03 - 0.22 * un ** 1.3
    nx = np.abs(v) / neck_half
    hn = np.where((u > -0.1) & (u < neck_len + 0.05) & (nx < 1.0), neck_h - 0.12 * nx ** 2, 0.0)
    hu = u - neck_len  # along the head, 0 at the poll
    head_half = np.interp(hu, [-0.02, 0.05, 0.18, 0.35, head_len - 0.04, head_len],
                          [0.0, 0.11, 0.105, 0.085, 0.075, 0.0])
    hx = np.abs(v) / np.maximum(head_half, 1e-3)
    head_h = hb0 - 0.22 - 0.10 * np.clip(hu / head_len, 0.0, 1.0)
    hn = np.maximum(hn, np.where((hu > -0.02) & (hu < head_len) & (hx < 1.0),
                                 head_h - 0.07 * hx ** 2, 0.0))
    for sd in (1.0, -1.0):  # ears, held out sideways
        d = np.hypot((u - neck_len - 0.03) / 0.04, (v - sd * 0.16) / 0.08)
        hn = np.maximum(hn, np.where(d < 1.0, hb0 - 0.25 - 0.03 * d, 0.0))
    np.maximum(height[r0:], hn.astype(np.float32), out=height[r0:])

    def land(ls: float, lt: float) -> tuple[float, float, float]:
        i = int(np.clip(round((ls - S_MIN) / CELL), 0, ns - 1))
        ct = lt + float(centre_all[i, 0])
        j = int(np.clip(round((ct + T_HALF) / CELL), 0, nt - 1))
        return (ls, ct, float(height[i, j]))

    landmarks = {
        "hook_left": land(R, wh - 0.03), "hook_right": land(R, -(wh - 0.03)),
        "pin_left": land(0.0, wp - 0.02), "pin_right": land(0.0, -(wp - 0.02)),
        "tailhead": land(0.04, 0.0), "withers": land(L, 0.0),
    }
    return BodyField(height=height, trunk=trunk, s0=S_MIN, t0=-T_HALF, cell=CELL,
                     landmarks=landmarks, h_min=float(min(outline_level, hb0 - 0.45)),
                     h_max=float(height.max()))
