"""Cameras and models run at the lowest CPU priority, so MQTT ingest never waits
for them (scripts/bench_vision_ingest.py measures why)."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import numpy as np

from agent.config.model import CameraConfig
from agent.priority import lower_current_thread
from agent.vision.scheduler import InferenceScheduler


def test_a_lowered_thread_and_its_children_run_at_idle_priority() -> None:
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = os.sched_getscheduler(0)

    def parent() -> None:
        seen["done"] = {"idle": 1, "nice": 2}.get(lower_current_thread(), 0)
        seen["parent"] = os.sched_getscheduler(0)
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    assert seen["done"] == 1
    assert seen["parent"] == os.SCHED_IDLE and seen["child"] == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller of the test is untouched


def test_the_inference_worker_runs_in_the_background() -> None:
    policies: list[int] = []
    done = threading.Event()

    def process(camera_id: str, frame: object) -> None:
        policies.append(os.sched_getscheduler(0))
        done.set()

    cam = CameraConfig(id="c1", motion_threshold=0)
    sched: InferenceScheduler[SimpleNamespace] = InferenceScheduler(
        [cam], process, background=True)
    sched.start()
    try:
        sched.offer(SimpleNamespace(camera_id="c1", image=np.zeros((36, 64, 3), np.uint8),
                                    mono_ns=1))
        assert done.wait(10)
    finally:
        sched.stop()
    assert policies == [os.SCHED_IDLE]
