"""Replay a folder of images or a video file as if it were a camera.

Frames come at the file's own rate (a folder: ``fps``, by default the camera's
fps_cap), paced on the monotonic clock, so the rest of the pipeline sees what
a live camera would give. Used by tests, the demo and offline review.

A folder is read in natural order (frame_2 before frame_10); an image that
cannot be decoded is skipped with one warning and counted in ``bad_frames``,
never fatal. With ``loop`` the folder is listed again at each pass (new files
dropped in are picked up) and a video starts again from its first frame.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from agent.clock import Clock, SystemClock
from agent.config.model import CameraConfig
from agent.sources.camera.base import CameraError, Pacer, as_bgr

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)
_PLAUSIBLE_FPS = (0.1, 240.0)


def natural_key(path: Path) -> list[int | str]:
    """Sort key: digit runs compare as numbers (img2 < img10)."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


class ReplaySource:
    """A folder of images or a video file, paced on the monotonic clock."""

    def __init__(
        self, cfg: CameraConfig, *, fps: float | None = None, clock: Clock | None = None
    ) -> None:
        self._cfg = cfg
        self._path = Path(cfg.uri).expanduser()
        self._folder_fps = fps or cfg.fps_cap
        self._clock = clock or SystemClock()
        self._loop = cfg.loop
        self._fps: float | None = None
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        self._pos = 0  # next file (folder) / frames read in this pass (video)
        self._pass_frames = 0  # frames delivered in this pass (folder)
        self._bad: set[Path] = set()
        self._pacer = Pacer(self._clock)
        self._opened = False
        self.source_ts: float | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def bad_frames(self) -> int:
        """Image files in the folder that could not be decoded (each counted once)."""
        return len(self._bad)

    @property
    def is_folder(self) -> bool:
        return self._path.is_dir()

    def open(self) -> None:
        self.close()
        if not self._cfg.uri.strip():
            raise CameraError(
                f"camera {self._cfg.id}: replay needs 'uri': a folder of images or a video file"
            )
        if not self._path.exists():
            raise CameraError(
                f"replay source {self._path} does not exist: set 'uri' of camera "
                f"{self._cfg.id} to a folder of images or a video file"
            )
        if self.is_folder:
            self._files = self._list_folder()
            self._fps = self._folder_fps
        else:
            self._cap = self._open_video()
            fps = self._cap.get(cv2.CAP_PROP_FPS)
            self._fps = fps if _PLAUSIBLE_FPS[0] <= fps <= _PLAUSIBLE_FPS[1] else self._folder_fps
        self._pos = 0
        self._pass_frames = 0
        self._pacer.reset()
        self._opened = True

    def _list_folder(self) -> list[Path]:
        files = sorted(
            (p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=natural_key,
        )
        if not files:
            raise CameraError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self._path}: "
                "put the frames there or point 'uri' at a video file"
            )
        return files

    def _open_video(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self._path))
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot read video file {self._path}: use a format OpenCV decodes "
                "(MJPG .avi, H.264 .mp4) or a folder of images"
            )
        return cap

    def read(self) -> np.ndarray | None:
        if not self._opened:
            raise CameraError(f"camera {self._cfg.id} is not open")
        image = self._next_video_frame() if self._cap is not None else self._next_folder_image()
        if image is None:
            return None
        self._pace()
        return image

    def _pace(self) -> None:
        """Wait for this frame's due time (see Pacer)."""
        self._pacer.wait(self._fps or self._folder_fps)

    def _next_folder_image(self) -> np.ndarray | None:
        while True:
            if self._pos >= len(self._files):
                if self._pass_frames == 0:
                    raise CameraError(
                        f"no readable image in folder {self._path}: every file failed to "
                        "decode (see the warnings in the log)"
                    )
                if not self._loop:
                    return None
                self._files = self._list_folder()
                self._pos = 0
                self._pass_frames = 0
            path = self._files[self._pos]
            self._pos += 1
            image = self._decode(path)
            if image is not None:
                self.source_ts = self._pass_frames / (self._fps or self._folder_fps)
                self._pass_frames += 1
                return image

    def _decode(self, path: Path) -> np.ndarray | None:
        try:
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error as err:  # a header claiming a huge image, and the like
            raw, reason = None, str(err).strip().splitlines()[-1]
        else:
            reason = "not a readable image (corrupt, truncated or of another format)"
        image = as_bgr(raw) if raw is not None else None
        if image is None:
            if raw is not None:
                reason = f"unsupported pixel layout {raw.dtype} {raw.shape}"
            if path not in self._bad:
                log.warning("camera %s: skipping %s: %s", self._cfg.id, path, reason)
                self._bad.add(path)
        return image

    def _next_video_frame(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, raw = self._cap.read()
        if not ok or raw is None:
            if self._pos == 0:
                raise CameraError(f"no frame could be decoded from video file {self._path}")
            if not self._loop:
                return None
            self._cap.release()
            self._cap = self._open_video()
            self._pos = 0
            ok, raw = self._cap.read()
            if not ok or raw is None:
                raise CameraError(f"video file {self._path} could not be read again")
        image = as_bgr(raw)
        if image is None:
            raise CameraError(f"video file {self._path} has an unsupported pixel layout")
        self.source_ts = self._pos / (self._fps or self._folder_fps)
        self._pos += 1
        return image

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
        self._files = []
        self._opened = False
