"""CameraWorker against sources that misbehave the way drivers do: a read that
never returns, an open that hangs, a source that raises, a handler that
raises. The stand-in sources replace camera hardware only; real backends are
tested in test_camera_replay.py and test_camera_stream.py."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from helpers_mqtt import wait_for

from agent.config.model import CameraConfig
from agent.errors import TransientError
from agent.sources.camera.base import CameraError, CameraState, Frame, redact_uri
from agent.sources.camera.factory import make_source
from agent.sources.camera.opencv import OpenCVSource
from agent.sources.camera.picam import PiCameraSource
from agent.sources.camera.replay import ReplaySource
from agent.sources.camera.worker import MAX_HUNG_READERS, CameraWorker, RateCap

pytestmark = pytest.mark.timeout(60)

IMAGE = np.zeros((8, 8, 3), np.uint8)


class Camera:
    """A scripted camera: ``frames`` frames every ``period`` s, then it hangs in
    read() (or open()) until released, like a wedged driver."""

    def __init__(self, frames: int = 1000, period: float = 0.01, *,
                 hang_open: bool = False, fail_after: int | None = None,
                 error: Exception | None = None) -> None:
        self.frames, self.period = frames, period
        self.hang_open, self.fail_after, self.error = hang_open, fail_after, error
        self.release = threading.Event()
        self.opens = 0
        self.closes = 0
        self.sources: list[_Source] = []

    def __call__(self, cfg: CameraConfig) -> _Source:
        source = _Source(self)
        self.sources.append(source)
        return source


class _Source:
    nominal_fps = None

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.n = 0
        self.raised = False

    def open(self) -> None:
        self.camera.opens += 1
        if self.camera.hang_open:
            self.camera.release.wait()

    def read(self) -> np.ndarray | None:
        cam = self.camera
        if cam.fail_after is not None and self.n >= cam.fail_after:
            self.raised = True
            raise cam.error or CameraError("gone")
        if self.n >= cam.frames:
            cam.release.wait()
            raise CameraError("released")
        self.n += 1
        time.sleep(cam.period)
        return IMAGE

    def close(self) -> None:
        self.camera.closes += 1


def _cfg(**kw: object) -> CameraConfig:
    base = {"id": "cam1", "source": "opencv", "fps_cap": 100.0, "stall_after_s": 0.3,
            "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
    return CameraConfig.model_validate({**base, **kw})


def test_a_read_that_never_returns_is_stalled_and_stop_does_not_wait_for_it() -> None:
    camera = Camera(frames=5)
    worker = CameraWorker(_cfg(), lambda f: None, source_factory=camera)
    worker.start()
    try:
        assert wait_for(lambda: "reconnecting" in (worker.status().last_error or ""))
        assert worker.status().state == CameraState.STALLED
        # Each fresh source gives 5 frames and hangs again; the worker keeps
        # reconnecting until too many abandoned reads are stuck, then waits.
        assert wait_for(lambda: "stuck in the driver" in (worker.status().last_error or ""))
        assert worker.status().state == CameraState.OFFLINE
        assert len(camera.sources) == MAX_HUNG_READERS
        assert worker.status().reconnects == MAX_HUNG_READERS - 1
        t0 = time.monotonic()
        worker.stop(0.5)
        assert time.monotonic() - t0 < 1.5
    finally:
        camera.release.set()
    # Released, the abandoned readers close their own sources.
    assert wait_for(lambda: camera.closes == camera.opens, 5)


def test_stuck_readers_returning_lets_the_camera_come_back() -> None:
    camera = Camera(frames=3)
    worker = CameraWorker(_cfg(), lambda f: None, source_factory=camera)
    worker.start()
    try:
        assert wait_for(lambda: "stuck in the driver" in (worker.status().last_error or ""))
        camera.frames = 10_000
        camera.release.set()
        assert wait_for(lambda: worker.status().state == CameraState.ONLINE)
        frames = worker.status().frames
        assert wait_for(lambda: worker.status().frames > frames + 5)
    finally:
        assert worker.stop(2.0)


def test_an_open_that_hangs_is_reported_and_retried() -> None:
    camera = Camera(hang_open=True)
    worker = CameraWorker(_cfg(stall_after_s=0.2), lambda f: None, source_factory=camera)
    worker.start()  # open limit: 2 s (open timeout floor) + stall_after_s
    try:
        assert wait_for(lambda: "did not finish" in (worker.status().last_error or ""), 10)
        assert worker.status().state == CameraState.OFFLINE
    finally:
        worker.stop(0.5)
        camera.release.set()


def test_exceptions_from_source_and_handler_never_kill_the_worker() -> None:
    camera = Camera(fail_after=3, error=RuntimeError("driver bug"))
    calls = 0

    def on_frame(frame: Frame) -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise ValueError("handler bug")

    worker = CameraWorker(_cfg(), on_frame, source_factory=camera)
    worker.start()
    try:
        assert wait_for(lambda: worker.status().reconnects >= 2 and calls >= 6)
    finally:
        assert worker.stop(2.0)
    status = worker.status()
    raised = sum(s.raised for s in camera.sources)
    assert raised >= 2 and status.reconnects >= 2
    # Every unexpected exception is counted: each source's RuntimeError (one may
    # land after stop() and go uncounted) and every other handler call.
    assert raised + (calls + 1) // 2 - status.errors in (0, 1)
    assert status.frames == calls


def test_source_error_message_is_kept_and_backoff_is_capped() -> None:
    camera = Camera(fail_after=0, error=CameraError("cannot open thing: check the cable"))
    worker = CameraWorker(_cfg(reconnect_min_s=0.02, reconnect_max_s=0.08), lambda f: None,
                          source_factory=camera)
    worker.start()
    try:
        assert wait_for(lambda: worker.status().reconnects >= 8)
        status = worker.status()
    finally:
        assert worker.stop(2.0)
    assert status.state == CameraState.OFFLINE
    assert status.last_error == "cannot open thing: check the cable"
    assert status.errors == 0  # an expected camera failure is not a bug
    delays = [worker._backoff(k) for k in range(40)]
    assert all(0.02 <= d <= 0.08 for d in delays) and delays[0] == pytest.approx(0.02)


def test_factory_failure_is_an_offline_camera() -> None:
    def broken(cfg: CameraConfig) -> _Source:
        raise ImportError("no module named picamera2")

    worker = CameraWorker(_cfg(), lambda f: None, source_factory=broken)
    worker.start()
    try:
        assert wait_for(lambda: worker.status().reconnects >= 1)
        status = worker.status()
    finally:
        assert worker.stop(2.0)
    assert status.state == CameraState.OFFLINE and status.errors >= 1
    assert "ImportError" in (status.last_error or "")


def test_status_is_json_ready() -> None:
    camera = Camera()
    worker = CameraWorker(_cfg(role="milk"), lambda f: None, source_factory=camera)
    assert worker.status().state == CameraState.CONNECTING
    worker.start()
    try:
        assert wait_for(lambda: worker.status().frames > 3)
        data = json.loads(json.dumps(worker.status().to_dict()))
    finally:
        assert worker.stop(2.0)
    assert data["id"] == "cam1" and data["role"] == "milk" and data["state"] == "online"
    assert set(data) >= {"source", "last_error", "frames", "fps", "last_frame_age_s",
                         "reconnects", "skipped", "bad_frames", "errors"}
    assert worker.status().state == CameraState.OFFLINE  # stopped
    assert worker.status().last_error == "stopped"


def test_rate_cap_passes_the_capped_rate() -> None:
    cap = RateCap(5.0)
    taken = [t for t in range(300) if cap.take(t / 30)]  # 30 fps for 10 s
    assert len(taken) in (50, 51)
    same = RateCap(10.0)  # a source at exactly the cap, with jitter, loses nothing
    jitter = [0.0, 0.004, -0.003, 0.002, -0.004]
    assert all(same.take(i / 10 + jitter[i % 5]) for i in range(100))


def test_picamera2_missing_says_install_the_pi_extra() -> None:
    source = PiCameraSource(_cfg(source="picamera2", uri="0"))
    with pytest.raises(CameraError, match="'pi' extra") as err:
        source.open()
    assert isinstance(err.value, TransientError)
    source.close()


def test_factory_and_bad_device_uri() -> None:
    assert isinstance(make_source(_cfg(source="opencv", uri="0")), OpenCVSource)
    assert isinstance(make_source(_cfg(source="replay", uri="/tmp")), ReplaySource)
    assert isinstance(make_source(_cfg(source="picamera2")), PiCameraSource)
    with pytest.raises(CameraError, match="neither a device"):
        OpenCVSource(_cfg(uri="front-door")).open()
    with pytest.raises(CameraError, match="cannot open camera device /dev/video63"):
        OpenCVSource(_cfg(uri="/dev/video63")).open()


def test_redact_uri() -> None:
    assert redact_uri("rtsp://admin:pw@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"
    assert redact_uri("http://cam/mjpg") == "http://cam/mjpg"
    assert redact_uri("/dev/video0") == "/dev/video0"
