"""Write a synthetic herd of top-view cow photos labelled with body condition score.

    .venv/bin/python scripts/make_bcs_dataset.py --out data/bcs/train --seed 1 \
        --cows 300 --photos 4,8 --split train --depth

One body per cow, each cow's BCS drawn from a typical herd (most 2.5-3.75, tails
to 1.5 and 4.5; --uniform: any of 1.0..5.0 alike), a few photos per cow, each a
different pass under the camera (light, pose, floor, bars, noise) of the split.
Writes OUT/images/*.jpg (and a 16-bit depth OUT/images/*.png with the same stem
when --depth), OUT/labels.csv (image,bcs,animal; paths relative to the CSV, the
format `dairy-edge vision bcs fit` reads) and OUT/truth.jsonl (landmark pixels,
look name). Held-out looks use choices and ranges training never sees; see
docs/bcs-generator.md. Same arguments, same files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.sources.camera.synth.topview import LOOK_SPLITS, make_herd_photos


def _photos(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LO,HI, got {text!r}") from None
    lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if len(parts) > 2 or lo < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--seed", type=int, default=0, help="herd seed (default 0)")
    ap.add_argument("--cows", type=int, default=40, help="animals (default 40)")
    ap.add_argument("--photos", type=_photos, default=(4, 8),
                    help="photos per cow, N or LO,HI (default 4,8)")
    ap.add_argument("--split", choices=sorted(LOOK_SPLITS), default="train",
                    help="parameter set; heldout adds variations training never sees")
    ap.add_argument("--depth", action="store_true", help="also write 16-bit depth PNGs")
    ap.add_argument("--uniform", action="store_true",
                    help="scores uniform over 1.0..5.0 instead of a herd's distribution")
    ap.add_argument("--width", type=int, default=720, help="frame width (default 720)")
    ap.add_argument("--height", type=int, default=600, help="frame height (default 600)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.cows < 1:
        ap.error("--cows must be at least 1")
    if args.width < 64 or args.height < 64:
        ap.error("--width and --height must be at least 64")
    path = make_herd_photos(args.seed, args.cows, args.photos, args.split, args.out,
                            width=args.width, height=args.height, depth=args.depth,
                            progress=not args.quiet,
                            bcs_draw="uniform" if args.uniform else "herd")
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    scores = sorted(float(r["bcs"]) for r in rows)
    print(f"wrote {len(rows)} photos of {args.cows} cows ({args.split}) to {args.out}: "
          f"labels {path}, BCS {scores[0]:.2f}..{scores[-1]:.2f}"
          + (", depth PNGs beside the JPEGs" if args.depth else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
