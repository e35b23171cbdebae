"""Surfaces of the top view: coats and dirt on the cow's grid, floors in the image,
and the colour of the light. Albedos are linear (0..1, BGR); the renderer shades
them and encodes to sRGB-like 8-bit at the end."""

from __future__ import annotations

import math

import cv2
import numpy as np

Rng = np.random.Generator

COATS = ("holstein", "black", "red", "jersey", "red_white", "grey")
FLOORS = ("concrete", "grooved", "rubber", "slatted", "straw")


def noise(rng: Rng, h: int, w: int, scale_px: float, octaves: int = 3) -> np.ndarray:
    """Smooth value noise (float32, about zero mean, unit-ish spread), features of
    ``scale_px`` pixels, plus finer octaves at half the amplitude each."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh = max(2, int(h / max(scale_px, 1.0)) + 2)
        gw = max(2, int(w / max(scale_px, 1.0)) + 2)
        small = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        scale_px /= 2.0
    return out / total


def _quantile_mask(field: np.ndarray, share: float) -> np.ndarray:
    thr = float(np.quantile(field, 1.0 - float(np.clip(share, 0.01, 0.99))))
    return np.clip((field - thr) * 12.0 + 0.5, 0.0, 1.0)


def coat_albedo(coat: str, seed: int, patch_share: float, tint: float,
                shape: tuple[int, int], cell: float, s0: float, t0: float) -> np.ndarray:
    """The coat on the cow's grid (rows along the spine), float32 (ns, nt, 3) BGR.

    The pattern is drawn from the coat's own seed, so one cow keeps her patches on
    every pass."""
    rng = np.random.default_rng(seed)
    ns, nt = shape
    px = 1.0 / cell  # grid cells per metre
    if coat in ("holstein", "red_white"):
        f = noise(rng, ns, nt, 0.22 * px, 4) + 0.35 * noise(rng, ns, nt, 0.05 * px, 2)
        m = _quantile_mask(f, patch_share)[..., None]
        white = np.array([0.78, 0.80, 0.80], np.float32) * (1.0 + 0.05 * tint)
        patch = (np.array([0.030, 0.030, 0.034], np.float32) if coat == "holstein"
                 else np.array([0.05, 0.09, 0.30], np.float32) * (1.0 + 0.3 * tint))
        alb = m * patch + (1.0 - m) * white
    elif coat == "black":
        alb = np.empty((ns, nt, 3), np.float32)
        alb[:] = np.array([0.035, 0.033, 0.036], np.float32) * (1.0 + 0.3 * tint)
        if rng.random() < 0.4:  # a few white markings
            f = noise(rng, ns, nt, 0.15 * px, 3)
            m = _quantile_mask(f, float(rng.uniform(0.02, 0.1)))[..., None]
            alb = m * np.array([0.75, 0.77, 0.78], np.float32) + (1 - m) * alb
    elif coat == "red":
        base = np.array([0.035, 0.06, 0.17], np.float32) * (1.0 + 0.4 * tint)
        alb = np.empty((ns, nt, 3), np.float32)
        alb[:] = base
    elif coat == "jersey":
        base = np.array([0.16, 0.30, 0.46], np.float32) * (1.0 + 0.25 * tint)
        dark = 0.55 + 0.45 * np.clip(0.5 + noise(rng, ns, nt, 0.4 * px, 2), 0.0, 1.0)
        alb = base * dark[..., None]
    else:  # grey: Brown Swiss, grey-brown with a pale line along the back
        base = np.array([0.085, 0.10, 0.115], np.float32) * (1.0 + 0.25 * tint)
        t = t0 + cell * np.arange(nt, dtype=np.float32)[None, :]
        stripe = 1.0 + 0.35 * np.exp(-0.5 * (t / 0.05) ** 2)
        alb = base * (stripe * (1.0 + 0.1 * noise(rng, ns, nt, 0.3 * px, 2)))[..., None]
    # hair: fine streaks running along the body
    streak = cv2.GaussianBlur(rng.standard_normal((ns, nt)).astype(np.float32), (0, 0),
                              sigmaX=0.4, sigmaY=2.0)
    alb = alb * (1.0 + 0.25 * streak)[..., None]
    return np.clip(alb, 0.0, 1.0).astype(np.float32)


def add_dirt(rng: Rng, alb: np.ndarray, amount: float, cell: float, s0: float,
             trunk_len: float) -> np.ndarray:
    """Manure and mud on the hindquarters and the lower flanks (per pass)."""
    if amount <= 0.01:
        return alb
    ns, nt = alb.shape[:2]
    s = s0 + cell * np.arange(ns, dtype=np.float32)[:, None]
    t = (np.arange(nt, dtype=np.float32)[None, :] - nt / 2) * cell
    # mostly round the tail and the pins, and low on the flanks
    where = np.exp(-np.maximum(s + 0.1, 0.0) / (0.12 * trunk_len)) + np.clip(
        (np.abs(t) - 0.22) / 0.1, 0.0, 1.0)
    f = noise(rng, ns, nt, 0.05 / cell, 3) + 1.2 * where - 2.2 + 0.8 * amount
    m = np.clip(f * 2.0, 0.0, 1.0)[..., None] * float(rng.uniform(0.4, 0.8))
    dirt = np.array([0.05, 0.09, 0.13], np.float32) * float(rng.uniform(0.6, 1.4))
    return (alb * (1.0 - m) + dirt * m).astype(np.float32)


def floor_albedo(rng: Rng, kind: str, h: int, w: int, px_per_m: float, angle: float,
                 tone: float) -> tuple[np.ndarray, np.ndarray]:
    """Floor (float32 HxWx3 linear BGR) in the image plane, and a float32 HxW map of
    extra depth in metres (gaps between slats). Drawn at half size, then scaled up."""
    hh, ww = (h + 1) // 2, (w + 1) // 2
    alb, deep = _floor(rng, kind, hh, ww, px_per_m / 2, angle, tone)
    alb = cv2.resize(alb, (w, h), interpolation=cv2.INTER_LINEAR)
    deep = cv2.resize(deep, (w, h), interpolation=cv2.INTER_NEAREST)
    return alb, deep


def _floor(rng: Rng, kind: str, h: int, w: int, px_per_m: float, angle: float,
           tone: float) -> tuple[np.ndarray, np.ndarray]:
    deep = np.zeros((h, w), np.float32)
    # coordinates along and across the lane, metres
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ca, sa = math.cos(angle), math.sin(angle)
    along = (ca * xx + sa * yy) / px_per_m
    across = (-sa * xx + ca * yy) / px_per_m
    mottle = noise(rng, h, w, 0.5 * px_per_m, 4)
    if kind in ("concrete", "grooved"):
        g = (0.22 + 0.08 * tone) * (1.0 + 0.12 * mottle + 0.06 * noise(rng, h, w, 4, 1))
        alb = np.dstack([g * 0.98, g, g * 1.02])
        if kind == "grooved":
            pitch = float(rng.uniform(0.04, 0.09))
            pattern = rng.integers(0, 3)
            lines = across if pattern == 0 else along
            groove = np.abs(((lines / pitch) % 1.0) - 0.5) < (0.009 / pitch)
            if pattern == 2:  # diamond grooves
                d1, d2 = (along + across) / pitch, (along - across) / pitch
                groove = (np.abs((d1 % 1.0) - 0.5) < 0.1) | (np.abs((d2 % 1.0) - 0.5) < 0.1)
            g2 = cv2.GaussianBlur(groove.astype(np.float32), (0, 0), 0.8)
            alb = alb * (1.0 - 0.55 * g2)[..., None]
    elif kind == "rubber":
        g = (0.045 + 0.03 * tone) * (1.0 + 0.15 * mottle)
        studs = (np.sin(along / 0.012) * np.sin(across / 0.012)) > 0.6
        g = g * (1.0 + 0.25 * studs)
        seam_pitch = float(rng.uniform(1.0, 1.8))
        seam = np.abs(((along / seam_pitch) % 1.0) - 0.5) > 0.497
        g = np.where(seam, g * 0.4, g)
        alb = np.dstack([g, g, g * 1.05])
    elif kind == "slatted":
        pitch = float(rng.uniform(0.13, 0.17))
        gap = float(rng.uniform(0.025, 0.04))
        ph = (along / pitch) % 1.0
        slot = ph < gap / pitch
        g = (0.2 + 0.07 * tone) * (1.0 + 0.12 * mottle)
        g = np.where(slot, 0.01, g)
        deep = np.where(slot, 0.8, 0.0).astype(np.float32)
        alb = np.dstack([g * 0.97, g, g * 1.03])
    else:  # straw bedding
        base = np.array([0.10, 0.20, 0.27], np.float32) * (1.0 + 0.2 * tone)
        alb = np.empty((h, w, 3), np.float32)
        alb[:] = base
        alb *= (1.0 + 0.2 * mottle)[..., None]
        canvas = np.zeros((h, w, 3), np.uint8)
        n = int(900 * (h * w) / (360 * 300))
        length = 0.12 * px_per_m
        x0 = rng.uniform(0, w, n)
        y0 = rng.uniform(0, h, n)
        ang = rng.uniform(0, math.pi, n)
        shade = rng.uniform(110, 230, n)
        for i in range(n):
            ln = length * (0.4 + rng.random())
            x1, y1 = x0[i] + ln * math.cos(ang[i]), y0[i] + ln * math.sin(ang[i])
            v = int(shade[i])
            cv2.line(canvas, (int(x0[i]), int(y0[i])), (int(x1), int(y1)),
                     (v // 3, int(v * 0.75), v), 1, cv2.LINE_AA)
        straw = (canvas.astype(np.float32) / 255.0) ** 2.2
        cover = (canvas.max(axis=2) > 0)[..., None]
        alb = np.where(cover, straw * 0.9, alb)
    if kind != "straw":  # manure smears and wet patches
        wet = np.clip(noise(rng, h, w, 0.35 * px_per_m, 3) * 2.0 - 1.6, 0.0, 1.0)
        alb = alb * (1.0 - 0.5 * wet)[..., None]
        muck = np.clip(noise(rng, h, w, 0.3 * px_per_m, 4) * 3.0 - 3.3 + 0.6 * tone, 0, 1)
        alb = alb * (1 - muck)[..., None] + muck[..., None] * np.array([0.035, 0.05, 0.06],
                                                                         np.float32)
    return np.clip(alb, 0.0, 1.0).astype(np.float32), deep


def light_colour(kelvin: float) -> np.ndarray:
    """BGR multipliers (green = 1) of a black body at ``kelvin`` (Helland's fit)."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.7 * (t - 60) ** -0.1332
    g = 99.47 * math.log(t) - 161.1 if t <= 66 else 288.1 * (t - 60) ** -0.0755
    bl = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5 * math.log(t - 10) - 305.0)
    rgb = np.clip(np.array([bl, g, r], np.float32), 1.0, 255.0)
    return rgb / rgb[1]
