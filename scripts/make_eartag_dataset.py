"""Write a synthetic ear-tag data set: images plus labels.jsonl.

    .venv/bin/python scripts/make_eartag_dataset.py --kind scenes --split heldout \
        --seed 900000 --count 500 --out data/eartag/heldout

Image i is drawn from seed (--seed + i), so every image can be redrawn alone
from its label's "seed". Held-out images need seeds >= 900000; train and dev
must stay below (the script refuses otherwise). Same arguments, same bytes.
Each labels.jsonl line: {"image": "00000.jpg", "seed": ..., "split": ...,
"width": ..., "height": ..., "ir": ..., "jpeg_quality": ..., "tags": [...],
"distractors": [...]}; the tag label format (legible, borderline, covered,
blur_px, pose, contrast, ...) is in agent/sources/camera/synth/scene.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.sources.camera.synth import SPLITS, check_seed, render_crop, render_scene
from agent.sources.camera.synth.params import DEFAULT_SEEDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--kind", choices=("crops", "scenes"), default="crops",
                    help="single-tag crops or whole barn frames (default: crops)")
    ap.add_argument("--split", choices=sorted(SPLITS), default="dev",
                    help="parameter set; heldout adds variations never used for training")
    ap.add_argument("--seed", type=int, default=None,
                    help="first image seed (default: train 0, dev 500000, heldout 900000)")
    ap.add_argument("--count", "-n", type=int, default=200, help="images to write")
    ap.add_argument("--size", choices=("1280x720", "1920x1080"), default="1280x720",
                    help="scene size (scenes only)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be at least 1")
    seed = DEFAULT_SEEDS[args.split] if args.seed is None else args.seed
    try:
        check_seed(args.split, seed, args.count)
    except ValueError as err:
        ap.error(str(err))
    params = SPLITS[args.split]
    w, h = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = range(seed, seed + args.count)
    try:
        from tqdm import tqdm

        it = tqdm(seeds, desc=f"{args.split} {args.kind}", unit="img", disable=args.quiet)
    except ImportError:  # tqdm is not a base dependency: fall back to plain output
        it = seeds
    legible = borderline = tags = 0
    with (args.out / "labels.jsonl").open("w", encoding="utf-8") as labels:
        for n, s in enumerate(it):
            img, label = render_scene(s, params, (w, h)) if args.kind == "scenes" \
                else render_crop(s, params)
            name = f"{n:05d}.jpg" if args.kind == "scenes" else f"{n:05d}.png"
            # scenes already carry the stream's JPEG loss; crops keep theirs losslessly
            opts = [cv2.IMWRITE_JPEG_QUALITY, 100] if args.kind == "scenes" else []
            if not cv2.imwrite(str(args.out / name), img, opts):
                print(f"error: could not write {args.out / name}", file=sys.stderr)
                return 1
            labels.write(json.dumps({"image": name, **label}) + "\n")
            tags += len(label["tags"])  # type: ignore[arg-type]
            legible += sum(1 for t in label["tags"] if t["legible"])  # type: ignore[attr-defined,index]
            borderline += sum(1 for t in label["tags"] if t["borderline"])  # type: ignore[attr-defined,index]
            if it is seeds and not args.quiet and (n + 1) % 50 == 0:
                print(f"{n + 1}/{args.count}", file=sys.stderr)
    print(f"wrote {args.count} {args.kind} to {args.out}: {tags} tags, {legible} legible "
          f"({borderline} of them borderline)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
