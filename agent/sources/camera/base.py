"""What every camera backend shares: the frame type, the source interface,
the camera's states and the status the web page shows.

A backend only opens, reads and closes. Pacing of live cameras, the fps cap,
the stall watchdog and reconnects belong to ``CameraWorker`` (worker.py), so
each backend stays small and a new one needs no thread of its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from agent.clock import Clock
from agent.config.model import CameraConfig
from agent.errors import TransientError


class CameraError(TransientError):
    """A camera could not be opened or read. Transient: the worker retries
    with backoff. The message says what a technician should check."""


class CameraState(StrEnum):
    CONNECTING = "connecting"  # first open in progress
    ONLINE = "online"  # frames arriving
    STALLED = "stalled"  # open, but no frame for stall_after_s; reconnecting
    OFFLINE = "offline"  # open or read failed (see last_error); retrying with backoff
    ENDED = "ended"  # a replay without loop reached its end; nothing more to do


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame taken from a camera (after the fps cap).

    ``image`` is BGR uint8 (H x W x 3) or, from a depth camera, uint16 (H x W).
    ``index`` counts frames read from this camera since its worker started
    (across reconnects); gaps are frames skipped by the fps cap.
    ``mono_ns`` is when it was read, on the monotonic clock (durations, ordering);
    ``wall_ts`` the wall clock then (may be wrong before NTP: see agent.clock);
    ``source_ts`` the frame's time in the source's own timeline (seconds into a
    replayed file), or None when the source has none.
    """

    camera_id: str
    index: int
    image: np.ndarray
    mono_ns: int
    wall_ts: float
    source_ts: float | None


class FrameSource(Protocol):
    """One camera backend. Used from one thread at a time (the worker's reader).

    Optional attributes, read with getattr by the worker:
    ``source_ts: float | None`` (the last frame's time in the source's timeline)
    and ``bad_frames: int`` (frames or files the source could not decode and
    skipped).
    """

    @property
    def nominal_fps(self) -> float | None:
        """The rate the source says it delivers (file or camera), or None if unknown."""
        ...

    def open(self) -> None:
        """Connect to the camera or file. Raises CameraError saying what to check."""
        ...

    def read(self) -> np.ndarray | None:
        """The next frame, blocking until it is there (a replay waits for the
        frame's due time). None only at the end of a finite stream (a replay
        without loop). Raises CameraError when the camera is lost."""
        ...

    def close(self) -> None:
        """Release the camera. Safe to call twice or after a failed open."""
        ...


@dataclass
class CameraStatus:
    """A camera as the status page and /api/status show it."""

    id: str
    role: str
    source: str
    state: CameraState
    last_error: str | None
    frames: int  # frames handed to on_frame
    fps: float  # measured over the last few seconds (frames handed on)
    last_frame_age_s: float | None  # None before the first frame
    reconnects: int
    skipped: int = 0  # frames read but dropped by the fps cap
    bad_frames: int = 0  # undecodable frames or files the source skipped
    errors: int = 0  # exceptions raised by the source or by on_frame

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = str(self.state)
        out["fps"] = round(self.fps, 2)
        if self.last_frame_age_s is not None:
            out["last_frame_age_s"] = round(self.last_frame_age_s, 3)
        return out


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, for logs, errors and the status page
    (rtsp://admin:secret@cam/ -> rtsp://admin:***@cam/)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def as_bgr(image: np.ndarray) -> np.ndarray | None:
    """Bring a decoded image to the frame convention (BGR uint8 HxWx3, or
    uint16 HxW depth); None when it cannot be (an unknown layout)."""
    if image.dtype == np.uint8:
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if image.ndim == 3 and image.shape[2] == 1:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return None
    if image.dtype == np.uint16:
        if image.ndim == 2:
            return image
        if image.ndim == 3 and image.shape[2] == 1:
            return image[:, :, 0]
        if image.ndim == 3 and image.shape[2] in (3, 4):
            # 16-bit colour (some PNG/TIFF): scale to 8 bits, the models take uint8.
            return as_bgr((image >> 8).astype(np.uint8))
    return None


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def open_timeout_s(cfg: CameraConfig) -> float:
    """How long opening a network stream may take before it counts as failed."""
    return _clamp(2 * cfg.stall_after_s, 2.0, 30.0)


def read_timeout_s(cfg: CameraConfig) -> float:
    """How long one network read may block. Longer than stall_after_s on purpose:
    a camera that goes quiet shows as "stalled" (the watchdog) rather than racing
    it with a read error ("offline")."""
    return _clamp(2 * cfg.stall_after_s, 1.0, 60.0)


class Pacer:
    """Frames at a steady rate on the monotonic clock, for sources that make
    their own (a replayed file, generated frames). A consumer that fell more
    than a frame behind restarts the schedule instead of getting a burst."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next_due: float | None = None

    def reset(self) -> None:
        self._next_due = None

    def wait(self, fps: float) -> None:
        period = 1.0 / fps
        now = self._clock.monotonic()
        if self._next_due is None or now - self._next_due > period:
            self._next_due = now
        elif self._next_due > now:
            time.sleep(self._next_due - now)
        self._next_due += period
