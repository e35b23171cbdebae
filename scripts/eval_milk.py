#!/usr/bin/env python3
"""Held-out accuracy of the milk check, through the live code path.

Images come from ``agent.sources.camera.synth.milkcup`` with the ``heldout``
look (seeds >= 900000, which training never uses; colour temperatures, cup
shapes, card positions and card rotations training never sees). Each goes
through ``MilkClassifier.check`` with the shipped ``milk_cls`` model. A frame
where no milk is found counts as wrong (column ``none``).

    .venv/bin/python scripts/eval_milk.py                   # 60 per class, about 3 min
    .venv/bin/python scripts/eval_milk.py --per-class 20 --look train --seed 500000
    .venv/bin/python scripts/eval_milk.py --roi   # frames cropped to the station's ROI
    .venv/bin/python scripts/eval_milk.py --json build/milk/heldout.json  # for train_milk --metrics
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config.model import ModelsConfig
from agent.records import MILK_CLASSES
from agent.sources.camera.synth.milkcup import (
    MILK_EVAL_SEED_MIN,
    MILK_LOOKS,
    render_milk,
    station_roi,
)
from agent.vision.milk import MilkClassifier, open_milk_runner
from agent.vision.preprocess import roi_rect


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--look", choices=sorted(MILK_LOOKS), default="heldout")
    ap.add_argument("--seed", type=int, default=MILK_EVAL_SEED_MIN, help="first seed")
    ap.add_argument("--card", choices=["any", "white", "colour", "none"], default="any",
                    help="which reference card is in view (none: no card)")
    ap.add_argument("--roi", action="store_true",
                    help="crop each frame to its station's region of interest first (the cup "
                    "and the card with a margin, as CameraConfig.roi and the runtime's "
                    "preprocessor do for a fixed sample point)")
    ap.add_argument("--models-dir", type=Path, default=ModelsConfig().dir)
    ap.add_argument("--json", type=Path, help="write the figures as JSON (manifest metrics)")
    args = ap.parse_args(argv)
    runner = open_milk_runner(args.models_dir, 1)
    clf = MilkClassifier(lambda: runner)
    cols = [*MILK_CLASSES, "none"]
    confusion = np.zeros((len(MILK_CLASSES), len(cols)), np.int64)
    card_found = low_conf = 0
    for i in range(args.per_class):
        for t, cls in enumerate(MILK_CLASSES):
            img, label = render_milk(args.seed + i, cls, MILK_LOOKS[args.look],
                                     None if args.card == "any" else args.card)
            if args.roi:
                x, y, w, h = roi_rect((img.shape[1], img.shape[0]), station_roi(label))
                img = np.ascontiguousarray(img[y:y + h, x:x + w])
            res = clf.check(img)
            confusion[t, cols.index(res.result or "none")] += 1
            card_found += bool(res.details.get("patch_found"))
            low_conf += res.confidence < 0.6
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{args.per_class} per class", file=sys.stderr, flush=True)
    n = int(confusion.sum())
    acc = float(np.trace(confusion[:, :len(MILK_CLASSES)])) / n
    recall = {c: round(float(confusion[i, i]) / confusion[i].sum(), 4)
              for i, c in enumerate(MILK_CLASSES)}
    print(f"{args.look} look, seeds {args.seed}..{args.seed + args.per_class - 1}, "
          f"card {args.card}{', ROI-cropped' if args.roi else ''}: {n} images")
    print(f"accuracy {acc:.4f}; card found {card_found / n:.3f}; "
          f"no milk found {int(confusion[:, -1].sum())}; confidence < 0.6: {low_conf}")
    print("recall " + ", ".join(f"{c} {r:.3f}" for c, r in recall.items()))
    print("confusion (rows truth, columns result):")
    print("           " + " ".join(f"{c:>9}" for c in cols))
    for i, c in enumerate(MILK_CLASSES):
        print(f"{c:>10} " + " ".join(f"{v:>9d}" for v in confusion[i]))
    if args.json:
        cmd = (f"scripts/eval_milk.py --per-class {args.per_class} --look {args.look} "
               f"--seed {args.seed} --card {args.card}{' --roi' if args.roi else ''}")
        key = f"{args.look}{'_roi' if args.roi else ''}"
        out = {f"{key}_accuracy": round(acc, 4), f"{key}_images": n,
               f"{key}_card_found": round(card_found / n, 4),
               **{f"{key}_recall_{c}": r for c, r in recall.items()},
               f"eval{'_roi' if args.roi else ''}": cmd}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
