#!/usr/bin/env python3
"""Sensor-health checks on the labelled fault barn (agent/sources/sensor_faults.py),
through the replay path: detection delay per fault and false sensor alerts.

    .venv/bin/python scripts/eval_sensor_health.py [--seeds 21-23] [--days 4]

For each seed and fault (on a climate node, the tank or a collar), one barn with
the fault and barn variants without (irregular climate radios, an uplink outage
delivered as a burst, fine lossy values). A hit is an alert of the fault's rule
on its sensor after the fault starts; every other sensor alert is false.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config.model import Config
from agent.runtime.replay import Replayer, parse_ts, replay_lines
from agent.sources.sensor_faults import FaultBarn

CASES = [("spike", "c2"), ("spike", "tank-1"), ("range_spike", "c3"), ("range", "c1"),
         ("stuck", "tank-1"), ("stuck", "c3"), ("dropout", "c2"), ("dropout", "k1"),
         ("dropout", "tank-1"), ("drift", "c2")]


def sensor_alerts(barn: FaultBarn) -> tuple[list[tuple[str, str, float]], int]:
    lines = barn.lines()
    rep = Replayer(Config())
    out = [(str(a["rule"]), str(a["subject"]), parse_ts(a["ts"]))
           for a in replay_lines(rep, lines) if str(a["rule"]).startswith("sensor.")]
    return out, len(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="21-23")
    ap.add_argument("--days", type=float, default=4.0)
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    delays: dict[str, list[float]] = {}
    missed: dict[str, int] = {}
    false: list[tuple[int, str, str, str]] = []
    messages, t0 = 0, time.perf_counter()
    for seed in seeds:
        for fault, sensor in CASES:
            barn = FaultBarn(seed=seed, days=args.days, fault=fault, fault_sensor=sensor)
            got, n = sensor_alerts(barn)
            messages += n
            (rule, subject, start, _end), = barn.episodes
            name = f"{fault}@{sensor.rstrip('0123456789-')}"
            hits = [ts for r, s, ts in got if r == rule and s == subject and ts >= start]
            if hits:
                delays.setdefault(name, []).append((hits[0] - start) / 60)
            else:
                missed[name] = missed.get(name, 0) + 1
            false += [(seed, name, r, s) for r, s, _ in got if (r, s) != (rule, subject)]
        for label, kw in (("clean", {}), ("gappy", {"climate_gaps": True}),
                          ("burst", {"outage": (2.2 * 86400, 2 * 3600)}),
                          ("fine-lossy", {"resolution": 0.0, "climate_period_s": 60.0,
                                          "loss": 0.05})):
            got, n = sensor_alerts(FaultBarn(seed=seed, days=args.days, **kw))  # type: ignore[arg-type]
            messages += n
            false += [(seed, label, r, s) for r, s, _ in got]
    elapsed = time.perf_counter() - t0
    print(f"seeds {args.seeds}, {args.days:g} days each, {messages} messages in {elapsed:.0f} s")
    print("| fault | detected | delay median / max (min) |")
    print("|---|---|---|")
    for name in sorted(set(delays) | set(missed)):
        d = delays.get(name, [])
        n = len(d) + missed.get(name, 0)
        spread = f"{statistics.median(d):.0f} / {max(d):.0f}" if d else "-"
        print(f"| {name} | {len(d)}/{n} | {spread} |")
    print(f"false sensor alerts: {len(false)}")
    for item in false:
        print("  ", *item)
    return 0


if __name__ == "__main__":
    sys.exit(main())
