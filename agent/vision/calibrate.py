"""Lens calibration from chessboard photos, and the per-camera calibration files.

``dairy-edge calibrate camera`` calls :func:`calibrate_from_images` and writes
``calibration/cameras/<camera id>.yaml``; the agent finds it again with
:func:`resolve_calibration`. The board size is the count of INNER corners
(where four squares meet), columns x rows: a printed board of 10 x 7 squares
is ``9x6``.

File format (YAML, plain lists so it can be read and diffed by people)::

    camera_id: lane1
    image_size: [1280, 720]          # width, height of the photos
    camera_matrix: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    dist_coeffs: [k1, k2, p1, p2, k3]
    rms: 0.31                        # reprojection error, pixels
    board: [9, 6]
    square_mm: 25.0
    n_images: 14                     # photos in which the board was found
    created: "2026-09-01T10:00:00Z"
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from agent.config.model import CameraConfig
from agent.errors import ConfigError, EdgeAgentError

MIN_IMAGES = 5
# Above this the calibration is suspect (a blurred photo, a bent board, a wrong
# square count); the CLI says so but still writes the file.
RMS_WARN_PX = 1.0
# Corner search on big photos runs on a copy scaled to this longest side, then
# the corners are refined on the full-resolution image (findChessboardCorners
# is slow on 12-megapixel phone photos; cornerSubPix is not).
_DETECT_MAX_SIDE = 1600
_DIST_LENGTHS = (4, 5, 8, 12, 14)

# progress(done, total, path, found)
Progress = Callable[[int, int, Path, bool], None]


class CalibrationError(EdgeAgentError):
    """The photos cannot give a calibration; the message says what to change."""


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    camera_id: str
    image_size: tuple[int, int]  # width, height
    camera_matrix: np.ndarray  # 3 x 3, float64
    dist_coeffs: np.ndarray  # (N,), float64, OpenCV order k1 k2 p1 p2 [k3 ...]
    rms: float  # RMS reprojection error, pixels
    board: tuple[int, int]  # inner corners, columns x rows
    square_mm: float
    n_images: int  # photos used
    created: str  # ISO 8601 UTC

    @property
    def focal_px(self) -> tuple[float, float]:
        return float(self.camera_matrix[0, 0]), float(self.camera_matrix[1, 1])


def calibrate_from_images(
    paths: Sequence[Path | str],
    board: tuple[int, int],
    square_mm: float,
    camera_id: str = "camera",
    progress: Progress | None = None,
) -> CameraCalibration:
    """Calibrate a lens from photos of a flat chessboard with ``board`` inner corners.

    Raises :class:`CalibrationError` naming the photos that failed and what to do.
    """
    cols, rows = board
    if cols < 2 or rows < 2:
        raise CalibrationError(f"board {cols}x{rows}: give the INNER corners, at least 2x2")
    if square_mm <= 0:
        raise CalibrationError(f"square size {square_mm} mm: must be positive")
    if not paths:
        raise CalibrationError("no photos given")
    obj = np.zeros((cols * rows, 3), np.float32)
    obj[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_mm

    image_size: tuple[int, int] | None = None
    object_points: list[np.ndarray] = []
    image_points: list[np.ndarray] = []
    unreadable: list[str] = []
    no_board: list[str] = []
    for i, raw in enumerate(paths, 1):
        path = Path(raw)
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        found = False
        if grey is None:
            unreadable.append(path.name)
        else:
            size = (grey.shape[1], grey.shape[0])
            if image_size is None:
                image_size = size
            elif size != image_size:
                raise CalibrationError(
                    f"{path}: {size[0]}x{size[1]} but the first photo is "
                    f"{image_size[0]}x{image_size[1]}; take every photo at the resolution "
                    f"the camera will run at"
                )
            corners = find_board(grey, board)
            if corners is None:
                no_board.append(path.name)
            else:
                found = True
                object_points.append(obj)
                image_points.append(corners)
        if progress is not None:
            progress(i, len(paths), path, found)

    n = len(image_points)
    if n < MIN_IMAGES or image_size is None:
        problems = []
        if no_board:
            problems.append("no board in " + _names(no_board))
        if unreadable:
            problems.append("not an image: " + _names(unreadable))
        raise CalibrationError(
            f"found the board in only {n} of {len(paths)} photos; need at least {MIN_IMAGES}: "
            + "; ".join(problems)
            + f". Check --board is the count of INNER corners ({cols}x{rows} given; a board "
            f"of 10x7 squares is 9x6), and that the whole board is in view, flat, sharp "
            f"and evenly lit, at several angles and distances."
        )
    rms, k, dist, _rvecs, _tvecs = cv2.calibrateCamera(
        object_points, image_points, image_size, None, None
    )
    if not (math.isfinite(rms) and np.all(np.isfinite(k)) and np.all(np.isfinite(dist))):
        raise CalibrationError(
            "the calibration did not converge; take more photos with the board tilted "
            "and at the edges of the view"
        )
    return CameraCalibration(
        camera_id=camera_id,
        image_size=image_size,
        camera_matrix=np.asarray(k, np.float64),
        dist_coeffs=np.asarray(dist, np.float64).ravel(),
        rms=float(rms),
        board=(cols, rows),
        square_mm=float(square_mm),
        n_images=n,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def find_board(grey: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners (N x 1 x 2, float32) of the board in ``grey``, or None."""
    h, w = grey.shape
    scale = min(1.0, _DETECT_MAX_SIDE / max(w, h))
    small = grey if scale == 1.0 else cv2.resize(
        grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
    )
    # FAST_CHECK: a photo without the board is rejected in milliseconds, not seconds
    flags = (cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
             | cv2.CALIB_CB_FAST_CHECK)
    found, corners = cv2.findChessboardCorners(small, board, flags=flags)
    if not found or corners is None:
        return None
    corners = (corners / scale).astype(np.float32)
    # refinement window about a third of a square, at least 3 px
    square = float(np.linalg.norm(corners[0, 0] - corners[1, 0]))
    win = int(max(3, min(11, square / 3)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01)
    return cv2.cornerSubPix(grey, corners, (win, win), (-1, -1), criteria)


def _names(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# ------------------------------------------------------------------------ files
def save_camera_calibration(cal: CameraCalibration, path: Path | str) -> Path:
    """Write ``cal`` as YAML to ``path`` (folders created; atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "camera_id": cal.camera_id,
        "image_size": list(cal.image_size),
        "camera_matrix": [[float(v) for v in row] for row in cal.camera_matrix],
        "dist_coeffs": [float(v) for v in cal.dist_coeffs],
        "rms": round(cal.rms, 6),
        "board": list(cal.board),
        "square_mm": cal.square_mm,
        "n_images": cal.n_images,
        "created": cal.created,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        "# Lens calibration written by `dairy-edge calibrate camera`; do not edit by hand.\n"
        + yaml.safe_dump(data, sort_keys=False, default_flow_style=None),
        encoding="utf-8",
    )
    tmp.replace(path)
    return path


def load_camera_calibration(path: Path | str) -> CameraCalibration:
    """Read a calibration file; :class:`ConfigError` naming the file and key when bad."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read camera calibration: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a camera calibration must be a mapping "
                          f"(write it with `dairy-edge calibrate camera`)")

    def need(key: str) -> Any:
        if key not in data:
            raise ConfigError(f"{path}: missing key '{key}' (recreate the file with "
                              f"`dairy-edge calibrate camera`)")
        return data[key]

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {why}")

    try:
        size = tuple(int(v) for v in need("image_size"))
    except (TypeError, ValueError):
        raise bad("image_size", "must be [width, height]") from None
    if len(size) != 2 or min(size) < 16:
        raise bad("image_size", "must be [width, height], each at least 16")
    try:
        k = np.array(need("camera_matrix"), dtype=np.float64)
    except (TypeError, ValueError):
        raise bad("camera_matrix", "must be a 3x3 list of numbers") from None
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise bad("camera_matrix", "must be a 3x3 matrix of finite numbers with fx, fy > 0")
    try:
        dist = np.array(need("dist_coeffs"), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise bad("dist_coeffs", "must be a list of numbers") from None
    if len(dist) not in _DIST_LENGTHS or not np.all(np.isfinite(dist)):
        raise bad("dist_coeffs", f"must be {', '.join(map(str, _DIST_LENGTHS))} finite numbers")
    try:
        board = tuple(int(v) for v in data.get("board", (0, 0)))
        rms = float(data.get("rms", math.nan))
        square = float(data.get("square_mm", 0.0))
        n_images = int(data.get("n_images", 0))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: board, rms, square_mm or n_images: {err}") from None
    camera_id = data.get("camera_id", path.stem)
    return CameraCalibration(
        camera_id=str(camera_id),
        image_size=(size[0], size[1]),
        camera_matrix=k,
        dist_coeffs=dist,
        rms=rms,
        board=(board[0], board[1]) if len(board) == 2 else (0, 0),
        square_mm=square,
        n_images=n_images,
        created=str(data.get("created", "")),
    )


def camera_calibration_path(calibration_dir: Path | str, camera_id: str) -> Path:
    """Where the calibration of ``camera_id`` lives by default."""
    return Path(calibration_dir) / "cameras" / f"{camera_id}.yaml"


def resolve_calibration(cfg: CameraConfig, calibration_dir: Path | str) -> CameraCalibration | None:
    """The lens calibration for a camera: ``cfg.calibration`` when set (it must
    exist), else ``<calibration_dir>/cameras/<id>.yaml`` when present, else None
    (no undistortion)."""
    if cfg.calibration is not None:
        if not cfg.calibration.is_file():
            raise ConfigError(
                f"cameras[{cfg.id}].calibration: {cfg.calibration} not found; run "
                f"`dairy-edge calibrate camera --camera-id {cfg.id}` or remove the key"
            )
        return load_camera_calibration(cfg.calibration)
    default = camera_calibration_path(calibration_dir, cfg.id)
    return load_camera_calibration(default) if default.is_file() else None
