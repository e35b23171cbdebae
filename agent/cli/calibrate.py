"""`dairy-edge calibrate camera`: a lens calibration from chessboard photos.

Wired by ``agent/cli/main.py``: ``add_calibrate_parser(sub)``; the parsed
arguments carry ``func=run_calibrate``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from agent.config.loader import load_config
from agent.config.model import SAFE_ID
from agent.errors import ConfigError
from agent.vision.calibrate import (
    MIN_IMAGES,
    RMS_WARN_PX,
    CalibrationError,
    calibrate_from_images,
    camera_calibration_path,
    save_camera_calibration,
)


def _board(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 2:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the INNER corners as COLSxROWS, e.g. 9x6 for a board of 10x7 squares"
        )
    return int(match[1]), int(match[2])


def _camera_id(text: str) -> str:
    if not re.fullmatch(SAFE_ID, text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a camera id is 1-64 letters, digits, '_' or '-' (as in the config)"
        )
    return text


def add_calibrate_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``calibrate camera`` on the top-level subparsers."""
    cal = subparsers.add_parser(
        "calibrate",
        help="calibrate a camera lens from chessboard photos",
        description="Calibrate sensors and cameras.",
    )
    cal_sub = cal.add_subparsers(dest="calibrate_command", metavar="WHAT", required=True)
    cam = cal_sub.add_parser(
        "camera",
        help="lens calibration from photos of a printed chessboard",
        description="Compute a camera's lens calibration (focal length, centre, distortion) "
        "from photos of a flat printed chessboard, and write it where the agent finds it: "
        "<calibration_dir>/cameras/<ID>.yaml. Take 10-20 photos at the resolution the "
        f"camera runs at, with the board tilted, near the corners and at several distances; "
        f"the board must be found in at least {MIN_IMAGES}.",
        epilog="Example: dairy-edge calibrate camera --camera-id lane1 --board 9x6 "
        "--square-mm 25 photos/*.jpg",
    )
    cam.add_argument("--camera-id", required=True, type=_camera_id,
                     help="the camera's id in the config (names the output file)")
    cam.add_argument("--board", required=True, type=_board, metavar="COLSxROWS",
                     help="INNER corners of the board, columns x rows (9x6 for 10x7 squares)")
    cam.add_argument("--square-mm", type=float, default=25.0,
                     help="side of one printed square in mm (default 25)")
    cam.add_argument("-o", "--output", type=Path, default=None,
                     help="output file (default: <gateway.calibration_dir>/cameras/<ID>.yaml "
                     "with --config, else ./calibration/cameras/<ID>.yaml)")
    cam.add_argument("--config", "-c", type=Path, default=None,
                     help="agent config, for gateway.calibration_dir")
    cam.add_argument("--force", action="store_true", help="replace an existing calibration file")
    cam.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    cam.add_argument("photos", nargs="+", type=Path, metavar="PHOTO",
                     help="chessboard photos (JPEG, PNG, ...)")
    cam.set_defaults(func=run_calibrate)


def _progress(done: int, total: int, path: Path, found: bool) -> None:
    width = 24
    filled = round(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    mark = "board" if found else "NO BOARD"
    print(f"\r[{bar}] {done}/{total} {path.name[:30]:30} {mark:8}", end="",
          file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr)


def run_calibrate(args: argparse.Namespace) -> int:
    """Run ``calibrate camera``: 0 written, 1 the photos cannot give a calibration,
    2 a bad config or an existing file without --force."""
    try:
        if args.output is not None:
            out = args.output
        elif args.config is not None:
            config = load_config(args.config)
            out = camera_calibration_path(config.gateway.calibration_dir, args.camera_id)
        else:
            # Without a config the default calibration folder is the one shipped in
            # the package: never write there (an upgrade would lose the file).
            out = camera_calibration_path(Path("calibration"), args.camera_id)
    except ConfigError as err:
        print(f"dairy-edge: configuration error: {err}", file=sys.stderr)
        return 2
    if out.exists() and not args.force:
        print(f"dairy-edge: {out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    try:
        cal = calibrate_from_images(
            args.photos,
            args.board,
            args.square_mm,
            camera_id=args.camera_id,
            progress=None if args.no_progress else _progress,
        )
    except CalibrationError as err:
        print(f"dairy-edge: calibration failed: {err}", file=sys.stderr)
        return 1
    save_camera_calibration(cal, out)
    fx, fy = cal.focal_px
    w, h = cal.image_size
    print(f"{out}: board found in {cal.n_images} of {len(args.photos)} photos, "
          f"RMS reprojection error {cal.rms:.3f} px, {w}x{h}, fx {fx:.1f} fy {fy:.1f}, "
          f"distortion {' '.join(f'{v:+.4f}' for v in cal.dist_coeffs)}")
    if cal.rms > RMS_WARN_PX:
        print(f"warning: RMS {cal.rms:.2f} px is high (good is under {RMS_WARN_PX:.1f}): "
              "retake blurred photos, keep the board flat, check --board", file=sys.stderr)
    return 0
