#!/usr/bin/env python3
"""Compare this project's CAD OSE with CAD OSE's published NAB outputs, reading by reading.

First score the development set with the CAD OSE detector and NAB's
value-range convention:

    .venv/bin/python scripts/nab_eval.py --detector cad_ose --value-range auto --out out/nab/cad_ose

then:

    .venv/bin/python scripts/check_cad_ose.py out/nab/cad_ose

prints, per file and in total, how many readings equal the published score
(to the 1e-6 the published files are rounded to), the first reading that
differs, and the mean absolute difference. The published outputs are in the
NAB development set (``reference-results/contextOSE``, MIT licence); this
script only reads them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-6


def _scores(path: Path) -> list[float]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return [float(row["anomaly_score"] or "nan") for row in reader]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scored", type=Path, help="folder written by nab_eval.py --detector cad_ose")
    ap.add_argument("--nab-root", type=Path, default=ROOT.parent / "shared/data/nab-dev")
    ap.add_argument("--quiet", action="store_true", help="only the total")
    args = ap.parse_args()
    ref_root = args.nab_root / "reference-results" / "contextOSE"
    if not ref_root.is_dir():
        print(f"check_cad_ose: no published CAD OSE outputs at {ref_root}", file=sys.stderr)
        return 2
    total = equal = 0
    abs_sum = 0.0
    for ref in sorted(ref_root.rglob("*.csv")):
        rel = ref.relative_to(ref_root)
        mine_path = args.scored / rel
        if not mine_path.is_file():
            print(f"check_cad_ose: {mine_path} missing (score the set first)", file=sys.stderr)
            return 2
        want, got = _scores(ref), _scores(mine_path)
        if len(want) != len(got):
            print(f"{rel}: {len(got)} rows, published {len(want)}", file=sys.stderr)
            return 1
        same = [abs(a - b) <= TOL for a, b in zip(got, want, strict=True)]
        first = next((i for i, ok in enumerate(same) if not ok), None)
        diff = sum(abs(a - b) for a, b in zip(got, want, strict=True))
        total += len(want)
        equal += sum(same)
        abs_sum += diff
        if not args.quiet:
            print(f"{rel}: {sum(same)}/{len(want)} equal, first difference at row "
                  f"{first if first is not None else '-'}, mean |diff| {diff / len(want):.4f}")
    print(f"total: {equal}/{total} readings equal ({100.0 * equal / total:.1f} %), "
          f"mean |diff| {abs_sum / total:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
