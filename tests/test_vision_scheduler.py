"""The presence gate and the inference scheduler, with a real worker thread."""

from __future__ import annotations

import functools
import gc
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from agent.config.model import CameraConfig
from agent.vision.gate import KEEPALIVE_S, MotionGate
from agent.vision.scheduler import InferenceScheduler

S = 1_000_000_000  # ns per second


@dataclass(frozen=True)
class Frame:  # the shape of agent.sources.camera.base.Frame that the scheduler uses
    camera_id: str
    index: int
    image: np.ndarray
    mono_ns: int


@functools.cache
def _lane() -> np.ndarray:
    texture = np.random.default_rng(99).integers(90, 170, (360, 640, 3), dtype=np.uint8)
    return cv2.GaussianBlur(texture, (15, 15), 4).astype(np.float32)


def _barn(seed: int = 0, cow: bool = False, brightness: float = 1.0,
          bucket: bool = False) -> np.ndarray:
    """An empty lane (straw texture, sensor noise), or with a cow or a bucket in it."""
    img = _lane() * brightness + np.random.default_rng(seed).normal(0, 4, (360, 640, 1))
    if cow:
        cv2.ellipse(img, (320, 190), (130, 75), 0, 0, 360, (30, 30, 35), -1)
        cv2.circle(img, (280, 165), 25, (235, 235, 235), -1)  # a white patch
    if bucket:
        cv2.rectangle(img, (40, 250), (110, 340), (20, 60, 200), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------ gate
def test_gate_sees_a_cow_that_stands_still_and_ignores_noise_and_lamps() -> None:
    gate = MotionGate(0.01)
    t = 0
    assert gate.check(_barn(0), t).reason == "first"
    for i in range(1, 8):  # empty lane, sensor noise only
        t += S // 2
        res = gate.check(_barn(i), t)
        assert not res.run and res.score < 0.01, res
    t += S // 2
    res = gate.check(_barn(50, brightness=1.3), t)  # the lamps come on
    assert not res.run, res
    # a cow walks in and stands still for 60 s: every frame still goes through
    for i in range(120):
        t += S // 2
        res = gate.check(_barn(100 + i, cow=True, brightness=1.3), t)
        assert res.run and res.reason == "change" and res.score > 0.1, (i, res)
    # she leaves: empty at once (the background never learnt her)
    t += S // 2
    res = gate.check(_barn(300, brightness=1.3), t)
    assert not res.run and res.score < 0.01, res


def test_a_lasting_change_becomes_background_and_its_removal_is_seen() -> None:
    gate = MotionGate(0.01, absorb_s=10)
    gate.check(_barn(0), 0)
    reasons = [gate.check(_barn(i, bucket=True), i * S).reason for i in range(1, 16)]
    # a bucket put down: present for absorb_s, then part of the scene
    assert reasons == ["change"] * 11 + ["empty"] * 4
    # taken away: the old scene is recognised, empty at once
    res = gate.check(_barn(20), 15 * S + S // 2)
    assert res.reason == "empty" and res.score < 0.01
    assert gate.check(_barn(21, cow=True), 16 * S).run


def test_gate_lets_a_frame_through_now_and_then_and_can_be_off() -> None:
    gate = MotionGate(0.01)
    gate.check(_barn(0), 0)
    ran = [gate.check(_barn(i), i * S // 2).reason for i in range(1, 41)]  # 20 s, empty
    keep = ran.count("keepalive")
    assert keep == pytest.approx(20 / KEEPALIVE_S, abs=1) and ran.count("empty") == 40 - keep
    off = MotionGate(0.0)
    assert all(off.check(_barn(i), i).reason == "off" for i in range(3))


def test_gate_looks_only_inside_the_region_of_interest() -> None:
    gate = MotionGate(0.01, roi=(0.0, 0.0, 0.25, 0.25))  # top-left corner only
    gate.check(_barn(0), 0)
    assert not gate.check(_barn(1, cow=True), S).run  # the cow is in the middle
    depth = MotionGate(0.01)
    flat = np.full((480, 640), 2000, np.uint16)
    depth.check(flat, 0)
    near = flat.copy()
    near[100:400, 200:500] = 900  # something 1.1 m closer
    assert not depth.check(flat, S).run and depth.check(near, 2 * S).run


# ------------------------------------------------------------------- scheduler
def _cams(*ids: str, fps: float = 50.0, threshold: float = 0.0) -> list[CameraConfig]:
    return [CameraConfig(id=i, infer_fps=fps, motion_threshold=threshold) for i in ids]


def _wait(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


SMALL = np.zeros((36, 64, 3), np.uint8)


def test_a_slow_model_drops_frames_instead_of_queueing_them() -> None:
    done: list[int] = []

    def slow(camera_id: str, frame: Frame) -> None:
        time.sleep(0.05)
        done.append(frame.index)

    sched: InferenceScheduler[Frame] = InferenceScheduler(_cams("a"), slow)
    sched.start()
    try:
        for i in range(60):  # a burst of 60 frames against 50 ms per inference
            sched.offer(Frame("a", i, SMALL, i * S))
        _wait(lambda: sched.stats()["a"]["inferred"] + sched.stats()["a"]["busy"] == 60)
    finally:
        assert sched.stop(2.0)
    st = sched.stats()["a"]
    assert st["offered"] == 60 and st["budget"] == 0
    assert 1 <= st["inferred"] <= 5 and st["busy"] == 60 - st["inferred"]
    assert done == sorted(done) and done[-1] == 59  # the newest frame always wins


def test_mailbox_holds_one_frame_so_memory_is_bounded() -> None:
    release = threading.Event()
    seen: list[int] = []

    def blocked(camera_id: str, frame: Frame) -> None:
        seen.append(frame.index)
        release.wait(5)

    sched: InferenceScheduler[Frame] = InferenceScheduler(_cams("a"), blocked)
    sched.start()
    refs = []
    try:
        first = Frame("a", 0, np.zeros((720, 1280, 3), np.uint8), 0)
        sched.offer(first)
        _wait(lambda: seen == [0])
        refs.append(weakref.ref(first))
        del first
        for i in range(1, 100):
            frame = Frame("a", i, np.zeros((720, 1280, 3), np.uint8), i * S)
            assert sched.offer(frame)  # never blocks, always takes the newest
            refs.append(weakref.ref(frame))
            del frame
        gc.collect()
        alive = [r().index for r in refs if r() is not None]  # type: ignore[union-attr]
        assert alive == [0, 99]  # the one in process and the one waiting: ~5 MB, not 270
        release.set()
        _wait(lambda: sched.stats()["a"]["inferred"] == 2)
    finally:
        release.set()
        sched.stop(2.0)
    assert seen == [0, 99] and sched.stats()["a"]["busy"] == 98


def test_the_inference_budget_is_honoured() -> None:
    sched: InferenceScheduler[Frame] = InferenceScheduler(
        _cams("a", fps=2.0), lambda cid, f: None)
    sched.start()
    try:
        for i in range(30):  # 3 s of a 10 fps camera, capture times 100 ms apart
            before = sched.stats()["a"]["inferred"]
            if sched.offer(Frame("a", i, SMALL, 5 * S + i * S // 10)):
                _wait(lambda b=before: sched.stats()["a"]["inferred"] > b)
    finally:
        sched.stop(2.0)
    st = sched.stats()["a"]
    assert st["inferred"] == 6 and st["budget"] == 24 and st["busy"] == 0


def test_the_budget_shrinks_while_ingest_has_a_backlog() -> None:
    busy = [False]
    sched: InferenceScheduler[Frame] = InferenceScheduler(
        _cams("a", fps=2.0), lambda cid, f: None, ingest_busy=lambda: busy[0], busy_factor=4)
    sched.start()
    try:
        for i in range(60):  # 6 s of a 10 fps camera; ingest busy for the last 4 s
            busy[0] = i >= 20
            before = sched.stats()["a"]["inferred"]
            if sched.offer(Frame("a", i, SMALL, 5 * S + i * S // 10)):
                _wait(lambda b=before: sched.stats()["a"]["inferred"] > b)
    finally:
        sched.stop(2.0)
    # 2 s at 2 fps (4 frames), then 4 s at 0.5 fps (2 frames)
    assert sched.stats()["a"]["inferred"] == 6


def test_the_empty_scene_is_reported_so_a_visit_can_end() -> None:
    empty: list[int] = []
    sched: InferenceScheduler[Frame] = InferenceScheduler(
        _cams("a", fps=50.0, threshold=0.01), lambda cid, f: None,
        on_empty=lambda cid, f: empty.append(f.index))
    sched.start()
    try:
        for i in range(6):  # the empty lane, half a second apart
            before = sched.stats()["a"]
            sched.offer(Frame("a", i, _barn(i), 5 * S + i * S // 2))
            _wait(lambda b=before: sum(sched.stats()["a"][k] for k in ("inferred", "empty"))
                  > b["inferred"] + b["empty"])
    finally:
        sched.stop(2.0)
    assert empty and empty == list(range(6 - len(empty), 6))  # after the first frame


def test_the_gate_keeps_empty_frames_from_the_models() -> None:
    ran: list[int] = []
    sched: InferenceScheduler[Frame] = InferenceScheduler(
        _cams("a", fps=50.0, threshold=0.01), lambda cid, f: ran.append(f.index))
    sched.start()
    try:
        for i in range(6):
            cow = i >= 4
            sched.offer(Frame("a", i, _barn(i, cow=cow), i * S // 5))
            _wait(lambda n=i + 1: sum(sched.stats()["a"][k] for k in ("inferred", "empty")) == n)
    finally:
        sched.stop(2.0)
    assert ran == [0, 4, 5]  # the first (no background yet), then the cow
    assert sched.stats()["a"]["empty"] == 3


def test_an_error_in_process_is_counted_and_the_worker_goes_on() -> None:
    def flaky(camera_id: str, frame: Frame) -> None:
        if frame.index % 2 == 0:
            raise RuntimeError("model exploded")

    metric = {"camera": "flaky", "reason": "error"}
    before = REGISTRY.get_sample_value("dairy_edge_frames_dropped_total", metric) or 0.0
    sched: InferenceScheduler[Frame] = InferenceScheduler(_cams("flaky"), flaky)
    sched.start()
    try:
        for i in range(6):
            sched.offer(Frame("flaky", i, SMALL, i * S))
            _wait(lambda n=i + 1: sched.stats()["flaky"]["inferred"]
                  + sched.stats()["flaky"]["error"] == n)
    finally:
        assert sched.stop(2.0)
    assert sched.stats()["flaky"]["error"] == 3 and sched.stats()["flaky"]["inferred"] == 3
    assert REGISTRY.get_sample_value("dairy_edge_frames_dropped_total", metric) == before + 3


def test_cameras_take_turns_and_the_idle_tick_runs_without_frames() -> None:
    order: list[str] = []
    ticks: list[float] = []
    gate = threading.Event()

    def process(camera_id: str, frame: Frame) -> None:
        order.append(camera_id)
        gate.wait(5)

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 2:
            raise RuntimeError("a voter bug")  # logged; the ticks go on

    sched: InferenceScheduler[Frame] = InferenceScheduler(_cams("a", "b"), process)
    sched.close_idle(tick, interval_s=0.05)
    sched.start()
    try:
        _wait(lambda: len(ticks) >= 4)  # no frame at all: the tick still comes
        gate.clear()
        sched.offer(Frame("a", 0, SMALL, 0))
        _wait(lambda: order == ["a"])
        for i in range(1, 4):  # while "a" is in process, both cameras fill their slot
            sched.offer(Frame("a", i, SMALL, i * S))
            sched.offer(Frame("b", i, SMALL, i * S))
        gate.set()
        _wait(lambda: len(order) == 3)
    finally:
        gate.set()
        sched.stop(2.0)
    assert order == ["a", "b", "a"]  # b is served before a's second frame
    with pytest.raises(KeyError, match="not scheduled"):
        sched.offer(Frame("zz", 0, SMALL, 0))
    assert not sched.offer(Frame("a", 9, SMALL, 99 * S))  # stopped: refused, not queued
