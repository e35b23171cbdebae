#!/usr/bin/env python3
"""Evaluate BCS on synthetic cows the model never saw: another seed, held-out looks.

Two figures, both beside the always-the-herd-mean baseline:

1. the shipped (or --model) model on held-out photos, per photo, as
   `dairy-edge vision bcs` would score them;
2. the farm path: `vision bcs fit`'s grouped cross-validation on a held-out
   herd of farm size (default 35 cows, 4-8 photos each), as a farm with its own
   labelled photos would see it.

    .venv/bin/python scripts/eval_bcs.py                      # both, defaults
    .venv/bin/python scripts/eval_bcs.py --cows 80 --skip-fit # only the shipped model
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cli.bcs import load_bcs_image
from agent.config.model import ModelsConfig
from agent.models.registry import ModelRegistry
from agent.sources.camera.synth.topview import make_herd_photos
from agent.vision.bcs.export import MODEL_NAME, MODEL_NAMES
from agent.vision.bcs.fit import fit, measure_all, read_labels
from agent.vision.bcs.model import BcsEstimator
from agent.vision.bcs.ridge import score
from agent.vision.bcs.segment import NoCow

SEED = 770_001  # never used by train_bcs.py


def _line(name: str, s: object) -> str:
    return (f"  {name:<22} within 0.25 {s.within_025:6.1%}   within 0.5 "  # type: ignore[attr-defined]
            f"{s.within_05:6.1%}   MAE {s.mae:.3f}")  # type: ignore[attr-defined]


def shipped(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from tqdm import tqdm

    csv = make_herd_photos(args.seed, args.cows, (2, 3), "heldout", tmp / "shipped",
                           depth=args.depth, progress=True)
    labels = read_labels(csv)
    reg = ModelRegistry(ModelsConfig(dir=args.model or ModelsConfig().dir),
                        required=[MODEL_NAME], only=MODEL_NAMES)
    reg.load_all()
    est = BcsEstimator(reg.get)
    preds, truth, missed, inside = [], [], 0, 0
    for lab in tqdm(labels, desc="scoring held-out photos", unit="photo"):
        path = lab.image.with_suffix(".png") if args.depth else lab.image
        colour, depth = load_bcs_image(path)
        try:
            e = est.estimate(colour, depth)
        except NoCow:
            missed += 1
            continue
        preds.append(e.raw)
        truth.append(lab.bcs)
        inside += int(e.low <= lab.bcs <= e.high)
    p, t = np.array(preds), np.array(truth)
    model, base = score(p, t), score(np.full_like(t, t.mean()), t)
    print(f"shipped model on {len(t)} held-out photos of {args.cows} cows "
          f"({missed} without a usable cow):")
    print(_line("model", model))
    print(_line("always the mean", base))
    print(f"  interval holds the truth on {inside / max(1, len(t)):.1%} of photos")
    return {**model.as_dict("heldout_"), **base.as_dict("heldout_mean_baseline_"),
            "heldout_no_cow": missed, "heldout_interval_coverage": round(inside / max(1, len(t)), 4)}


def farm(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    csv = make_herd_photos(args.seed + 1, args.farm_cows, (4, 8), "heldout", tmp / "farm",
                           depth=args.depth, progress=True)
    labels = read_labels(csv)
    if args.depth:
        labels = [lab.__class__(lab.image.with_suffix(".png"), lab.bcs, lab.animal, lab.line)
                  for lab in labels]
    result = fit(measure_all(labels, load_bcs_image), seed=args.seed)
    print(f"farm fit on a held-out herd of {args.farm_cows} cows:")
    print(result.report())
    return {**result.cv.model.as_dict("farm_cv_"),
            **result.cv.baseline.as_dict("farm_mean_baseline_")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cows", type=int, default=100, help="held-out cows for the shipped model")
    ap.add_argument("--farm-cows", type=int, default=35, help="cows of the farm-fit herd")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--model", type=Path, default=None, help="model dir (default: shipped)")
    ap.add_argument("--depth", action="store_true", help="depth frames instead of colour")
    ap.add_argument("--skip-fit", action="store_true", help="only the shipped model")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out.update(shipped(args, Path(tmp)))
        if not args.skip_fit:
            out.update(farm(args, Path(tmp)))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
