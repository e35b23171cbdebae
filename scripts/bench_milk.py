#!/usr/bin/env python3
"""Cost of the milk check at one thread: the model alone, and a whole frame
(white balance, find the milk, features, model) through ``MilkClassifier``.

    .venv/bin/python scripts/bench_milk.py --frames 40 --calls 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config.model import ModelsConfig
from agent.records import MILK_CLASSES
from agent.sources.camera.synth.milkcup import MILK_TRAIN, render_milk
from agent.vision.milk import MilkClassifier, open_milk_runner
from agent.vision.milk.classify import prepare


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--models-dir", type=Path, default=ModelsConfig().dir)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    runner = open_milk_runner(args.models_dir, 1)
    frames = [render_milk(500_000 + i, MILK_CLASSES[i % 5], MILK_TRAIN)[0]
              for i in range(args.frames)]
    vecs = [v for v in (prepare(f).vector for f in frames[:10]) if v is not None]
    model_ms = []
    for i in range(args.calls):
        x = vecs[i % len(vecs)][None]
        t0 = time.perf_counter()
        runner.run([x])
        model_ms.append((time.perf_counter() - t0) * 1000)
    clf = MilkClassifier(lambda: runner)
    frame_ms = []
    for f in frames:
        t0 = time.perf_counter()
        clf.check(f)
        frame_ms.append((time.perf_counter() - t0) * 1000)
    sizes = sorted({f"{f.shape[1]}x{f.shape[0]}" for f in frames})
    print(f"model milk_cls: p50 {np.percentile(model_ms, 50):.4f} ms, "
          f"p95 {np.percentile(model_ms, 95):.4f} ms ({args.calls} calls, 1 thread)")
    print(f"frame (balance + find + features + model): p50 {np.percentile(frame_ms, 50):.1f} ms, "
          f"p95 {np.percentile(frame_ms, 95):.1f} ms ({args.frames} frames, "
          f"{sizes[0]}..{sizes[-1]}, 1 thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
