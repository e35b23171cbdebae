#!/usr/bin/env python3
"""Write examples/dairy-edge.yaml from the config schema (every key, its default
and description); --check exits 1 when the file is not what would be written.

    scripts/gen_example_config.py            # rewrite the example
    scripts/gen_example_config.py --check    # CI: is it in step with the code?
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config.example import render_example

TARGET = ROOT / "examples" / "dairy-edge.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when the file differs")
    parser.add_argument("--out", type=Path, default=TARGET, help=f"default {TARGET}")
    args = parser.parse_args()
    text = render_example()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of step with the config schema; "
                  "run scripts/gen_example_config.py", file=sys.stderr)
            return 1
        print(f"{args.out}: in step")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
