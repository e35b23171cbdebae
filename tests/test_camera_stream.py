"""A network camera served by the test: MJPEG over HTTP (multipart/x-mixed-replace,
JPEGs from cv2.imencode) on a real socket, read by the OpenCV source through
CameraWorker. The camera streams, goes quiet, comes back, disappears and is
restarted on the same port."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from helpers_mqtt import wait_for
from prometheus_client import REGISTRY

from agent.config.model import CameraConfig
from agent.sources.camera.base import CameraState, Frame
from agent.sources.camera.opencv import OpenCVSource
from agent.sources.camera.worker import CameraWorker

pytestmark = pytest.mark.timeout(60)

BOUNDARY = "frame"


class MjpegCamera:
    """An MJPEG-over-HTTP camera on 127.0.0.1 that can pause, stop and restart."""

    def __init__(self, fps: float = 25.0) -> None:
        self.fps = fps
        self.sending = threading.Event()
        self.sending.set()
        self.sent = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}"
                )
                self.end_headers()
                while not camera._closing.is_set():
                    if not camera.sending.wait(0.02):
                        continue  # paused: connection open, nothing sent
                    _, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 200, np.uint8))
                    data = jpeg.tobytes()
                    try:
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n"
                        )
                        self.wfile.flush()
                    except OSError:
                        return  # the client hung up
                    camera.sent += 1
                    time.sleep(1 / camera.fps)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._closing.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        """Close the listening socket and every connection."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"


@pytest.fixture
def camera() -> object:
    cam = MjpegCamera()
    cam.start()
    yield cam
    cam.stop()


def _cfg(uri: str, **kw: object) -> CameraConfig:
    base = {"id": "lane1", "source": "opencv", "uri": uri, "fps_cap": 30.0,
            "stall_after_s": 0.5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.4}
    return CameraConfig.model_validate({**base, **kw})


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_this_opencv_reads_http_mjpeg(camera: MjpegCamera) -> None:
    """The OpenCV backend itself (FFMPEG) decodes the stream."""
    assert "FFMPEG:" in cv2.getBuildInformation()
    source = OpenCVSource(_cfg(camera.url))
    source.open()
    try:
        image = source.read()
    finally:
        source.close()
    assert image is not None and image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert abs(float(image.mean()) - 200) < 5


def test_stream_stalls_goes_offline_and_comes_back(camera: MjpegCamera) -> None:
    frames: list[Frame] = []
    worker = CameraWorker(_cfg(camera.url), frames.append)
    frames_before = _metric("dairy_edge_camera_frames_total", camera="lane1")
    worker.start()
    try:
        assert wait_for(lambda: worker.status().frames >= 5)
        status = worker.status()
        assert status.state == CameraState.ONLINE and status.last_error is None
        assert status.fps > 0 and status.last_frame_age_s is not None
        assert frames[0].image.shape == (48, 64, 3) and frames[0].source_ts is None
        assert _metric("dairy_edge_camera_state", camera="lane1", state="online") == 1
        assert _metric("dairy_edge_camera_frames_total", camera="lane1") >= frames_before + 5

        # The camera goes quiet with the connection open: the read blocks, and
        # the watchdog must see it from outside.
        camera.sending.clear()
        assert wait_for(lambda: worker.status().state == CameraState.STALLED, 5)
        assert "no frame for" in (worker.status().last_error or "")
        # ...and the supervisor acts on it: abandons the blocked read, reconnects.
        assert wait_for(lambda: "reconnecting" in (worker.status().last_error or ""), 5)

        camera.sending.set()
        assert wait_for(lambda: worker.status().state == CameraState.ONLINE, 10)
        assert worker.status().reconnects >= 1
        count = worker.status().frames
        assert wait_for(lambda: worker.status().frames >= count + 5)

        # The camera disappears (power cut): offline, retried with backoff,
        # with an error that says what to check.
        camera.stop()
        assert wait_for(lambda: "cannot open" in (worker.status().last_error or ""), 10)
        status = worker.status()
        assert status.state == CameraState.OFFLINE
        assert camera.url in (status.last_error or "") and "check" in (status.last_error or "")
        assert _metric("dairy_edge_camera_state", camera="lane1", state="offline") == 1
        reconnects = status.reconnects

        camera.start()  # the same port
        assert wait_for(lambda: worker.status().state == CameraState.ONLINE, 10)
        status = worker.status()
        assert status.reconnects > reconnects and status.last_error is None
        assert _metric("dairy_edge_camera_reconnects_total", camera="lane1") >= status.reconnects
    finally:
        t0 = time.monotonic()
        assert worker.stop(3.0)
    assert time.monotonic() - t0 < 3.0
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_unreachable_stream_is_offline_with_advice() -> None:
    worker = CameraWorker(_cfg("rtsp://admin:s3cret@127.0.0.1:1/live"), lambda f: None)
    worker.start()
    try:
        assert wait_for(lambda: worker.status().reconnects >= 1)
        status = worker.status()
    finally:
        assert worker.stop(3.0)
    assert status.state == CameraState.OFFLINE
    error = status.last_error or ""
    assert "cannot open rtsp://admin:***@127.0.0.1:1/live" in error and "s3cret" not in error
    assert "check the URL" in error
