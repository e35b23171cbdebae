"""One camera, kept alive: open, read, cap the rate, hand frames on, watch for
stalls, reconnect with backoff, and say how it is doing.

Two threads per camera. The *reader* opens the source and reads frames; the
*supervisor* watches it on the monotonic clock. A capture can block for ever
inside ``open()`` or ``read()`` (a V4L2 driver, a half-open TCP stream), and
OpenCV captures must not be released from another thread while they read, so
the supervisor never touches a source in use: on a stall it abandons that
reader (it closes its own source if the read ever returns, and its late frames
are dropped) and starts a fresh source on a fresh reader. ``stop()`` therefore
never waits on a stuck capture. A few abandoned readers still blocked at once
means the driver is wedged; then no new ones are started until they return.

Nothing raised by the source or by ``on_frame`` leaves the worker: it is
logged, counted and shown in the status; the camera is retried.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent import metrics
from agent.clock import Clock, SystemClock
from agent.config.model import CameraConfig
from agent.priority import lower_current_thread
from agent.sources.camera.base import (
    CameraError,
    CameraState,
    CameraStatus,
    Frame,
    FrameSource,
    open_timeout_s,
    redact_uri,
)
from agent.sources.camera.factory import make_source

log = logging.getLogger(__name__)

FPS_WINDOW_S = 5.0  # measured fps is over this many recent seconds
MAX_HUNG_READERS = 2  # abandoned readers still blocked before we stop opening new ones
_CAP_SLACK = 0.2  # a frame up to 20 % of a period early still passes the fps cap
_LOG_EVERY = 100  # repeated on_frame failures: log the first, then every Nth


class RateCap:
    """Pass at most ``fps`` frames per second from a faster source, by skipping
    (never sleeping: a live stream must be drained or it lags). A token bucket
    holding at most one frame: no bursts after a gap, and a source at exactly
    ``fps`` with jitter still passes every frame."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._tokens = 1.0
        self._last: float | None = None

    def take(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(1.0, self._tokens + (now - self._last) * self._fps)
        self._last = now
        if self._tokens >= 1.0 - _CAP_SLACK:
            self._tokens -= 1.0
            return True
        return False


@dataclass(eq=False)
class _Session:
    """One source on one reader thread, from open to close."""

    source: FrameSource
    started: float
    opened_at: float | None = None
    last_frame: float | None = None
    frames: int = 0
    outcome: str | None = None  # "failed" | "ended" once the reader is done
    error: str | None = None
    abandoned: bool = False
    bad_counted: bool = False  # its source's bad_frames added to the worker's total
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


def _describe(cfg: CameraConfig, err: BaseException) -> str:
    if isinstance(err, CameraError):
        return str(err)
    return (
        f"camera {cfg.id} ({cfg.source} {redact_uri(cfg.uri)}) failed: "
        f"{type(err).__name__}: {err}"
    )


def _check_image(image: object) -> np.ndarray:
    ok = isinstance(image, np.ndarray) and (
        (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3)
        or (image.dtype == np.uint16 and image.ndim == 2)
    )
    if not ok:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise CameraError(f"the source gave an unusable frame ({got}); expected BGR uint8")
    assert isinstance(image, np.ndarray)
    return image


class CameraWorker:
    """Runs one camera on daemon threads and calls ``on_frame`` for each frame
    that passes the fps cap.

    ``on_frame`` runs on the camera's reader thread and must not block: put the
    frame in a bounded queue (drop when full) and return. While it runs, no new
    frame is read, and a slow handler makes a live stream lag or stall.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        on_frame: Callable[[Frame], None],
        *,
        clock: Clock | None = None,
        source_factory: Callable[[CameraConfig], FrameSource] = make_source,
        rng: random.Random | None = None,
        background: bool = False,
    ) -> None:
        self.cfg = cfg
        # Lowest CPU priority for this camera's threads (agent.priority): ingest first.
        self._background = background
        self._on_frame = on_frame
        self._clock = clock or SystemClock()
        self._factory = source_factory
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: _Session | None = None
        self._hung: list[_Session] = []
        self._cap = RateCap(cfg.fps_cap)
        # The watchdog's period: a fraction of the stall limit, cheap at 4 Hz.
        self._tick = min(0.25, cfg.stall_after_s / 4)
        self._open_limit = open_timeout_s(cfg) + cfg.stall_after_s
        # status, guarded by _lock
        self._state = CameraState.CONNECTING
        self._last_error: str | None = None
        self._read = 0
        self._frames = 0
        self._skipped = 0
        self._bad_frames_done = 0  # from sources already closed
        self._errors = 0
        self._reconnects = 0
        self._last_frame: float | None = None
        self._recent: deque[float] = deque()
        self._online_since: float | None = None
        self._set_state(CameraState.CONNECTING, None)

    @property
    def id(self) -> str:
        return self.cfg.id

    # -- life cycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the camera's threads; returns at once (the open happens there)."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.cfg.id} already started")
        self._thread = threading.Thread(
            target=self._supervise, name=f"camera-{self.cfg.id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the camera and wait up to ``timeout`` s for its threads. True when
        they all ended; a reader stuck inside the driver is left behind (a daemon
        thread that closes its capture if the read ever returns)."""
        self._stop.set()
        deadline = self._mono() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - self._mono()))
        session = self._session
        reader = session.thread if session else None
        if reader is not None:
            reader.join(max(0.0, deadline - self._mono()))
        clean = not (self._thread and self._thread.is_alive()) and not (
            reader and reader.is_alive()
        )
        with self._lock:
            if self._state != CameraState.ENDED:
                self._set_state(CameraState.OFFLINE, "stopped")
        if not clean:
            log.warning("camera %s: a read did not return within %.1f s of stop",
                        self.cfg.id, timeout)
        return clean

    # -- status -------------------------------------------------------------

    def status(self) -> CameraStatus:
        """A consistent snapshot; safe from any thread."""
        now = self._mono()
        with self._lock:
            age = None if self._last_frame is None else now - self._last_frame
            state, error = self._state, self._last_error
            # Seen from outside, a frozen capture is stalled even before the
            # supervisor's next look (or if the supervisor itself is late).
            if state == CameraState.ONLINE and age is not None and age > self.cfg.stall_after_s:
                state = CameraState.STALLED
                error = f"no frame for {age:.1f} s"
            while self._recent and self._recent[0] < now - FPS_WINDOW_S:
                self._recent.popleft()
            fps = 0.0
            if self._recent and self._online_since is not None:
                window = min(FPS_WINDOW_S, now - self._online_since)
                fps = len(self._recent) / window if window > 0 else 0.0
            bad = self._bad_frames_done + self._source_bad(self._session)
            return CameraStatus(
                id=self.cfg.id,
                role=self.cfg.role,
                source=self.cfg.source,
                state=state,
                last_error=error,
                frames=self._frames,
                fps=fps,
                last_frame_age_s=age,
                reconnects=self._reconnects,
                skipped=self._skipped,
                bad_frames=bad,
                errors=self._errors,
            )

    # -- supervisor ---------------------------------------------------------

    def _supervise(self) -> None:
        if self._background:
            lower_current_thread()  # the reader threads it starts inherit it
        failures = 0  # failed attempts in a row, for the backoff
        first = True
        while not self._stop.is_set():
            if not self._wait_for_hung_readers():
                break
            if not first:
                if self._stop.wait(self._backoff(failures)):
                    break
                with self._lock:
                    self._reconnects += 1
                metrics.CAMERA_RECONNECTS.labels(self.cfg.id).inc()
            first = False
            session = self._start_session()
            outcome = self._watch(session) if session else "failed"
            if outcome == "stopped":
                self._abandon(session)
                break
            failures = 0 if session and session.frames else failures + 1
            if outcome == "ended":
                with self._lock:
                    self._set_state(CameraState.ENDED, None)
                log.info("camera %s: replay ended", self.cfg.id)
                break
            if outcome in ("stalled", "open_hung"):
                self._abandon(session)

    def _start_session(self) -> _Session | None:
        try:
            source = self._factory(self.cfg)
        except Exception as err:  # noqa: BLE001 - a backend import or constructor failed: report, retry
            self._failed(_describe(self.cfg, err), unexpected=not isinstance(err, CameraError))
            return None
        session = _Session(source=source, started=self._mono())
        session.thread = threading.Thread(
            target=self._read_loop, args=(session,), name=f"camera-{self.cfg.id}-read",
            daemon=True,
        )
        with self._lock:
            self._session = session
        session.thread.start()
        return session

    def _watch(self, session: _Session) -> str:
        """Wait for the reader to finish, the camera to stall, or stop()."""
        while True:
            if session.done.wait(self._tick):
                if session.outcome == "failed":
                    self._failed(session.error or "the camera failed", unexpected=False)
                return session.outcome or "failed"
            if self._stop.is_set():
                return "stopped"
            now = self._mono()
            with self._lock:
                opened_at, last = session.opened_at, session.last_frame
            if opened_at is None:
                if now - session.started > self._open_limit:
                    self._failed(
                        f"opening {redact_uri(self.cfg.uri) or self.cfg.id} did not finish in "
                        f"{now - session.started:.1f} s: check the camera answers; retrying",
                        unexpected=False,
                    )
                    return "open_hung"
                continue
            since = last if last is not None else opened_at
            if now - since > self.cfg.stall_after_s:
                with self._lock:
                    self._set_state(
                        CameraState.STALLED,
                        f"no frame for {now - since:.1f} s (stall_after_s "
                        f"{self.cfg.stall_after_s:g}): reconnecting; check the camera's "
                        "power and network",
                    )
                log.warning("camera %s stalled: no frame for %.1f s; reconnecting",
                            self.cfg.id, now - since)
                return "stalled"

    def _abandon(self, session: _Session | None) -> None:
        if session is None:
            return
        with self._lock:
            self._count_bad(session)
            session.abandoned = True
        if session.thread is not None and session.thread.is_alive():
            self._hung.append(session)

    def _wait_for_hung_readers(self) -> bool:
        """Hold off new readers while too many old ones are stuck in the driver.
        False when stop() was called meanwhile."""
        while True:
            self._hung = [s for s in self._hung if s.thread is not None and s.thread.is_alive()]
            if len(self._hung) < MAX_HUNG_READERS:
                return True
            with self._lock:
                self._set_state(
                    CameraState.OFFLINE,
                    f"{len(self._hung)} reads of camera {self.cfg.id} are stuck in the driver: "
                    "replug or power-cycle the camera, or restart the agent",
                )
            if self._stop.wait(self._tick * 4):
                return False

    def _backoff(self, failures: int) -> float:
        """Capped exponential backoff with "equal jitter", never below reconnect_min_s."""
        lo, hi = self.cfg.reconnect_min_s, self.cfg.reconnect_max_s
        step = hi if failures >= 32 else min(hi, lo * 2 ** max(0, failures - 1))
        return self._rng.uniform(max(lo, step / 2), step)

    def _failed(self, message: str, *, unexpected: bool) -> None:
        with self._lock:
            if unexpected:
                self._errors += 1
            self._set_state(CameraState.OFFLINE, message)
        log.warning("camera %s offline: %s", self.cfg.id, message)

    # -- reader -------------------------------------------------------------

    def _read_loop(self, session: _Session) -> None:
        source = session.source
        try:
            source.open()
            with self._lock:
                session.opened_at = self._mono()
            while not session.abandoned and not self._stop.is_set():
                image = source.read()
                if session.abandoned:
                    break
                if image is None:
                    session.outcome = "ended"
                    break
                self._take(session, _check_image(image))
        except Exception as err:
            if not session.abandoned:
                unexpected = not isinstance(err, CameraError)
                if unexpected:
                    log.exception("camera %s: the source raised", self.cfg.id)
                    with self._lock:
                        self._errors += 1
                session.outcome, session.error = "failed", _describe(self.cfg, err)
        finally:
            try:
                source.close()
            except Exception:
                log.exception("camera %s: closing the source failed", self.cfg.id)
            with self._lock:
                self._count_bad(session)
            session.done.set()

    def _take(self, session: _Session, image: np.ndarray) -> None:
        mono_ns = self._clock.monotonic_ns()
        now = mono_ns / 1e9
        with self._lock:
            if session.abandoned:
                return
            session.last_frame = now
            index = self._read
            self._read += 1
            self._last_frame = now
            if self._state != CameraState.ONLINE:
                self._online_since = now
                self._set_state(CameraState.ONLINE, None)
            taken = self._cap.take(now)
            if taken:
                session.frames += 1
                self._frames += 1
                self._recent.append(now)
            else:
                self._skipped += 1
        metrics.CAMERA_FRAMES.labels(self.cfg.id).inc()
        if not taken:
            return
        frame = Frame(
            camera_id=self.cfg.id,
            index=index,
            image=image,
            mono_ns=mono_ns,
            wall_ts=self._clock.wall(),
            source_ts=getattr(session.source, "source_ts", None),
        )
        try:
            self._on_frame(frame)
        except Exception as err:
            with self._lock:
                self._errors += 1
                count = self._errors
                self._last_error = f"frame handler failed: {type(err).__name__}: {err}"
            if count == 1 or count % _LOG_EVERY == 0:
                log.exception("camera %s: on_frame raised (%d errors so far)",
                              self.cfg.id, count)

    # -- helpers ------------------------------------------------------------

    def _mono(self) -> float:
        return self._clock.monotonic_ns() / 1e9

    @staticmethod
    def _source_bad(session: _Session | None) -> int:
        """Bad frames its source reports and the total does not hold yet."""
        if session is None or session.bad_counted:
            return 0
        bad = getattr(session.source, "bad_frames", 0)
        return bad if isinstance(bad, int) else 0

    def _count_bad(self, session: _Session) -> None:
        """Move a finished source's bad_frames into the total, once. Call with _lock held."""
        self._bad_frames_done += self._source_bad(session)
        session.bad_counted = True

    def _set_state(self, state: CameraState, error: str | None) -> None:
        """Call with _lock held."""
        self._state = state
        self._last_error = error
        for s in CameraState:
            metrics.CAMERA_STATE.labels(self.cfg.id, str(s)).set(1 if s == state else 0)
