#!/usr/bin/env python3
"""Reproduce the NAB figures of docs/anomaly.md.

Scores every CSV of the NAB development set through the live code path
(``agent.detect.anomaly.evaluate.score_file``, the default configuration),
then runs the shared NAB scorer on the result:

    .venv/bin/python scripts/nab_eval.py                      # default paths
    .venv/bin/python scripts/nab_eval.py --nab-root ../shared/data/nab-dev --out out/nab

Equivalent to ``dairy-edge anomaly score ../shared/data/nab-dev/data -o out/nab``
followed by ``python3 ../shared/tools/nab_score.py --nab-root ../shared/data/nab-dev out/nab``;
this script only runs the files in parallel. ``--config JSON`` overrides
DetectorConfig fields (development experiments only; the figures use none).

``--cv`` also scores the two halves of the cross-validation split used to
guard design decisions against overfitting the 40 files (threshold optimised
per half, standard profile): a change is kept only if it helps both halves.

    half A: realAWSCloudwatch, realKnownCause, artificialWithAnomaly
    half B: realTweets, realAdExchange, realTraffic, artificialNoAnomaly
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
from agent.detect.anomaly.evaluate import input_files, score_file

CV_HALVES = {
    "A": ("realAWSCloudwatch", "realKnownCause", "artificialWithAnomaly"),
    "B": ("realTweets", "realAdExchange", "realTraffic", "artificialNoAnomaly"),
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _job(args: tuple[str, str, dict]) -> int:
    src, dst, cfg = args
    return score_file(Path(src), Path(dst), DetectorConfig.from_dict(cfg))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nab-root", type=Path, default=ROOT.parent / "shared/data/nab-dev")
    ap.add_argument("--out", type=Path, default=ROOT / "out/nab/dairy_edge")
    ap.add_argument("--config", default="{}", help="JSON overrides of DetectorConfig")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, help="write the scorer's JSON report here")
    ap.add_argument("--per-file", action="store_true")
    ap.add_argument("--cv", action="store_true", help="also score the two CV halves")
    args = ap.parse_args()

    cfg = _merge(DetectorConfig().to_dict(), json.loads(args.config))
    files = input_files(args.nab_root / "data")
    jobs = [(str(s), str(args.out / rel), cfg) for s, rel in files]
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
        for half, cats in CV_HALVES.items():
            keys = [rel.as_posix() for _, rel in files if rel.parts[0] in cats]
            subset = args.out.parent / f"cv_half_{half}.txt"
            subset.write_text("\n".join(keys) + "\n")
            print(f"\n# CV half {half}: {', '.join(cats)} ({len(keys)} files)", flush=True)
            rc |= subprocess.call(cmd[:2] + ["--nab-root", str(args.nab_root), "--subset",
                                             str(subset), "--profile", "standard", str(args.out)])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
