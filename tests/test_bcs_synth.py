"""The synthetic top-view cow generator: deterministic, well-formed frames whose
back shape follows BCS, held-out looks that training never draws, and a herd
data set in the labels format the BCS fit reads."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.sources.camera.synth.topview import (
    HELDOUT_COATS,
    HELDOUT_FLOORS,
    TRAIN_COATS,
    TRAIN_FLOORS,
    TopViewLook,
    draw_herd_bcs,
    make_herd_photos,
    render,
    sample_body,
    sample_look,
)

W, H = 360, 300  # small frames keep the suite fast; the full size is 720 x 600


def _clean(look: TopViewLook) -> TopViewLook:
    """A look without occluders or sensor defects, cow straight and centred, so a
    shape measurement sees the body only."""
    return replace(look, bars=(), heading_deg=0.0, offset_x=0.0, offset_y=0.0, bend=0.0,
                   head_yaw_deg=0.0, depth_noise_mm=0.0, depth_noise_mm_m2=0.0,
                   depth_holes=0.0, depth_edge_px=0, noise_sigma=0.0, blur_sigma=0.0,
                   motion_px=0.0, jpeg_quality=95, exposure=1.0)


def test_same_seed_same_frame() -> None:
    a_body, a_look = sample_body(np.random.default_rng(7)), sample_look(
        np.random.default_rng(8))
    b_body, b_look = sample_body(np.random.default_rng(7)), sample_look(
        np.random.default_rng(8))
    assert a_body == b_body and a_look == b_look
    a, b = render(a_body, 3.0, a_look, width=W, height=H), render(b_body, 3.0, b_look,
                                                                    width=W, height=H)
    assert np.array_equal(a.colour, b.colour)
    assert np.array_equal(a.depth, b.depth)
    assert np.array_equal(a.mask, b.mask)
    other = render(a_body, 3.0, sample_look(np.random.default_rng(9)), width=W, height=H)
    assert not np.array_equal(a.colour, other.colour)


def test_frames_are_well_formed_and_the_cow_is_nearer_than_the_floor() -> None:
    rng = np.random.default_rng(11)
    for split in ("train", "heldout"):
        for _ in range(4):
            body, look = sample_body(rng, split), sample_look(rng, split)
            s = render(body, float(draw_herd_bcs(rng)), look, width=W, height=H)
            assert s.colour.shape == (H, W, 3) and s.colour.dtype == np.uint8
            assert s.depth.shape == (H, W) and s.depth.dtype == np.uint16
            assert s.mask.shape == (H, W) and s.mask.dtype == bool
            share = s.mask.mean()
            assert 0.05 < share < 0.6, (look.name, share)
            valid = s.depth > 0
            assert 0.5 < valid.mean() < 1.0  # holes exist but most pixels have depth
            cow_mm = np.median(s.depth[s.mask & valid])
            floor_mm = np.median(s.depth[~s.mask & valid])
            # the back is about its height above the floor nearer to the camera
            assert abs(floor_mm - look.camera_height * 1000) < 150
            assert 1000 < floor_mm - cow_mm < 1700, (cow_mm, floor_mm)
            assert s.truth["look"] == look.name


def test_full_size_frame() -> None:
    rng = np.random.default_rng(3)
    s = render(sample_body(rng), 2.75, sample_look(rng))
    assert s.colour.shape == (600, 720, 3) and s.depth.shape == (600, 720)
    hook = s.truth["hook_left"]
    assert 0 <= hook[0] < 720 and 0 <= hook[1] < 600


def _rear_solidity(mask: np.ndarray, truth: dict) -> float:
    """Area / convex hull area of the mask between the tail end and the hooks'
    front edge (the rump and loin): an angular, notched outline scores lower."""
    hx = max(truth["hook_left"][0], truth["hook_right"][0])
    tx = truth["tailhead"][0]
    span = hx - tx
    x0, x1 = int(tx - 0.4 * span), int(hx + 0.45 * span)
    part = np.zeros_like(mask, np.uint8)
    part[:, x0:x1] = mask[:, x0:x1]
    cnts, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cnts, key=cv2.contourArea)
    return float(cv2.contourArea(c) / cv2.contourArea(cv2.convexHull(c)))


def _relief_mm(depth: np.ndarray, mask: np.ndarray, truth: dict) -> float:
    """How far (mm) the back falls from the spine to halfway out to the outline,
    averaged over the cross-sections from the tailhead to the withers (the cow
    lies straight along the rows): a thin cow's roof-shaped back falls further
    than a fat cow's flat one."""
    (tx, ty), (wx, wy) = truth["tailhead"], truth["withers"]
    drops = []
    for x in range(int(tx + 0.1 * (wx - tx)), int(wx - 0.1 * (wx - tx))):
        y = round(ty + (wy - ty) * (x - tx) / (wx - tx))
        rows = np.flatnonzero(mask[:, x])
        if len(rows) < 10 or not rows[0] < y < rows[-1]:
            continue
        col = depth[:, x].astype(np.float32)

        def at(r: int, col: np.ndarray = col) -> float:
            near = col[r - 2:r + 3]
            near = near[near > 0]  # 0 = no depth there
            return float(np.median(near)) if len(near) else np.nan

        drops.append((at(int((y + rows[0]) / 2)) + at(int((y + rows[-1]) / 2))) / 2 - at(y))
    return float(np.nanmean(drops))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thin_cows_are_angular_and_bony_fat_cows_round(seed: int) -> None:
    rng = np.random.default_rng(seed)
    body = sample_body(rng)
    look = _clean(sample_look(rng))
    thin, fat = render(body, 2.0, look, width=W, height=H), render(body, 4.0, look,
                                                                     width=W, height=H)
    s_thin, s_fat = _rear_solidity(thin.mask, thin.truth), _rear_solidity(fat.mask, fat.truth)
    assert s_thin < s_fat - 0.01, (s_thin, s_fat)
    r_thin = _relief_mm(thin.depth, thin.mask, thin.truth)
    r_fat = _relief_mm(fat.depth, fat.mask, fat.truth)
    assert r_thin > 1.15 * r_fat, (r_thin, r_fat)
    # BCS 3 sits between: rounder than 2.0 in outline, flatter in relief
    mid = render(body, 3.0, look, width=W, height=H)
    assert s_thin < _rear_solidity(mid.mask, mid.truth) <= s_fat
    assert _relief_mm(mid.depth, mid.mask, mid.truth) < 0.9 * r_thin


