"""CPU per message of the detection path when a backlog arrives as a burst.

After an outage the broker delivers hours of queued readings within seconds.
Devices that send their own timestamp are judged on it; collars send none and
are judged at arrival, so every window they feed sees the whole burst at once.
This replays a simulated barn through the same code as ``dairy-edge replay``
(ingest, rules, anomaly scores; no store), once with each message arriving at
its own time (live) and once with all of them arriving one after another, 0.1 ms
apart, after the last was measured (burst), and prints the process CPU per
message for each block of messages: flat when every rule costs O(1) amortised,
growing when some window fills with the burst.

    .venv/bin/python scripts/bench_burst.py --days 5 --cows 120
"""

from __future__ import annotations

import argparse
import time

from agent.config.model import Config
from agent.detect.scenarios.barn import generate
from agent.runtime.replay import Replayer
from agent.runtime.scenario_replay import messages


def run(msgs: list[tuple[float, str, str | bytes]], burst: bool, block: int) -> list[float]:
    rep = Replayer(Config(), [])
    t_end = msgs[-1][0] + 60.0
    out: list[float] = []
    started = time.process_time()
    for i, (ts, topic, payload) in enumerate(msgs):
        arrival = t_end + i * 1e-4 if burst else ts
        rep.feed(arrival, topic, payload.encode() if isinstance(payload, str) else payload)
        if (i + 1) % block == 0:
            now = time.process_time()
            out.append((now - started) / block * 1e6)
            started = now
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=5, help="simulated days (default 5)")
    ap.add_argument("--cows", type=int, default=120, help="herd size (default 120)")
    ap.add_argument("--block", type=int, default=10_000, help="messages per printed figure")
    args = ap.parse_args()
    scenario = generate("normal", 1, days=args.days, cows=args.cows)
    msgs = list(messages(scenario))
    print(f"{len(msgs)} messages, {args.days} days, {args.cows} cows; µs CPU per message "
          f"for each block of {args.block}:")
    for name, burst in (("live", False), ("burst", True)):
        figures = run(msgs, burst, args.block)
        print(f"  {name:5s} " + " ".join(f"{x:.0f}" for x in figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
