#!/usr/bin/env python3
"""Measure group-commit throughput of the buffer writer (readings/s).

Usage: .venv/bin/python scripts/bench_store.py [--n 20000] [--max-messages 200]
       [--interval-ms 150] [--dir /path/on/the/target/disk]

Every reading is acknowledged (on_commit) only after its group's COMMIT with
synchronous=FULL, as in production; the time runs until the last ack.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from agent.clock import SystemClock
from agent.config.model import StoreConfig
from agent.records import Reading, Stamp
from agent.store.writer import StoreWriter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--max-messages", type=int, default=200)
    ap.add_argument("--interval-ms", type=int, default=150)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "buffer.db"
        config = StoreConfig(
            commit_max_messages=args.max_messages, commit_interval_ms=args.interval_ms
        )
        writer = StoreWriter(path, config, SystemClock())
        writer.start()
        done = threading.Event()
        acked = 0
        lock = threading.Lock()

        def ack() -> None:
            nonlocal acked
            with lock:
                acked += 1
                if acked == args.n:
                    done.set()

        readings = [
            Reading(
                record_id=f"bench-{i}",
                sensor_id=f"s{i % 50}",
                firmware="bench",
                topic=f"barn/s{i % 50}",
                values={"temp_c": 38.5, "activity": float(i % 100)},
                raw={"temp_c": 38.4, "activity": float(i % 100)},
                units={"temp_c": "C", "activity": "steps"},
                stamp=Stamp(time.time(), time.monotonic_ns(), "bench", True),
            )
            for i in range(args.n)
        ]
        t0 = time.monotonic()
        for r in readings:
            writer.submit(r, on_commit=ack)
        done.wait(600)
        elapsed = time.monotonic() - t0
        writer.close()
        size = path.stat().st_size
        print(
            f"{args.n} readings in {elapsed:.2f} s = {args.n / elapsed:,.0f} readings/s "
            f"(group <= {args.max_messages}, interval {args.interval_ms} ms, "
            f"synchronous=FULL, db {size / 1e6:.1f} MB)"
        )


if __name__ == "__main__":
    main()