def test_heldout_uses_choices_train_never_draws() -> None:
    rng = np.random.default_rng(5)
    train = [sample_look(rng, "train") for _ in range(300)]
    held = [sample_look(rng, "heldout") for _ in range(300)]
    assert {lk.floor for lk in train} <= set(TRAIN_FLOORS)
    assert {lk.floor for lk in held} & set(HELDOUT_FLOORS) == set(HELDOUT_FLOORS)
    assert all(3000 <= lk.kelvin <= 7000 for lk in train)
    assert any(lk.kelvin < 3000 or lk.kelvin > 7000 for lk in held)
    assert all(lk.camera_height <= 3.45 for lk in train)
    assert any(lk.camera_height > 3.45 for lk in held)
    assert all(lk.sun_elevation_deg >= 35 for lk in train)
    assert any(lk.sun_elevation_deg < 35 for lk in held)

    def off(lk: TopViewLook) -> float:
        return min(abs(lk.heading_deg % 180), 180 - abs(lk.heading_deg % 180))

    assert max(off(lk) for lk in train) <= 18 + 5  # within the lane: yaw up to 5
    assert max(off(lk) for lk in held) > 25
    train_coats = {sample_body(rng, "train").coat for _ in range(300)}
    held_coats = {sample_body(rng, "heldout").coat for _ in range(300)}
    assert train_coats <= set(TRAIN_COATS)
    assert set(HELDOUT_COATS) <= held_coats
    with pytest.raises(ValueError):
        sample_look(rng, "dev")


def test_herd_scores_look_like_a_herd() -> None:
    rng = np.random.default_rng(0)
    scores = np.array([draw_herd_bcs(rng) for _ in range(3000)])
    assert scores.min() >= 1.5 and scores.max() <= 4.5
    assert np.all((scores * 4) == np.round(scores * 4))
    assert 0.6 < np.mean((scores >= 2.5) & (scores <= 3.75)) < 0.9
    assert 2.8 < scores.mean() < 3.3


def test_make_herd_photos_writes_labels_the_fit_can_read(tmp_path: Path) -> None:
    out = tmp_path / "herd"
    path = make_herd_photos(4, 3, (1, 2), "train", out, width=W, height=H, depth=True)
    assert path == out / "labels.csv"
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["image", "bcs", "animal"]
        rows = list(reader)
    assert 3 <= len(rows) <= 6
    assert len({r["animal"] for r in rows}) == 3
    for r in rows:
        assert not Path(r["image"]).is_absolute()
        img = cv2.imread(str(path.parent / r["image"]))
        assert img is not None and img.shape == (H, W, 3)
        depth = cv2.imread(str((path.parent / r["image"]).with_suffix(".png")),
                           cv2.IMREAD_UNCHANGED)
        assert depth is not None and depth.dtype == np.uint16
        bcs = float(r["bcs"])
        assert 1.0 <= bcs <= 5.0 and bcs * 4 == round(bcs * 4)
    by_animal: dict[str, set[str]] = {}
    for r in rows:
        by_animal.setdefault(r["animal"], set()).add(r["bcs"])
    assert all(len(v) == 1 for v in by_animal.values())  # one score per cow
    again = make_herd_photos(4, 3, (1, 2), "train", tmp_path / "again", width=W, height=H)
    assert again.read_text() == path.read_text()
