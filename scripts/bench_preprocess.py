#!/usr/bin/env python3
"""Cost of each preprocessing step on one thread: resize by method, rotation,
undistortion, ROI crop, colour conversion and the presence gate.

    .venv/bin/python scripts/bench_preprocess.py                 # 1280x720 and 1920x1080
    .venv/bin/python scripts/bench_preprocess.py --runs 500 --size 1280x720

Times are wall-clock per call (time.perf_counter_ns) with cv2.setNumThreads(1),
p50 and p95 over --runs calls after a warm-up; run it pinned to one core
(``taskset -c 0``) on a quiet machine for a one-core figure. The frame is a
synthetic barn-like scene (printed numbers, texture, noise), so methods that
skip work on flat images get no advantage. "err" is the RMS difference in grey
levels from INTER_AREA at the same size (how much aliasing a method adds).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config.model import CameraConfig
from agent.vision.calibrate import CameraCalibration
from agent.vision.gate import MotionGate
from agent.vision.preprocess import Preprocessor, resize, to_grey, to_rgb

METHODS = {
    "NEAREST": cv2.INTER_NEAREST,
    "LINEAR": cv2.INTER_LINEAR,
    "AREA": cv2.INTER_AREA,
    "CUBIC": cv2.INTER_CUBIC,
}
TARGETS = [(640, 360), (320, 180), (64, 36)]


def _scene(w: int, h: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3), dtype=np.uint8), (15, 15), 4)
    for _ in range(w * h // 4000):
        org = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.putText(img, str(rng.integers(0, 9999)), org, cv2.FONT_HERSHEY_SIMPLEX,
                    float(rng.uniform(0.5, 2)), colour, 2)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(max(3, runs // 20)):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        samples[i] = time.perf_counter_ns() - t0
    return float(np.percentile(samples, 50)) / 1e6, float(np.percentile(samples, 95)) / 1e6


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _row(name: str, p50: float, p95: float, note: str = "") -> None:
    print(f"  {name:44} {p50:9.3f} {p95:9.3f}  {note}")


def bench(size: tuple[int, int], runs: int) -> None:
    w, h = size
    img = _scene(w, h)
    print(f"\n{w}x{h} BGR uint8, {runs} runs, 1 thread            p50 ms    p95 ms")
    for target in TARGETS:
        ref = cv2.resize(img, target, interpolation=cv2.INTER_AREA)
        for name, flag in METHODS.items():
            p50, p95 = _time(lambda t=target, f=flag: cv2.resize(img, t, interpolation=f), runs)
            out = cv2.resize(img, target, interpolation=flag)
            _row(f"resize -> {target[0]}x{target[1]} {name}", p50, p95,
                 f"err {_rmse(out, ref):5.1f}")
        for purpose in ("model", "thumbnail"):
            p50, p95 = _time(lambda t=target, p=purpose: resize(img, t, p), runs)  # type: ignore[misc]
            out = resize(img, target, purpose)  # type: ignore[arg-type]
            _row(f"resize -> {target[0]}x{target[1]} resize(..., '{purpose}')", p50, p95,
                 f"err {_rmse(out, ref):5.1f}")
    _row("rotate 90 (whole frame)", *_time(lambda: cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE), runs))
    _row("rotate 180 (whole frame)", *_time(lambda: cv2.rotate(img, cv2.ROTATE_180), runs))

    k = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1]])
    dist = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    cal = CameraCalibration("bench", (w, h), k, dist, 0.3, (9, 6), 25.0, 10, "")
    mx, my = cv2.initUndistortRectifyMap(k, dist, None, k, (w, h), cv2.CV_32FC1)
    _row("remap undistort, float maps (whole frame)",
         *_time(lambda: cv2.remap(img, mx, my, cv2.INTER_LINEAR), runs))
    m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
    _row("remap undistort, fixed-point maps (whole)",
         *_time(lambda: cv2.remap(img, m1, m2, cv2.INTER_LINEAR), runs))
    roi = (0.1, 0.2, 0.8, 0.6)
    cases = [
        ("Preprocessor: ROI crop only (a view)", CameraConfig(id="b", roi=roi), None),
        ("Preprocessor: ROI + rotate 90", CameraConfig(id="b", roi=roi, rotation=90), None),
        ("Preprocessor: undistort (whole frame)", CameraConfig(id="b"), cal),
        ("Preprocessor: undistort + rotate 90 + ROI", CameraConfig(id="b", roi=roi, rotation=90),
         cal),
    ]
    cases.append(("Preprocessor: undistort+rot 90+ROI, scale .5",
                  CameraConfig(id="b", roi=roi, rotation=90), cal))
    for name, cfg, c in cases:
        pre = Preprocessor(cfg, c, scale=0.5 if "scale" in name else 1.0)
        _row(name, *_time(lambda p=pre: p.process(img), runs))  # type: ignore[misc]
    _row("cvtColor BGR -> grey (to_grey)", *_time(lambda: to_grey(img), runs))
    _row("cvtColor BGR -> RGB (to_rgb)", *_time(lambda: to_rgb(img), runs))
    frames = [_scene(w, h, seed) for seed in (2, 3)]
    gate = MotionGate(0.01)
    state = {"i": 0}

    def gate_once() -> None:
        state["i"] += 1
        gate.check(frames[state["i"] % 2], state["i"] * 200_000_000)

    _row("presence gate per frame (MotionGate.check)", *_time(gate_once, runs))


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Time preprocessing steps (resize methods, rotation, undistortion, ROI, "
        "colour, presence gate) on one thread; prints p50/p95 in milliseconds."
    )
    parser.add_argument("--runs", type=int, default=200, help="timed calls per step (default 200)")
    parser.add_argument("--size", action="append", default=None, metavar="WxH",
                        help="frame size; repeatable (default 1280x720 and 1920x1080)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.size] if args.size \
        else [(1280, 720), (1920, 1080)]
    print(f"OpenCV {cv2.__version__}, numpy {np.__version__}")
    for size in sizes:
        bench((size[0], size[1]), args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
