#!/usr/bin/env python3
"""Train the shipped BCS model on synthetic top-view cows, with the farm fit's code.

The default model is made exactly as a farm's would be (`dairy-edge vision bcs
fit`): photos -> segmentation -> features -> ridge with nested cross-validation
grouped by cow -> ONNX model directory. Only the photos differ: generated
(agent/sources/camera/synth/topview*.py, the "train" looks) instead of a
technician's. The held-out figures come from scripts/eval_bcs.py on looks the
training never used.

    .venv/bin/python scripts/train_bcs.py                # writes models/bcs.onnx + manifest
    .venv/bin/python scripts/train_bcs.py --depth        # models/bcs_depth.onnx (depth cameras)
    .venv/bin/python scripts/train_bcs.py --cows 60 --out /tmp/bcs   # a quick try

Deterministic for a seed (the generator, the folds and the fit are all seeded).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cli.bcs import load_bcs_image
from agent.sources.camera.synth.topview import make_herd_photos
from agent.vision.bcs.export import DEPTH_MODEL_NAME, MODEL_NAME, write_model_dir
from agent.vision.bcs.fit import fit, measure_all, read_labels

SEED = 20261202


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cows", type=int, default=300, help="synthetic cows (default 300)")
    ap.add_argument("--photos", default="2,4", help="photos per cow, min,max (default 2,4)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--depth", action="store_true", help="train on depth frames instead")
    ap.add_argument("--out", type=Path, default=ROOT / "models",
                    help="model directory to write (default: models/)")
    ap.add_argument("--version", default=None)
    args = ap.parse_args(argv)
    lo, hi = (int(v) for v in args.photos.split(","))
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        csv = make_herd_photos(args.seed, args.cows, (lo, hi), "train", Path(tmp),
                               depth=args.depth, progress=True)
        labels = read_labels(csv)
        if args.depth:  # the depth PNGs sit beside the colour photos
            labels = [lab.__class__(lab.image.with_suffix(".png"), lab.bcs, lab.animal,
                                    lab.line) for lab in labels]
        from tqdm import tqdm

        measured = measure_all(labels, load_bcs_image,
                               progress=lambda it: tqdm(it, desc="measuring", unit="photo"))
        result = fit(measured, seed=args.seed)
    print(result.report())
    kind = "depth" if args.depth else "colour"
    version = args.version or f"synth-{kind}-s{args.seed}-c{args.cows}"
    path = write_model_dir(
        args.out, result.model, result.half_width, samples=result.samples,
        metrics=result.metrics(),
        data=f"synthetic top-view cows ({kind}), generator agent/sources/camera/synth/topview, "
             f"split train, seed {args.seed}, {result.photos} photos of {result.animals} cows",
        source="trained by scripts/train_bcs.py on generated images (no real photos)",
        licence="Apache-2.0", script="scripts/train_bcs.py", seed=args.seed, version=version,
        name=DEPTH_MODEL_NAME if args.depth else MODEL_NAME)
    print(f"wrote {path} ({version}) in {time.monotonic() - start:.0f} s; evaluate it with "
          "scripts/eval_bcs.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
