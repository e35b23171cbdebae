"""A Raspberry Pi camera through picamera2 (libcamera).

picamera2 exists only on Raspberry Pi OS (it needs the system libcamera), so it
is imported inside ``open()``: the agent imports and runs everywhere else, and
a Pi camera configured where picamera2 is missing gives a clear error instead.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

from agent.config.model import CameraConfig
from agent.sources.camera.base import CameraError, as_bgr

log = logging.getLogger(__name__)

# Used when the config leaves width/height empty: 720p is enough for tags at a
# lane and keeps the Pi's ISP and memory use low.
DEFAULT_SIZE = (1280, 720)

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS install the 'pi' extra "
    "(sudo apt install python3-libcamera, then pip install 'dairy-edge[pi]' in a venv "
    "made with --system-site-packages), or use source: opencv for a USB or IP camera"
)


class PiCameraSource:
    """Camera number ``cfg.uri`` ('' = 0) through picamera2, BGR frames."""

    def __init__(self, cfg: CameraConfig) -> None:
        self._cfg = cfg
        self._cam: Any = None

    @property
    def nominal_fps(self) -> float | None:
        return self._cfg.fps_cap

    def open(self) -> None:
        self.close()
        try:
            picamera2 = importlib.import_module("picamera2")
        except ImportError as err:
            raise CameraError(INSTALL_HINT) from err
        uri = self._cfg.uri.strip() or "0"
        if not uri.isdigit():
            raise CameraError(
                f"camera {self._cfg.id}: uri {uri!r} must be the Pi camera number ('0' or '1')"
            )
        size = (self._cfg.width or DEFAULT_SIZE[0], self._cfg.height or DEFAULT_SIZE[1])
        try:
            cam = picamera2.Picamera2(int(uri))
        except Exception as err:
            raise CameraError(
                f"cannot open Pi camera {uri}: {err}; check the ribbon cable and that "
                "`rpicam-hello --list-cameras` lists it"
            ) from err
        try:
            # "RGB888" is B, G, R in memory: exactly OpenCV's BGR.
            config = cam.create_video_configuration(
                main={"size": size, "format": "RGB888"},
                controls={"FrameRate": float(self._cfg.fps_cap)},
            )
            cam.configure(config)
            cam.start()
        except Exception as err:
            cam.close()
            raise CameraError(
                f"cannot start Pi camera {uri} at {size[0]}x{size[1]}: {err}; "
                "try a resolution the sensor supports"
            ) from err
        self._cam = cam

    def read(self) -> np.ndarray | None:
        if self._cam is None:
            raise CameraError(f"camera {self._cfg.id} is not open")
        try:
            image = self._cam.capture_array("main")
        except Exception as err:
            raise CameraError(f"Pi camera {self._cfg.id} stopped delivering: {err}") from err
        frame = as_bgr(np.asarray(image))
        if frame is None:
            raise CameraError(f"Pi camera {self._cfg.id} gave an unsupported frame layout")
        return frame

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        finally:
            cam.close()
