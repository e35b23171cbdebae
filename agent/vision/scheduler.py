"""The inference scheduler: camera frames in, at most each camera's budget out
to the models, never a queue that grows.

- Each camera has a one-slot mailbox. ``offer(frame)`` never blocks the camera
  thread: a newer frame replaces a waiting older one (the older is dropped as
  ``busy``). Frames closer than ``1 / infer_fps`` to the camera's last
  inferred frame are dropped at once as ``budget`` (capture times, so a
  replayed file and a live camera behave alike).
- ONE worker thread takes frames round-robin across cameras, runs the
  camera's presence gate (``empty`` when nothing is in view) and calls
  ``process(camera_id, frame)``. One thread because model runners are not
  thread-safe and the gateway has four cores shared with ingest, the store
  and sync: a second inference thread would only make the MQTT path slower.
  An exception in ``process`` is logged and counted (``error``); the worker
  goes on with the next frame.
- Memory is bounded by one waiting frame per camera plus the one in process.
- ``close_idle(callback)`` runs ``callback()`` on the worker every
  ``interval_s`` even when no frame comes, so visit voters can close visits
  on time (the callback runs on the same thread as ``process``: no locks).

Counts go to ``dairy_edge_frames_dropped_total{camera, reason}`` and
``dairy_edge_frames_inferred_total{camera}``, and per camera to :meth:`stats`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from agent.config.model import CameraConfig
from agent.metrics import FRAMES_DROPPED, FRAMES_INFERRED
from agent.priority import lower_current_thread
from agent.vision.gate import GateResult, MotionGate

log = logging.getLogger(__name__)

# Capture timestamps jitter by a few milliseconds: without some slack a 4 fps
# camera under a 2 fps budget would lose every other due frame to jitter and
# run at 1.3 fps. A frame is due when 95 % of the period has passed.
BUDGET_SLACK = 0.05
TICK_INTERVAL_S = 0.5
REASONS = ("budget", "busy", "empty", "error")
LOG_ERRORS_EVERY = 100


class FrameLike(Protocol):
    """What the scheduler needs of a frame (agent.sources.camera.base.Frame fits)."""

    @property
    def camera_id(self) -> str: ...

    @property
    def image(self) -> np.ndarray: ...

    @property
    def mono_ns(self) -> int: ...


class Gate(Protocol):
    def check(self, image: np.ndarray, mono_ns: int) -> GateResult: ...


F = TypeVar("F", bound=FrameLike)


@dataclass
class _Camera(Generic[F]):
    id: str
    period_ns: int
    gate: Gate
    waiting: F | None = None
    last_inferred_ns: int | None = None
    paused: bool = False  # a runtime profile turned its inference off
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("offered", "inferred", *REASONS), 0)
    )


class InferenceScheduler(Generic[F]):
    """Budgeted, gated, drop-oldest scheduling of frames to one inference worker."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        process: Callable[[str, F], None],
        *,
        gates: Mapping[str, Gate] | None = None,
        name: str = "vision-worker",
        background: bool = False,
        ingest_busy: Callable[[], bool] | None = None,
        busy_factor: float = 1.0,
        on_empty: Callable[[str, F], None] | None = None,
    ) -> None:
        gates = gates or {}
        self._process = process
        self._name = name
        self._background = background  # lowest CPU priority (agent.priority): ingest first
        # While ingest has a backlog every camera's budget is divided by busy_factor:
        # a low priority alone still costs ingest CPU it needs to catch up.
        self._ingest_busy = ingest_busy
        self._busy_factor = max(1.0, busy_factor)
        # Called on the worker when the gate sees the empty scene (a visit is over).
        self._on_empty = on_empty
        self._cams: dict[str, _Camera[F]] = {
            c.id: _Camera(
                c.id,
                int(1e9 / c.infer_fps * (1 - BUDGET_SLACK)),
                gates.get(c.id) or MotionGate.for_camera(c),
            )
            for c in cameras
        }
        self._order = list(self._cams)
        self._next = 0  # round-robin position
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._tick: Callable[[], None] | None = None
        self._tick_interval_s = TICK_INTERVAL_S

    # ------------------------------------------------------------------ setup
    def close_idle(self, callback: Callable[[], None], interval_s: float = TICK_INTERVAL_S
                   ) -> None:
        """Call ``callback()`` on the worker thread every ``interval_s`` (before start)."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._tick = callback
        self._tick_interval_s = interval_s

    def set_budget(self, camera_id: str, infer_fps: float, enabled: bool = True) -> None:
        """A new inference budget for one camera, at once (a runtime profile);
        ``enabled=False`` drops all its frames as 'budget' until enabled again."""
        if infer_fps <= 0:
            raise ValueError("infer_fps must be positive")
        with self._cond:
            cam = self._cams[camera_id]
            cam.period_ns = int(1e9 / infer_fps * (1 - BUDGET_SLACK))
            cam.paused = not enabled
            if cam.paused:
                cam.waiting = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker after the frame in process; True when it ended in time.

        Frames still waiting are discarded (not counted).
        """
        with self._cond:
            self._stopping = True
            for cam in self._cams.values():
                cam.waiting = None
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ------------------------------------------------------------ camera side
    def offer(self, frame: F) -> bool:
        """Hand a frame over without blocking; True when it waits for the worker."""
        cam = self._cams.get(frame.camera_id)
        if cam is None:
            raise KeyError(f"camera {frame.camera_id!r} is not scheduled; "
                           f"add it to the cameras given to InferenceScheduler")
        with self._cond:
            if self._stopping:
                return False
            cam.counts["offered"] += 1
            last = cam.last_inferred_ns
            period = cam.period_ns
            if self._ingest_busy is not None and self._ingest_busy():
                period = int(period * self._busy_factor)
            if cam.paused or (last is not None and 0 <= frame.mono_ns - last < period):
                self._drop(cam, "budget")
                return False
            if cam.waiting is not None:
                self._drop(cam, "busy")
            cam.waiting = frame
            self._cond.notify()
        return True

    def stats(self) -> dict[str, dict[str, int]]:
        """Per camera: offered, inferred, and dropped by reason (budget, busy, empty, error)."""
        with self._cond:
            return {cid: dict(cam.counts) for cid, cam in self._cams.items()}

    # ------------------------------------------------------------ worker side
    def _drop(self, cam: _Camera[F], reason: str) -> None:
        cam.counts[reason] += 1
        FRAMES_DROPPED.labels(camera=cam.id, reason=reason).inc()

    def _take(self) -> tuple[_Camera[F], F] | None:
        """The next waiting frame, round-robin (call with the lock held)."""
        n = len(self._order)
        for i in range(n):
            cam = self._cams[self._order[(self._next + i) % n]]
            if cam.waiting is not None:
                frame, cam.waiting = cam.waiting, None
                self._next = (self._next + i + 1) % n
                return cam, frame
        return None

    def _run(self) -> None:
        if self._background:
            lower_current_thread()
        next_tick = time.monotonic() + self._tick_interval_s
        while True:
            with self._cond:
                item = None
                while not self._stopping:
                    item = self._take()
                    if item is not None or (self._tick and time.monotonic() >= next_tick):
                        break
                    wait = next_tick - time.monotonic() if self._tick else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
            if item is not None:
                self._handle(*item)
            if self._tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick_interval_s
                try:
                    self._tick()
                except Exception:
                    log.exception("vision: idle tick failed")

    def _handle(self, cam: _Camera[F], frame: F) -> None:
        try:
            verdict = cam.gate.check(frame.image, frame.mono_ns)
        except Exception:
            log.exception("camera %s: presence gate failed; frame sent to the models", cam.id)
            verdict = GateResult(True, 1.0, "error")
        if not verdict.run:
            with self._cond:
                self._drop(cam, "empty")
            if self._on_empty is not None:
                try:
                    self._on_empty(cam.id, frame)
                except Exception:
                    log.exception("camera %s: the empty-scene callback failed", cam.id)
            return
        with self._cond:
            # the budget counts from frames sent to the models, gated ones excluded
            cam.last_inferred_ns = frame.mono_ns
        try:
            self._process(cam.id, frame)
        except Exception:
            with self._cond:
                self._drop(cam, "error")
                errors = cam.counts["error"]
            # A model failing on every frame must not flood the journal: the first
            # few, then one in LOG_ERRORS_EVERY (all are counted in the metrics).
            if errors <= 3 or errors % LOG_ERRORS_EVERY == 0:
                log.exception("camera %s: processing a frame failed (%d so far)", cam.id,
                              errors)
            return
        with self._cond:
            cam.counts["inferred"] += 1
        FRAMES_INFERRED.labels(camera=cam.id).inc()
