"""Lens calibration from chessboard photos rendered in the test through a known
pinhole camera with known distortion: the calibration must find them again.
Also the calibration files and `dairy-edge calibrate camera`."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from agent.cli.calibrate import add_calibrate_parser
from agent.config.model import CameraConfig
from agent.errors import ConfigError
from agent.vision.calibrate import (
    CalibrationError,
    calibrate_from_images,
    load_camera_calibration,
    resolve_calibration,
    save_camera_calibration,
)

SIZE = (640, 480)
K_TRUE = np.array([[560.0, 0, 322.0], [0, 560.0, 236.0], [0, 0, 1]])
DIST_TRUE = np.array([-0.28, 0.09, 0.0, 0.0, 0.0])
BOARD = (9, 6)  # inner corners
SQUARE_MM = 25.0
PPM = 4.0  # texture pixels per mm
POSES = [  # rotation (degrees about x, y, z), translation (mm): tilted, into each corner
    ((0, 0, 0), (-100, -63, 520)),
    ((20, -15, 5), (-260, -193, 513)),
    ((-20, 15, -5), (69, -177, 606)),
    ((15, 20, 0), (-269, 69, 578)),
    ((-15, -20, 10), (83, 53, 546)),
    ((0, 30, 0), (-87, -62, 610)),
    ((30, 0, 0), (-100, -54, 529)),
    ((-10, 10, 25), (-193, -96, 629)),
    ((10, -10, -25), (12, -12, 574)),
    ((-25, 0, 0), (-100, -163, 646)),
    ((25, 0, 0), (-100, 58, 594)),
]


def _texture() -> np.ndarray:
    """A printed board: 10 x 7 squares and a white margin of one square."""
    cols, rows = BOARD[0] + 1, BOARD[1] + 1
    px = int(SQUARE_MM * PPM)
    tex = np.full(((rows + 2) * px, (cols + 2) * px), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                tex[(r + 1) * px:(r + 2) * px, (c + 1) * px:(c + 2) * px] = 0
    return tex


@functools.cache
def _distortion_maps() -> np.ndarray:
    """For each distorted pixel, the undistorted point that lands on it."""
    grid = np.stack(np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1])), -1).reshape(-1, 1, 2)
    und = cv2.undistortPoints(grid.astype(np.float64), K_TRUE, DIST_TRUE, P=K_TRUE)
    return und.reshape(SIZE[1], SIZE[0], 2).astype(np.float32)


def _render(rot_deg: tuple[float, float, float], t: tuple[float, float, float]) -> np.ndarray:
    """The board seen through K_TRUE and DIST_TRUE at one pose (grey, 640x480)."""
    rvec = np.deg2rad(np.array(rot_deg, np.float64))
    r, _ = cv2.Rodrigues(rvec)
    pad = 200  # render the undistorted view larger: barrel distortion pulls in the edges
    k_big = K_TRUE.copy()
    k_big[0, 2] += pad
    k_big[1, 2] += pad
    # texture pixel -> board plane (mm); the first inner corner is the plane origin
    to_plane = np.array([[1 / PPM, 0, -2 * SQUARE_MM], [0, 1 / PPM, -2 * SQUARE_MM], [0, 0, 1]])
    h = k_big @ np.column_stack([r[:, 0], r[:, 1], np.array(t, np.float64)]) @ to_plane
    big = (SIZE[0] + 2 * pad, SIZE[1] + 2 * pad)
    flat = cv2.warpPerspective(_texture(), h, big, flags=cv2.INTER_AREA, borderValue=(90,))
    maps = _distortion_maps() + pad
    img = cv2.remap(flat, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR)
    noise = np.random.default_rng(sum(t).__int__()).normal(0, 2, img.shape)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("board")
    paths = []
    for i, (rot, t) in enumerate(POSES):
        path = folder / f"board{i:02d}.png"
        cv2.imwrite(str(path), _render(rot, t))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def blanks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("blank")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(4):
        path = folder / f"wall{i}.png"
        cv2.imwrite(str(path), rng.integers(80, 170, (SIZE[1], SIZE[0]), dtype=np.uint8))
        paths.append(path)
    return paths


def _edge_shift(k: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Where points out to the area the boards covered land when undistorted."""
    pts = np.array([[50, 30], [590, 40], [60, 450], [580, 440], [320, 20], [20, 240], [620, 240],
                    [320, 236]], np.float64).reshape(-1, 1, 2)
    return cv2.undistortPoints(pts, k, dist, P=K_TRUE).reshape(-1, 2)


def test_recovers_the_camera_it_was_rendered_with(photos: list[Path]) -> None:
    seen: list[tuple[int, bool]] = []
    cal = calibrate_from_images(photos, BOARD, SQUARE_MM, camera_id="lane1",
                                progress=lambda i, n, p, found: seen.append((i, found)))
    assert cal.n_images == len(POSES) and [i for i, _ in seen] == list(range(1, len(POSES) + 1))
    assert cal.image_size == SIZE and cal.board == BOARD
    assert cal.rms < 0.5
    fx, fy = cal.focal_px
    assert fx == pytest.approx(560, rel=0.02) and fy == pytest.approx(560, rel=0.02)
    assert cal.camera_matrix[0, 2] == pytest.approx(322, abs=6)
    assert cal.camera_matrix[1, 2] == pytest.approx(236, abs=6)
    # the coefficients trade off against each other; what matters is the
    # correction they make: within 2 px out to where the boards reached
    # (beyond that any calibration extrapolates: hence "near the corners" in --help)
    true = _edge_shift(K_TRUE, DIST_TRUE)
    found = _edge_shift(cal.camera_matrix, cal.dist_coeffs)
    assert np.abs(found - true).max() < 2.0
    assert cal.dist_coeffs[0] == pytest.approx(-0.28, abs=0.05)


