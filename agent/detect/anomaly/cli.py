"""``dairy-edge anomaly ...`` subcommands; ``agent.cli.main`` only calls
``add_anomaly_cli(subparsers)`` and then ``args.func(args)``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.detect.anomaly.engine import DETECTOR_KINDS, PRODUCT_DETECTOR
from agent.detect.anomaly.evaluate import VALUE_RANGE_HELP, parse_value_range, score_path

_SCORE_HELP = """\
Score a CSV with columns timestamp,value (or every *.csv under a folder,
recursively) one row at a time through the live anomaly engine, and write
CSVs with columns timestamp,value,anomaly_score (score in [0, 1], row i uses
only rows 0..i). A folder's layout is mirrored under OUTPUT. Every file gets
the same configuration; any label column is ignored.

Detectors: "seq_lik" (the default: a transition memory over 48 bins of the
value range, HTM's anomaly likelihood, a new-extreme check and rest after an
alarm), "default" (the older multi-channel detector, which learns each
stream's range itself; the name predates seq_lik) and "cad_ose" (CAD OSE,
which bins values into 8 equal bins of the value range).
--value-range auto gives each file its own minimum and maximum before it is
scored: NAB's convention, and what a gateway knows from a sensor's configured
valid range; "learn" gives none. Rows whose timestamp or value cannot be read
are listed with file and line and written with an empty score; a file that
cannot be read is listed and the others are still scored. Exit status: 0 all
scored, 1 some rows or files could not be scored, 2 nothing to score.

Example (NAB development set, then its scorer):
  dairy-edge anomaly score NAB/data -o out/nab/dairy_edge
  python3 NAB_SCORER --nab-root NAB out/nab/dairy_edge
(NAB: a copy of the Numenta Anomaly Benchmark's data and labels; NAB_SCORER:
its scoring script.)
"""


def _cmd_score(args: argparse.Namespace) -> int:
    prog = "dairy-edge anomaly score"
    try:
        value_range = parse_value_range(args.value_range)
        report = score_path(args.input, args.output, progress=not args.quiet,
                            detector=args.detector, value_range=value_range,
                            warn=lambda msg: print(f"{prog}: {msg}", file=sys.stderr))
    except (FileNotFoundError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    if report.files == 0 and not report.failed:
        print(f"{prog}: no *.csv file under {args.input}", file=sys.stderr)
        return 2
    if not args.quiet or not report.ok:
        print(f"{prog}: scored {report.files} file(s) into {args.output}"
              f"; {len(report.failed)} file(s) not scored, {report.bad_rows} unreadable row(s)",
              file=sys.stderr)
    return 0 if report.ok else 1


def add_anomaly_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``anomaly`` (with ``score``) to a top-level argparse subparsers object.

    Each leaf parser sets ``func``; call ``args.func(args)`` for the exit code.
    """
    anomaly = subparsers.add_parser(
        "anomaly", help="Offline anomaly scoring with the live engine.",
        description="Offline anomaly scoring with the live engine.",
    )
    sub = anomaly.add_subparsers(dest="anomaly_command", required=True)
    score = sub.add_parser(
        "score", help="Score timestamp,value CSVs (file or folder).",
        description=_SCORE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("input", type=Path, metavar="INPUT", help="a CSV file or a folder of CSVs")
    score.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                       help="output CSV (for a file) or folder (mirrors INPUT's layout)")
    score.add_argument("--detector", choices=DETECTOR_KINDS, default=PRODUCT_DETECTOR,
                       help="which detector scores (default: %(default)s)")
    score.add_argument("--value-range", default="auto", metavar="RANGE",
                       help=f"{VALUE_RANGE_HELP} (default: %(default)s; a negative MIN "
                       "needs the form --value-range=MIN,MAX)")
    score.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    score.set_defaults(func=_cmd_score)
    return anomaly


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m agent.detect.anomaly.cli anomaly score ...``)."""
    parser = argparse.ArgumentParser(prog="dairy-edge")
    add_anomaly_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
