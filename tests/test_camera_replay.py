"""Replay sources on real files: a video written with cv2.VideoWriter and a
folder of JPEGs, alone and through CameraWorker."""

from __future__ import annotations

import logging
import time
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_mqtt import wait_for

from agent.config.model import CameraConfig
from agent.sources.camera.base import CameraError, CameraState, Frame
from agent.sources.camera.replay import ReplaySource
from agent.sources.camera.worker import CameraWorker

pytestmark = pytest.mark.timeout(60)

SIZE = (96, 64)  # w, h


def _image(i: int) -> np.ndarray:
    """A frame whose brightness encodes its number (JPEG keeps a flat grey)."""
    return np.full((SIZE[1], SIZE[0], 3), 20 + 20 * i, np.uint8)


def _number(image: np.ndarray) -> int:
    return round((float(image.mean()) - 20) / 20)


def _write_video(path: Path, n: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for i in range(n):
        writer.write(_image(i))
    writer.release()
    return path


def _write_folder(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        # Unpadded names: natural order must put frame_2 before frame_10.
        ok, buf = cv2.imencode(".jpg", _image(i))
        assert ok
        (folder / f"frame_{i * 5}.jpg").write_bytes(buf.tobytes())
    return folder


def _cfg(uri: Path | str, **kw: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": "cam1", "source": "replay", "uri": str(uri), **kw})


def _read_all(source: ReplaySource, limit: int = 1000) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    while len(out) < limit:
        image = source.read()
        if image is None:
            break
        out.append(image)
    return out


def test_video_replays_every_frame_in_order_at_its_own_rate(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "lane.avi", n=10, fps=20.0)
    source = ReplaySource(_cfg(video, fps_cap=1.0))  # fps_cap is not the file's rate
    source.open()
    assert source.nominal_fps == pytest.approx(20.0)
    t0 = time.monotonic()
    frames = _read_all(source)
    elapsed = time.monotonic() - t0
    source.close()
    assert [_number(f) for f in frames] == list(range(10))
    assert frames[0].shape == (SIZE[1], SIZE[0], 3) and frames[0].dtype == np.uint8
    # Paced, not dumped: 9 gaps of 50 ms. Only a lower bound (sleeping can
    # run late on a busy machine, never early).
    assert elapsed >= 0.35


def test_video_loop_starts_again(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "lane.avi", n=4, fps=100.0)
    source = ReplaySource(_cfg(video, loop=True))
    source.open()
    numbers = [_number(f) for f in _read_all(source, limit=10)]
    source.close()
    assert numbers == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_folder_natural_order_and_corrupt_files_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _write_folder(tmp_path / "frames", n=4)  # frame_0, _5, _10, _15
    (folder / "frame_7.jpg").write_bytes(b"this is not a jpeg")
    good = (folder / "frame_10.jpg").read_bytes()
    (folder / "frame_12.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    source = ReplaySource(_cfg(folder), fps=200.0)
    source.open()
    with caplog.at_level(logging.WARNING):
        frames = _read_all(source)
    source.close()
    numbers = [_number(f) for f in frames]
    # The truncated JPEG may decode partially (libjpeg pads it) or not at all;
    # either way it never crashes and the good frames keep their order.
    assert [n for n in numbers if n in (0, 1, 2, 3)][:4] == [0, 1, 2, 3]
    assert source.bad_frames in (1, 2)
    assert "frame_7.jpg" in caplog.text
    assert source.nominal_fps == 200.0


def test_folder_loop_and_default_rate_is_fps_cap(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "frames", n=3)
    source = ReplaySource(_cfg(folder, loop=True, fps_cap=50.0))
    source.open()
    assert source.nominal_fps == 50.0
    numbers = [_number(f) for f in _read_all(source, limit=7)]
    source.close()
    assert numbers == [0, 1, 2, 0, 1, 2, 0]


def test_bad_replay_paths_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        ReplaySource(_cfg(tmp_path / "nope")).open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images"):
        ReplaySource(_cfg(tmp_path / "empty")).open()
    (tmp_path / "clip.avi").write_bytes(b"\x00" * 100)
    with pytest.raises(CameraError, match="video"):
        source = ReplaySource(_cfg(tmp_path / "clip.avi"))
        source.open()
        source.read()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"nope")
    source = ReplaySource(_cfg(junk, loop=True), fps=100.0)
    source.open()
    with pytest.raises(CameraError, match="no readable image"):
        source.read()


def _collect(cfg: CameraConfig) -> tuple[CameraWorker, list[Frame]]:
    frames: list[Frame] = []
    return CameraWorker(cfg, frames.append), frames


def test_worker_replays_a_video_then_ends(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "lane.avi", n=8, fps=40.0)
    worker, frames = _collect(_cfg(video, fps_cap=100.0))
    worker.start()
    assert wait_for(lambda: worker.status().state == CameraState.ENDED)
    status = worker.status()
    assert worker.stop(2.0)
    assert [_number(f.image) for f in frames] == list(range(8))
    assert [f.index for f in frames] == list(range(8))
    assert all(f.camera_id == "cam1" for f in frames)
    assert [f.source_ts for f in frames] == pytest.approx([i / 40.0 for i in range(8)])
    assert all(b.mono_ns > a.mono_ns for a, b in pairwise(frames))
    assert status.frames == 8 and status.skipped == 0 and status.reconnects == 0
    assert status.last_error is None
    assert worker.status().state == CameraState.ENDED  # stop() keeps "ended"


def test_worker_fps_cap_skips_frames_and_counts_them(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "lane.avi", n=12, fps=20.0)
    worker, frames = _collect(_cfg(video, fps_cap=5.0))
    worker.start()
    assert wait_for(lambda: worker.status().state == CameraState.ENDED)
    worker.stop(2.0)
    status = worker.status()
    # 20 fps capped at 5: about every 4th frame; loose, timing on a shared CPU varies.
    assert 2 <= status.frames <= 6
    assert status.frames + status.skipped == 12
    assert len(frames) == status.frames
    indexes = [f.index for f in frames]
    assert indexes == sorted(indexes) and indexes[0] == 0


def test_worker_counts_bad_files_and_missing_folder_never_raises(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "frames", n=3)
    (folder / "frame_1.jpg").write_bytes(b"garbage")
    worker, frames = _collect(_cfg(folder, fps_cap=100.0))
    worker.start()
    assert wait_for(lambda: worker.status().state == CameraState.ENDED)
    worker.stop(2.0)
    # Three good files reach the handler or the fps cap (which counts them as
    # skipped: two reads within 10 ms on a busy machine), one bad file is counted.
    status = worker.status()
    assert len(frames) == status.frames and len(frames) + status.skipped == 3
    assert len(frames) >= 1 and status.bad_frames == 1

    missing = CameraWorker(_cfg(tmp_path / "gone", reconnect_min_s=0.05, reconnect_max_s=0.1),
                           lambda f: None)
    missing.start()
    assert wait_for(lambda: missing.status().reconnects >= 2)
    status = missing.status()
    assert missing.stop(2.0)
    assert status.state == CameraState.OFFLINE
    assert status.last_error and "does not exist" in status.last_error
    assert status.frames == 0 and status.last_frame_age_s is None
