"""``dairy-edge anomaly ...`` subcommands; ``agent.cli.main`` only calls
``add_anomaly_cli(subparsers)`` and then ``args.func(args)``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.detect.anomaly.evaluate import score_path

_SCORE_HELP = """\
Score a CSV with columns timestamp,value (or every *.csv under a folder,
recursively) one row at a time through the live anomaly engine, and write
CSVs with columns timestamp,value,anomaly_score (score in [0, 1], row i uses
only rows 0..i). A folder's layout is mirrored under OUTPUT. Every file gets
the same default configuration; any label column is ignored.

Example (NAB development set, then its scorer):
  dairy-edge anomaly score ../shared/data/nab-dev/data -o out/nab/dairy_edge
  python3 ../shared/tools/nab_score.py --nab-root ../shared/data/nab-dev out/nab/dairy_edge
"""


def _cmd_score(args: argparse.Namespace) -> int:
    try:
        n = score_path(args.input, args.output, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as err:
        print(f"dairy-edge anomaly score: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"scored {n} file(s) into {args.output}", file=sys.stderr)
    return 0


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
