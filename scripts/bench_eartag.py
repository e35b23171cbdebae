"""Benchmark the ear-tag reader at one thread: model calls, whole frames, memory.

Reports, on this machine:

- each model, p50/p95 per call (goal <= 20 ms p95): the detector at the size it
  runs on a 1280x720 frame, the recogniser on a typical tag crop;
- the whole pipeline, p50/p95 per 1280x720 generated frame with tags in view
  (goal <= 100 ms p95);
- resident memory added by loading both models and running them (goal <= 80 MB),
  from /proc/self/status VmRSS before and after.

Frames come from the synthetic generator (dev seeds, never held-out ones).

    python scripts/bench_eartag.py --frames 40 --out reports/eartag_bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.sources.camera.synth import DEV, render_crop, render_scene
from agent.vision.eartag.detect import DetParams, det_input
from agent.vision.eartag.frame import EartagReader, ReaderParams
from agent.vision.eartag.models import open_eartag_runners
from agent.vision.eartag.read import RecParams, rec_input


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "max_ms": round(float(ms.max()), 2), "calls": len(values)}


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40, help="1280x720 frames with tags (40)")
    ap.add_argument("--calls", type=int, default=50, help="calls per model (50)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--det-max-side", type=int, default=DetParams().max_side)
    ap.add_argument("--refine-text-px", type=float, default=ReaderParams().refine_text_px,
                    help="two stages: coarse detector at --det-max-side, then full-resolution "
                    "windows with text this tall (0: one stage)")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    args = ap.parse_args(argv)

    # Inputs first, so their memory is not counted as the models'.
    frames = []
    seed = 510_000
    while len(frames) < args.frames:
        img, label = render_scene(seed, DEV)
        seed += 1
        if any(t["legible"] for t in label["tags"]):  # "with tags in view"
            frames.append(img)
    crop, _ = render_crop(510_500, DEV)
    det_params = DetParams(max_side=args.det_max_side)
    x_det, _, _ = det_input(frames[0], det_params)
    # A 4-digit number line is about 2.7 times as wide as tall: 48 x 128.
    x_rec = rec_input(cv2.resize(crop, (128, 48), interpolation=cv2.INTER_AREA), RecParams())

    before = rss_mb()
    print(f"loading models from {args.models_dir} ({args.threads} thread)", file=sys.stderr)
    det, rec = open_eartag_runners(args.models_dir, args.threads)
    reader = EartagReader(det, rec, params=ReaderParams(
        det=det_params, refine_text_px=args.refine_text_px))
    det.run([x_det])  # warm-up: first calls allocate the arenas
    rec.run([x_rec])
    result: dict[str, object] = {"threads": args.threads, "refine_text_px": args.refine_text_px,
                                 "det_input": list(x_det.shape),
                                 "rec_input": list(x_rec.shape)}
    result["det"] = pct(timed(lambda: det.run([x_det]), args.calls))
    print(f"det {x_det.shape}: {result['det']}", file=sys.stderr)
    result["rec"] = pct(timed(lambda: rec.run([x_rec]), args.calls))
    print(f"rec {x_rec.shape}: {result['rec']}", file=sys.stderr)
    per_frame = []
    boxes = []
    for i, img in enumerate(frames):
        t0 = time.perf_counter()
        readings = reader.read(img)
        per_frame.append(time.perf_counter() - t0)
        boxes.append(len(readings))
        sys.stderr.write(f"\rframes {i + 1}/{len(frames)}")
    sys.stderr.write("\n")
    result["frame_1280x720"] = {**pct(per_frame), "boxes_per_frame_mean":
                                round(float(np.mean(boxes)), 2)}
    after = rss_mb()
    result["rss_mb"] = {"before_load": round(before, 1), "after_runs": round(after, 1),
                        "added": round(after - before, 1)}
    goals = {"det_p95_ms<=20": result["det"]["p95_ms"] <= 20,  # type: ignore[index]
             "rec_p95_ms<=20": result["rec"]["p95_ms"] <= 20,  # type: ignore[index]
             "frame_p95_ms<=100": result["frame_1280x720"]["p95_ms"] <= 100,  # type: ignore[index]
             "rss_added_mb<=80": after - before <= 80}
    result["goals_met"] = goals
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
