#!/usr/bin/env python3
"""Replay speed: messages per second through `dairy-edge replay`.

    .venv/bin/python scripts/bench_replay.py [--cows 120] [--days 3] [--keep FILE]
    .venv/bin/python scripts/bench_replay.py --messages FILE   # a file kept before

Writes the simulated barn's traffic (``agent.sources.simulator.BarnSimulator``:
every shipped firmware, ``--cows`` collars, 2 tanks / climate nodes / meters /
water meters, at the firmware's own sampling periods) as MESSAGES.jsonl, then
runs the real command (``python -m agent.cli.main replay``) on it and reports
the wall time and messages per second of the whole process (start-up, reading,
writing included). The goal is 20,000 msg/s: a month of a 120-cow barn in
under a minute. ``--messages`` times a file written before (``--keep``)
instead of writing one, so before/after runs replay the very same input.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.runtime.replay import iso, parse_ts
from agent.sources.simulator import DEFAULT_START, BarnSimulator

DAY = 86400.0


def write_messages(path: Path, cows: int, days: float, seed: int = 7) -> int:
    sim = BarnSimulator.from_dir(ROOT / "firmware_configs", seed=seed, herd_size=cows,
                                 sensors_per_kind=2)
    end = DEFAULT_START + days * DAY
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for msg in sim:
            if msg.sim_ts > end:
                break
            line: dict[str, object] = {"ts": iso(msg.sim_ts), "topic": msg.topic}
            try:
                line["payload"] = msg.payload.decode("utf-8")
            except UnicodeDecodeError:
                line["payload_b64"] = base64.b64encode(msg.payload).decode()
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            n += 1
    return n


def _ends(path: Path) -> tuple[str, str]:
    """The first and the last line of a file."""
    with path.open("rb") as f:
        first = f.readline().decode()
        f.seek(max(0, f.seek(0, 2) - 65536))
        last = f.read().decode(errors="replace").rstrip("\n").rsplit("\n", 1)[-1]
    return first, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cows", type=int, default=120)
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the messages file here")
    ap.add_argument("--messages", type=Path, default=None,
                    help="replay this messages file (kept before) instead of writing one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.messages is not None:
            messages = args.messages
            with messages.open("rb") as f:
                n = sum(1 for _ in f)
            first, last = (json.loads(line)["ts"] for line in _ends(messages))
            args.days = (parse_ts(last) - parse_ts(first)) / DAY
            print(f"{n} messages in {messages} ({args.days:.2f} days)")
        else:
            messages = args.keep or Path(tmp) / "messages.jsonl"
            t0 = time.perf_counter()
            n = write_messages(messages, args.cows, args.days)
            print(f"{n} messages ({args.cows} cows, {args.days:g} days) written in "
                  f"{time.perf_counter() - t0:.1f} s")
        alerts = Path(tmp) / "alerts.jsonl"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "agent.cli.main", "replay", str(messages),
                               "-o", str(alerts)], cwd=ROOT, capture_output=True, text=True,
                              check=False)
        elapsed = time.perf_counter() - t0
        sys.stderr.write(proc.stderr)
        if proc.returncode:
            print(f"replay failed with status {proc.returncode}")
            return proc.returncode
        raised = sum(1 for _ in alerts.open())
        print(f"dairy-edge replay: {n} messages in {elapsed:.1f} s (whole process): "
              f"{n / elapsed:,.0f} msg/s; {raised} alerts raised")
        month = 30 * n / args.days
        print(f"a 30-day month of this barn ({month:,.0f} messages) would take "
              f"{month / (n / elapsed):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
