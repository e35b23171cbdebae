#!/usr/bin/env python3
"""Cost of BCS per frame at one thread: segmentation, features, model; p50/p95.

Frames are generated top views (held-out looks, 720 x 600 by default) rendered
before timing; each frame is scored --repeat times. The issue's goals: the
model at most 20 ms p95, the whole frame (segmentation included) at most 60 ms.

    .venv/bin/python scripts/bench_bcs.py --frames 40
    .venv/bin/python scripts/bench_bcs.py --frames 40 --depth
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config.model import ModelsConfig
from agent.models.registry import ModelRegistry
from agent.sources.camera.synth.topview import render, sample_body, sample_look
from agent.vision.bcs.export import DEPTH_MODEL_NAME, MODEL_NAME
from agent.vision.bcs.features import back_features, parse_layout
from agent.vision.bcs.segment import NoCow, segment_colour, segment_depth


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--depth", action="store_true")
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--height", type=int, default=600)
    ap.add_argument("--model", type=Path, default=None, help="model dir (default: shipped)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    name = DEPTH_MODEL_NAME if args.depth and args.model is None else MODEL_NAME
    reg = ModelRegistry(ModelsConfig(dir=args.model or ModelsConfig().dir, threads=1),
                        required=[name], only=[name])
    reg.load_all()
    runner = reg.get(name)
    if runner is None:
        print(f"no usable bcs model: {reg.status()}", file=sys.stderr)
        return 2
    groups = parse_layout(runner.inputs[0].name)
    rng = np.random.default_rng(424242)
    frames = []
    for _ in range(args.frames):
        s = render(sample_body(rng, "heldout"), float(rng.choice(np.arange(1.5, 4.75, 0.25))),
                   sample_look(rng, "heldout"), width=args.width, height=args.height, rng=rng)
        frames.append(s.depth if args.depth else s.colour)
    seg_t, feat_t, model_t, total_t, missed = [], [], [], [], 0
    for _ in range(args.repeat):
        for img in frames:
            t0 = time.perf_counter()
            try:
                seg = segment_depth(img) if args.depth else segment_colour(img)
                t1 = time.perf_counter()
                feats = back_features(seg, colour=None if args.depth else img,
                                      depth=img if args.depth else None)
            except NoCow:
                missed += 1
                continue
            t2 = time.perf_counter()
            runner.run([feats.vector(groups)[None, :]])
            t3 = time.perf_counter()
            seg_t.append(t1 - t0)
            feat_t.append(t2 - t1)
            model_t.append(t3 - t2)
            total_t.append(t3 - t0)
    kind = "depth" if args.depth else "colour"
    print(f"BCS per {kind} frame {args.width}x{args.height}, one thread, "
          f"{len(total_t)} timed ({missed} without a usable cow):")
    for name, xs in (("segmentation", seg_t), ("features", feat_t), ("model", model_t),
                     ("whole frame", total_t)):
        print(f"  {name:<13} p50 {pct(xs, 50):7.2f} ms   p95 {pct(xs, 95):7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
