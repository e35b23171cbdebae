#!/usr/bin/env python3
"""Reproduce the NAB figures of docs/anomaly.md.

Scores every CSV of the NAB development set through the live code path
(``agent.detect.anomaly.evaluate.score_file``, the product configuration),
then runs the shared NAB scorer on the result:

    .venv/bin/python scripts/nab_eval.py                      # default paths
    .venv/bin/python scripts/nab_eval.py --nab-root ../shared/data/nab-dev --out out/nab

Equivalent to ``dairy-edge anomaly score ../shared/data/nab-dev/data -o out/nab``
followed by ``python3 ../shared/tools/nab_score.py --nab-root ../shared/data/nab-dev out/nab``;
this script only runs the files in parallel. ``--config JSON`` overrides
DetectorConfig fields (development experiments only; the figures use none).

``--detector`` and ``--value-range`` are those of ``dairy-edge anomaly score``
(defaults: ``seq_lik``, ``auto``; ``--detector default`` is the older
multi-channel detector, which ``--config`` configures).

``--cv`` also scores four halves of the development set, each with its own
optimised threshold (standard profile), used to guard design decisions
against overfitting the 40 files: a change is kept only if it helps every
half.

    by category  A: realAWSCloudwatch, realKnownCause, artificialWithAnomaly
                 B: realTweets, realAdExchange, realTraffic, artificialNoAnomaly
    by file      C: the 1st, 3rd, 5th ... file of every category (sorted by name)
                 D: the 2nd, 4th, 6th ... file of every category
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.detect.anomaly.detector import DetectorConfig
from agent.detect.anomaly.engine import DETECTOR_KINDS, PRODUCT_DETECTOR
from agent.detect.anomaly.evaluate import (
    VALUE_RANGE_HELP,
    input_files,
    parse_value_range,
    score_file,
)

CAT_HALF_A = ("realAWSCloudwatch", "realKnownCause", "artificialWithAnomaly")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _job(args: tuple[str, str, dict, str, str]) -> int:
    src, dst, cfg, detector, value_range = args
    rows, _bad = score_file(Path(src), Path(dst), DetectorConfig.from_dict(cfg),
                            detector=detector,  # type: ignore[arg-type]
                            value_range=parse_value_range(value_range))
    return rows


def cv_halves(files: list[Path]) -> dict[str, list[str]]:
    """The four halves (see the module doc) as lists of corpus keys."""
    keys = sorted(rel.as_posix() for rel in files)
    by_cat: dict[str, list[str]] = {}
    for key in keys:
        by_cat.setdefault(key.split("/")[0], []).append(key)
    halves: dict[str, list[str]] = {name: [] for name in "ABCD"}
    for cat, cat_keys in by_cat.items():
        halves["A" if cat in CAT_HALF_A else "B"] += cat_keys
        for i, key in enumerate(cat_keys):
            halves["C" if i % 2 == 0 else "D"].append(key)
    return halves


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nab-root", type=Path, default=ROOT.parent / "shared/data/nab-dev")
    ap.add_argument("--out", type=Path, default=ROOT / "out/nab/dairy_edge")
    ap.add_argument("--config", default="{}", help="JSON overrides of DetectorConfig")
    ap.add_argument("--detector", choices=DETECTOR_KINDS, default=PRODUCT_DETECTOR)
    ap.add_argument("--value-range", default="auto", help=VALUE_RANGE_HELP)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, help="write the scorer's JSON report here")
    ap.add_argument("--per-file", action="store_true")
    ap.add_argument("--cv", action="store_true", help="also score the two CV halves")
    args = ap.parse_args()

    cfg = _merge(DetectorConfig().to_dict(), json.loads(args.config))
    files = input_files(args.nab_root / "data")
    jobs = [(str(s), str(args.out / rel), cfg, args.detector, args.value_range)
            for s, rel in files]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = sum(pool.map(_job, jobs))
    print(f"scored {len(files)} files, {rows} rows in {time.perf_counter() - t0:.1f} s")
    cmd = [sys.executable, str(ROOT.parent / "shared/tools/nab_score.py"),
           "--nab-root", str(args.nab_root), str(args.out)]
    if args.json:
        cmd += ["--json", str(args.json)]
    if args.per_file:
        cmd += ["--per-file", "--profile", "standard"]
    print("$", " ".join(cmd))
    rc = subprocess.call(cmd)
    if args.cv:
        for half, keys in cv_halves([rel for _, rel in files]).items():
            subset = args.out.parent / f"cv_half_{half}.txt"
            subset.write_text("\n".join(keys) + "\n")
            print(f"\n# CV half {half} ({len(keys)} files)", flush=True)
            rc |= subprocess.call(cmd[:2] + ["--nab-root", str(args.nab_root), "--subset",
                                             str(subset), "--profile", "standard", str(args.out)])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
