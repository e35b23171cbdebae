"""OpenCV capture: a V4L2 device ('0', '/dev/video0') or a network stream
(rtsp://, http:// MJPEG) through OpenCV's FFMPEG backend.

Network streams get open and read timeouts, so a camera that vanishes makes
``read()`` fail instead of blocking for ever; the worker's watchdog still
covers a capture that hangs anyway (some V4L2 drivers do).
"""

from __future__ import annotations

import logging
import os
import re
import sys

import cv2
import numpy as np

from agent.config.model import CameraConfig
from agent.sources.camera.base import (
    CameraError,
    as_bgr,
    open_timeout_s,
    read_timeout_s,
    redact_uri,
)

log = logging.getLogger(__name__)

_NETWORK = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
_DEVICE_PATH = re.compile(r"^/dev/video(\d+)$")
# Nominal rates outside this are bogus (FFMPEG reports 90000 for some streams).
_PLAUSIBLE_FPS = (0.1, 240.0)


class OpenCVSource:
    """A V4L2 device or a network stream read with cv2.VideoCapture."""

    def __init__(
        self,
        cfg: CameraConfig,
        *,
        open_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self._cfg = cfg
        self._uri = cfg.uri.strip()
        self._shown = redact_uri(self._uri)
        self._open_timeout_s = open_timeout or open_timeout_s(cfg)
        self._read_timeout_s = read_timeout or read_timeout_s(cfg)
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def is_network(self) -> bool:
        return self._uri.lower().startswith(_NETWORK)

    def open(self) -> None:
        self.close()
        if self.is_network:
            cap = self._open_stream()
        else:
            cap = self._open_device()
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps if _PLAUSIBLE_FPS[0] <= fps <= _PLAUSIBLE_FPS[1] else None
        self._cap = cap

    def _open_stream(self) -> cv2.VideoCapture:
        if self._uri.lower().startswith(("rtsp://", "rtsps://")):
            # RTSP over UDP loses packets on barn Wi-Fi (grey smeared frames);
            # TCP is what every IP camera supports. FFMPEG reads this variable
            # at each open; a value the operator set is kept.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self._open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self._read_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(self._uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot open {self._shown}: check the URL (path, port, user and password) "
                "and that the camera is powered and reachable on the network"
            )
        if self._cfg.width or self._cfg.height:
            # A stream has the resolution the camera encodes; set it in the camera.
            log.debug("camera %s: width/height ignored for a network stream", self._cfg.id)
        return cap

    def _open_device(self) -> cv2.VideoCapture:
        target: int | str
        uri = self._uri or "0"
        match = _DEVICE_PATH.match(uri)
        if uri.isdigit():
            target = int(uri)
        elif match:
            target = int(match.group(1))
        else:
            raise CameraError(
                f"camera {self._cfg.id}: uri {self._shown!r} is neither a device ('0', "
                "'/dev/video0') nor an rtsp:// or http:// URL: fix 'uri' in the config"
            )
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(target, backend)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot open camera device {uri}: check it is plugged in (ls /dev/video*), "
                "that the agent's user is in the 'video' group, and that no other program "
                "uses it"
            )
        if self._cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._cfg.width)
        if self._cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._cfg.height)
        # Keep one buffered frame: we read continuously and want the newest.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise CameraError(f"camera {self._cfg.id} is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise CameraError(
                f"lost {self._shown}: no frame within {self._read_timeout_s:.1f} s or the "
                "connection closed; check the camera's power and network"
                if self.is_network
                else f"lost camera device {self._uri or '0'}: check the cable and power"
            )
        frame = as_bgr(image)
        if frame is None:
            raise CameraError(
                f"camera {self._cfg.id} sent frames of an unsupported layout "
                f"{image.dtype} {image.shape}: set the camera to a colour (BGR/MJPEG) mode"
            )
        return frame

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
