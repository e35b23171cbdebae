#!/usr/bin/env python3
"""Evaluate the dairy rules on labelled, seeded scenarios.

    .venv/bin/python scripts/eval_rules.py --seeds 500-509 [--kinds normal,mastitis]
        [--days 21] [--cows 30] [--cooling-profile eu_853_2004] [--json out.json]

Prints per rule: alerts raised, precision, episodes, recall and time to first
alert (median / 90th percentile / max, minutes), plus cooling delays by failure
kind. Use seeds you did not develop with (development used 1000-1002; the
firmware-keyed generator and the estrus rule were developed on 1000-1002 too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config.rules import RulesConfig
from agent.detect.rules import RuleEngine
from agent.detect.scenarios import KINDS, RuleScore, generate, run, score


def seeds_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="500-509")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--cows", type=int, default=30)
    ap.add_argument("--cooling-profile", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cfg = RulesConfig()
    if args.cooling_profile:
        cfg = RulesConfig.model_validate(
            {"cooling": {"profile": args.cooling_profile}})
    scores: dict[str, RuleScore] = {}
    readings = 0
    started = time.perf_counter()
    for kind in args.kinds.split(","):
        for seed in seeds_of(args.seeds):
            scenario = generate(kind, seed, days=args.days, cows=args.cows)
            readings += len(scenario.readings)
            score(scenario, run(scenario, lambda clock: RuleEngine(cfg, clock)), scores)
    elapsed = time.perf_counter() - started
    print(f"{len(args.kinds.split(','))} kinds x {len(seeds_of(args.seeds))} seeds, "
          f"{readings} readings, {elapsed:.0f} s (generation included), "
          f"cooling profile {cfg.cooling.profile}\n")
    print("| rule | alerts | precision | episodes | recall | first alert median / p90 / max (min) |")
    print("|---|---|---|---|---|---|")
    table = {}
    for rule, sc in sorted(scores.items()):
        d = [x / 60 for x in sc.delays]
        delay = (f"{statistics.median(d):.0f} / {pct(d, 0.9):.0f} / {max(d):.0f}" if d else "-")
        p = "-" if sc.precision is None else f"{sc.precision:.3f}"
        r = "-" if sc.recall is None else f"{sc.recall:.3f}"
        print(f"| {rule} | {sc.alerts} | {p} | {sc.episodes} | {r} | {delay} |")
        table[rule] = {"alerts": sc.alerts, "precision": sc.precision, "episodes": sc.episodes,
                       "recall": sc.recall, "delays_min": d}
    cooling = scores.get("cooling")
    if cooling:
        for kind, delays in sorted(cooling.delays_by_kind.items()):
            d = [x / 60 for x in delays]
            print(f"\ncooling failure {kind}: {len(d)} detected, first alert median "
                  f"{statistics.median(d):.0f} min, max {max(d):.0f} min")
            o = [x / 60 for x in cooling.observable_by_kind.get(kind, [])]
            if o:
                print(f"  from when it could first be seen (thermostat calls for cooling): "
                      f"median {statistics.median(o):.0f} min, max {max(o):.0f} min")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
