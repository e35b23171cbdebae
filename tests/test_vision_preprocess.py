"""Preprocessing: rotation, ROI and undistortion give the right pixels, and a box
found in the processed image maps back to where it is in the original frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.config.model import CameraConfig
from agent.vision.calibrate import CameraCalibration
from agent.vision.preprocess import Preprocessor, resize, to_grey, to_rgb

W, H = 640, 480
K = np.array([[520.0, 0, 318.0], [0, 520.0, 243.0], [0, 0, 1]])
DIST = np.array([-0.3, 0.1, 0.001, -0.001, 0.0])
ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _cal(size: tuple[int, int] = (W, H)) -> CameraCalibration:
    return CameraCalibration("cam", size, K.copy(), DIST.copy(), 0.2, (9, 6), 25.0, 10, "")


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _marked(box: tuple[int, int, int, int]) -> np.ndarray:
    """A dark frame with one bright rectangle at ``box`` (x, y, w, h)."""
    img = np.zeros((H, W, 3), np.uint8)
    x, y, w, h = box
    img[y:y + h, x:x + w] = 255
    return img


def _found(img: np.ndarray) -> tuple[float, float, float, float]:
    """The bounding box of the bright pixels (continuous coordinates)."""
    ys, xs = np.nonzero(to_grey(img) > 127)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),\
        float(ys.max() + 1 - ys.min())


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("roi", [None, (0.1, 0.2, 0.5, 0.6)])
def test_rotation_and_roi_without_a_lens_are_exact(
    rotation: int, roi: tuple[float, float, float, float] | None
) -> None:
    img = _frame()
    out = Preprocessor(CameraConfig(id="c", rotation=rotation, roi=roi)).process(img)
    rotated = cv2.rotate(img, ROTATE[rotation]) if rotation else img
    rh, rw = rotated.shape[:2]
    x, y, w, h = (0, 0, rw, rh) if roi is None else (
        round(roi[0] * rw), round(roi[1] * rh), round(roi[2] * rw), round(roi[3] * rh))
    assert out.geometry.crop == (x, y, w, h)
    assert np.array_equal(out.image, rotated[y:y + h, x:x + w])
    if rotation == 0:  # the crop is a view of the frame: nothing copied
        assert np.shares_memory(out.image, img)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_box_maps_back_to_the_original_frame(rotation: int) -> None:
    box = (400, 90, 60, 30)
    pre = Preprocessor(CameraConfig(id="c", rotation=rotation, roi=(0.05, 0.05, 0.9, 0.9)))
    out = pre.process(_marked(box))
    assert out.geometry.to_original(_found(out.image)) == pytest.approx(box)
    # a model that ran on a half-size copy reports in its own pixels
    ph, pw = out.image.shape[:2]
    half = resize(out.image, (pw // 2, ph // 2), "model")
    back = out.geometry.to_original(_found(half), from_size=(pw // 2, ph // 2))
    assert back == pytest.approx(box, abs=2.5)


def test_undistortion_matches_opencv_and_crops_and_rotates_in_one_pass() -> None:
    img = _frame(1)
    img = cv2.GaussianBlur(img, (9, 9), 3)  # smooth: compare interpolation, not noise
    cfg = CameraConfig(id="c", rotation=90, roi=(0.1, 0.1, 0.8, 0.7))
    out = Preprocessor(cfg, _cal()).process(img)
    reference = cv2.rotate(cv2.undistort(img, K, DIST), cv2.ROTATE_90_CLOCKWISE)
    x, y, w, h = out.geometry.crop
    diff = np.abs(out.image.astype(int) - reference[y:y + h, x:x + w].astype(int))
    assert out.image.shape == (h, w, 3)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4


@pytest.mark.parametrize("rotation", [0, 270])
def test_with_a_lens_a_box_still_maps_back(rotation: int) -> None:
    # near a corner, where barrel distortion moves pixels by tens of pixels
    cfg = CameraConfig(id="c", rotation=rotation, roi=(0.02, 0.02, 0.96, 0.96))
    small = (70, 60, 6, 6)
    out = Preprocessor(cfg, _cal()).process(_marked(small))
    found = _found(out.image)
    x, y = out.geometry.offset
    assert out.geometry.lens is not None
    # the marker moved in the processed image (undistorted) ...
    assert abs(found[0] + x - 70) > 10 or abs(found[1] + y - 60) > 10
    # ... and maps back to where it was in the raw frame: the centre to half a
    # pixel, the size to what thresholding the resampled marker adds
    bx, by, bw, bh = out.geometry.to_original(found)
    assert (bx + bw / 2, by + bh / 2) == pytest.approx((73, 63), abs=0.5)
    assert (bw, bh) == pytest.approx((6, 6), abs=2)
    # a bigger box: straight edges bend, so what comes back is the box around
    # the bent outline: it holds the original and is not much bigger
    box = (60, 50, 60, 36)
    out = Preprocessor(cfg, _cal()).process(_marked(box))
    bx, by, bw, bh = out.geometry.to_original(_found(out.image))
    assert bx <= 60.5 and by <= 50.5 and bx + bw >= 119.5 and by + bh >= 85.5
    assert bw * bh < 1.7 * 60 * 36  # at k1 = -0.3 in the corner: a box of a box


@pytest.mark.parametrize("lens", [False, True])
def test_scale_folds_the_model_downscale_into_the_same_pass(lens: bool) -> None:
    img = cv2.GaussianBlur(_frame(4), (9, 9), 3)
    cfg = CameraConfig(id="c", rotation=90, roi=(0.1, 0.1, 0.8, 0.7))
    out = Preprocessor(cfg, _cal() if lens else None, scale=0.5).process(img)
    full = Preprocessor(cfg, _cal() if lens else None).process(img)
    _x, _y, w, h = out.geometry.crop
    assert out.image.shape[:2] == (round(h / 2), round(w / 2)) and out.geometry.scale == 0.5
    half = cv2.resize(full.image, out.geometry.size, interpolation=cv2.INTER_AREA)
    assert np.abs(out.image.astype(int) - half.astype(int)).mean() < 1.5
    box = (300, 200, 40, 40)
    marked = Preprocessor(cfg, _cal() if lens else None, scale=0.5).process(_marked(box))
    assert marked.geometry.to_original(_found(marked.image)) == pytest.approx(box, abs=3)


def test_a_calibration_at_another_resolution_scales_or_is_refused() -> None:
    # same aspect ratio: the intrinsics scale (1280x960 frames, 640x480 calibration)
    big = cv2.resize(cv2.GaussianBlur(_frame(2), (9, 9), 3), (W * 2, H * 2))
    pre = Preprocessor(CameraConfig(id="c"), _cal())
    out = pre.process(big)
    k2 = K.copy()
    k2[:2] *= 2
    k2[0, 2], k2[1, 2] = (K[0, 2] + 0.5) * 2 - 0.5, (K[1, 2] + 0.5) * 2 - 0.5
    assert np.abs(out.image.astype(int) - cv2.undistort(big, k2, DIST).astype(int)).mean() < 1.0
    assert pre.problem is None
    # another aspect ratio: frames pass without undistortion and the problem says what to do
    wide = np.zeros((360, 640, 3), np.uint8)
    out = pre.process(wide)
    assert out.geometry.lens is None and out.image.shape == wide.shape
    assert pre.problem is not None and "recalibrate at this resolution" in pre.problem


def test_depth_and_grey_frames_go_through() -> None:
    depth = np.random.default_rng(3).integers(0, 4000, (H, W), dtype=np.uint16)
    out = Preprocessor(CameraConfig(id="d", rotation=180, roi=(0.5, 0.5, 0.5, 0.5)),
                       _cal()).process(depth)
    assert out.image.dtype == np.uint16 and out.image.shape == (240, 320)


def test_colour_is_converted_once_and_shared() -> None:
    img = _frame()
    out = Preprocessor(CameraConfig(id="c")).process(img)
    assert out.grey is out.grey and out.rgb is out.rgb
    assert np.array_equal(out.rgb, img[:, :, ::-1])
    assert np.array_equal(out.grey, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    assert to_grey(out.grey) is out.grey
    assert to_rgb(out.grey).shape == (H, W, 3)


def _text_scene(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    img = np.full((h, w, 3), 120, np.uint8)
    for _ in range(250):
        org = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.putText(img, str(rng.integers(0, 9999)), org, cv2.FONT_HERSHEY_SIMPLEX,
                    float(rng.uniform(0.5, 2)), colour, 2)
    return img


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a.astype(float) - b.astype(float)) ** 2).mean()))


@pytest.mark.parametrize("size", [(640, 360), (416, 234), (320, 180)])
def test_model_resize_is_close_to_area_averaging(size: tuple[int, int]) -> None:
    img = _text_scene(1280, 720)
    out = resize(img, size, "model")
    area = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    linear = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    assert out.shape == (size[1], size[0], 3)
    # anti-aliased: near INTER_AREA, and never worse than plain bilinear
    assert _rmse(out, area) < 2.5
    assert _rmse(out, area) <= _rmse(linear, area) + 1e-9


def test_thumbnail_averages_sensor_noise() -> None:
    noisy = np.clip(np.random.default_rng(7).normal(128, 20, (720, 1280)), 0, 255).astype(np.uint8)
    thumb = resize(noisy, (64, 36), "thumbnail")
    plain = cv2.resize(noisy, (64, 36), interpolation=cv2.INTER_LINEAR)
    assert thumb.shape == (36, 64)
    # 16 samples a pixel divide the noise by 4 (bilinear takes 4: by 2)
    assert thumb.std() < 20 / 4 * 1.15 and thumb.std() < plain.std() * 0.6


def test_crop_upscale_and_no_op() -> None:
    crop = _text_scene(60, 30)
    assert resize(crop, (120, 60), "crop").shape == (60, 120, 3)
    assert resize(crop, (60, 30), "crop") is crop
