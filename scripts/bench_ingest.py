#!/usr/bin/env python3
"""Time Ingestor.parse per message on simulator traffic, per firmware.

    .venv/bin/python scripts/bench_ingest.py [--count 20000]

parse runs on the paho network thread; the target is < 50 us per JSON message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import SystemClock, boot_id
from agent.config.model import IngestConfig
from agent.errors import InvalidPayload
from agent.ingest import Ingestor
from agent.sources.simulator import BarnSimulator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ingestor = Ingestor(
        ROOT / "firmware_configs", ROOT / "calibration", IngestConfig(), SystemClock(), boot_id()
    )
    sim = BarnSimulator(ingestor.specs, seed=1, bad_ratio=0.0)
    groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for msg in sim.take(args.count):
        groups[msg.firmware].append((msg.topic, msg.payload))
    bad = BarnSimulator(ingestor.specs, seed=2, bad_ratio=1.0).take(args.count // 4)
    groups["(malformed, all reasons)"] = [
        (m.topic, m.payload) for m in bad if m.expected_reason != "too_large"
    ]
    print(f"{'firmware':28} {'msgs':>7} {'us/msg (best of ' + str(args.rounds) + ')':>22}")
    for name, items in sorted(groups.items()):
        rounds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for topic, payload in items:
                try:
                    ingestor.parse(topic, payload)
                except InvalidPayload:
                    pass
            rounds.append((time.perf_counter() - start) / len(items) * 1e6)
        print(
            f"{name:28} {len(items):7d} {min(rounds):14.2f} (median {statistics.median(rounds):.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
