#!/usr/bin/env python3
"""What the detection worker's rule state costs (``detect.worker: process``).

The worker sends its rule state (alert lifecycle included) to the daemon with
an answer, at most once a second after alert changes and once every
RULE_STATE_EVERY_S otherwise, so that a fallback after it dies starts from
it rather than from the last save. This measures one such message after a
simulated barn's readings went through detection:

    .venv/bin/python scripts/bench_rule_state.py --herd 40 --messages 17000
    .venv/bin/python scripts/bench_rule_state.py --herd 120 --messages 100000

Printed: its pickled size; the worker's CPU to take and pickle it
(``Detection.rule_states``); the daemon's CPU to receive a batch answer
carrying it; the fallback's CPU to restore it (``restore_rule_states``).
CPU is process time, the mean of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import SystemClock
from agent.config.loader import load_config
from agent.errors import InvalidPayload
from agent.ingest.pipeline import Ingestor
from agent.runtime.detection import Detection
from agent.sources.simulator import BarnSimulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--herd", type=int, default=40, help="cows (one collar each)")
    ap.add_argument("--messages", type=int, default=17000, help="simulated messages first")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    config = load_config(overrides={"gateway": {"id": "gw", "data_dir": tempfile.mkdtemp()}})
    ingestor = Ingestor(config.gateway.firmware_dir, config.gateway.calibration_dir,
                        config.ingest, SystemClock(), "bench")
    start = time.time() - 5 * 86400
    sim = BarnSimulator.from_dir(config.gateway.firmware_dir, seed=args.seed,
                                 herd_size=args.herd, sensors_per_kind=2,
                                 topic_prefix=config.ingest.topic_prefix or "barn",
                                 start_wall=start)
    det = Detection(config.detect, SystemClock(), value_range=ingestor.value_range)
    last = start
    for m in sim.take(args.messages):
        last = m.sim_ts or last
        try:
            det.on_reading(ingestor.parse(m.topic, m.payload))
        except InvalidPayload:
            pass
    days = (last - start) / 86400

    k = args.repeat
    t = time.process_time()
    for _ in range(k):
        blob = pickle.dumps(det.rule_states(), protocol=pickle.HIGHEST_PROTOCOL)
    take = (time.process_time() - t) / k
    answer = pickle.dumps((5, [None] * 256, {}, blob), protocol=pickle.HIGHEST_PROTOCOL)
    t = time.process_time()
    for _ in range(k):
        pickle.loads(answer)
    receive = (time.process_time() - t) / k
    other = Detection(config.detect, SystemClock(), value_range=ingestor.value_range)
    t = time.process_time()
    for _ in range(k):
        other.restore_rule_states(pickle.loads(blob))
    restore = (time.process_time() - t) / k
    print(f"herd {args.herd}, {args.messages} messages ({days:.1f} simulated days): rule state "
          f"{len(blob) / 1024:.0f} KiB pickled; worker takes and pickles it in "
          f"{take * 1e3:.1f} ms CPU; daemon receives an answer carrying it in "
          f"{receive * 1e3:.2f} ms; fallback restores it in {restore * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