def test_too_few_boards_says_how_many_and_what_to_check(
    photos: list[Path], blanks: list[Path], tmp_path: Path
) -> None:
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a photo")
    with pytest.raises(CalibrationError) as err:
        calibrate_from_images([*photos[:2], *blanks, junk], BOARD, SQUARE_MM)
    text = str(err.value)
    assert "found the board in only 2 of 7 photos; need at least 5" in text
    assert "wall0.png" in text and "not an image: notes.jpg" in text
    assert "INNER corners" in text


def test_wrong_board_size_finds_nothing(photos: list[Path]) -> None:
    with pytest.raises(CalibrationError, match="only 0 of 2"):
        calibrate_from_images(photos[:2], (7, 7), SQUARE_MM)


def test_photos_of_different_sizes_are_refused(photos: list[Path], tmp_path: Path) -> None:
    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), np.zeros((240, 320), np.uint8))
    with pytest.raises(CalibrationError, match="320x240 but the first photo is 640x480"):
        calibrate_from_images([photos[0], odd], BOARD, SQUARE_MM)


def test_file_round_trip_and_resolution(photos: list[Path], tmp_path: Path) -> None:
    cal = calibrate_from_images(photos[:6], BOARD, SQUARE_MM, camera_id="lane1")
    out = save_camera_calibration(cal, tmp_path / "calibration" / "cameras" / "lane1.yaml")
    data = yaml.safe_load(out.read_text())
    assert set(data) == {"camera_id", "image_size", "camera_matrix", "dist_coeffs", "rms",
                         "board", "square_mm", "n_images", "created"}
    back = load_camera_calibration(out)
    assert np.allclose(back.camera_matrix, cal.camera_matrix)
    assert np.allclose(back.dist_coeffs, cal.dist_coeffs)
    assert (back.camera_id, back.image_size, back.n_images) == ("lane1", SIZE, 6)

    # <calibration_dir>/cameras/<id>.yaml when present, else none
    found = resolve_calibration(CameraConfig(id="lane1"), tmp_path / "calibration")
    assert found is not None and np.allclose(found.camera_matrix, cal.camera_matrix)
    assert resolve_calibration(CameraConfig(id="other"), tmp_path / "calibration") is None
    # an explicit path wins, and must exist
    explicit = CameraConfig(id="other", calibration=out)
    assert resolve_calibration(explicit, tmp_path / "nowhere") is not None
    with pytest.raises(ConfigError, match="not found; run `dairy-edge calibrate camera"):
        resolve_calibration(CameraConfig(id="x", calibration=tmp_path / "gone.yaml"), tmp_path)


GOOD_K = "camera_matrix: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("camera_matrix: [1, 2", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("image_size: [640, 480]\ndist_coeffs: [0, 0, 0, 0]\n", "missing key 'camera_matrix'"),
        ("image_size: [640, 480]\ncamera_matrix: [[1, 0], [0, 1]]\ndist_coeffs: [0, 0, 0, 0]\n",
         "camera_matrix: must be a 3x3"),
        (f"image_size: [640, 480]\n{GOOD_K}dist_coeffs: [0, 0, 0]\n",
         "dist_coeffs: must be 4, 5, 8"),
        (f"image_size: big\n{GOOD_K}dist_coeffs: [0, 0, 0, 0]\n", "image_size: must be"),
    ],
)
def test_bad_files_say_which_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_camera_calibration(path)
    assert str(path) in str(err.value)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dairy-edge")
    add_calibrate_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_writes_the_file_where_the_agent_finds_it(
    photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"gateway:\n  calibration_dir: {tmp_path / 'cal'}\n")
    argv = ["calibrate", "camera", "--camera-id", "lane1", "--board", "9x6", "--square-mm", "25",
            "-c", str(config), *map(str, photos[:6])]
    args = _cli(argv)
    assert args.func(args) == 0
    out = tmp_path / "cal" / "cameras" / "lane1.yaml"
    assert load_camera_calibration(out).n_images == 6
    captured = capsys.readouterr()
    assert "board found in 6 of 6 photos, RMS reprojection error" in captured.out
    assert "6/6" in captured.err  # the progress bar
    # an existing calibration is kept unless --force
    assert args.func(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    args = _cli([*argv[:2], "--force", *argv[2:]])
    assert args.func(args) == 0


def test_cli_failure_and_bad_arguments(
    blanks: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli(["calibrate", "camera", "--camera-id", "lane1", "--board", "9x6",
                 "-o", str(tmp_path / "x.yaml"), "--no-progress", *map(str, blanks)])
    assert args.func(args) == 1
    assert "calibration failed: found the board in only 0 of 4" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()
    for bad in (["--board", "9"], ["--board", "1x6"], ["--camera-id", "../etc"]):
        base = {"--board": "9x6", "--camera-id": "lane1"}
        base[bad[0]] = bad[1]
        with pytest.raises(SystemExit):
            _cli(["calibrate", "camera", *[v for kv in base.items() for v in kv], "p.jpg"])
        assert "INNER corners" in capsys.readouterr().err or bad[0] == "--camera-id"
