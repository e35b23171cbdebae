#!/usr/bin/env python3
"""T1, long form: SIGKILL the agent hundreds of times while QoS 1 messages flow.

Everything real: a private Mosquitto (unlimited queue), a fresh PostgreSQL
database, `dairy-edge central` and `dairy-edge run` as subprocesses. The oracle
is the publisher's PUBACK list (record ids). Pass: missing = 0, duplicates = 0
at PostgreSQL, `PRAGMA integrity_check` = ok after every kill, every restart
READY within 10 s, and the broker kept the session on every restart.

    .venv/bin/python scripts/faults_t1.py                 # 200 kills, 50,000 msgs at 200/s
    .venv/bin/python scripts/faults_t1.py --cycles 20 --messages 5000

Writes report.json and report.md to --out (default out/faults_t1-<time>/);
exit status 0 only when the run passed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e_harness import BackgroundPublisher, Barn, kill_intervals, wait_until

from agent.config.model import GatewayConfig
from agent.sources.simulator import BarnSimulator, SimMessage

READY_WITHIN_S = 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=200, help="SIGKILLs (default 200)")
    p.add_argument("--messages", type=int, default=50_000, help="messages (default 50,000)")
    p.add_argument("--rate", type=float, default=200.0, help="messages per second (default 200)")
    p.add_argument("--min-interval", type=float, default=0.2, help="shortest pause, s")
    p.add_argument("--max-interval", type=float, default=1.5, help="longest pause, s")
    p.add_argument("--bad-ratio", type=float, default=0.02, help="share of malformed messages")
    p.add_argument("--seed", type=int, default=1, help="seed of messages and kill schedule")
    p.add_argument("--out", type=Path, default=None, help="report folder")
    return p.parse_args(argv)


def progress(line: str) -> None:
    print(f"\r{line[:150]:<150}", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started_wall = time.time()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faults_t1-") as tmp:
        farm = Barn(Path(tmp))
        farm.start()
        try:
            return _run(args, farm, started, started_wall)
        finally:
            farm.close()


def _run(args: argparse.Namespace, farm: Barn, started: float, started_wall: float
         ) -> dict[str, Any]:
    sim = BarnSimulator.from_dir(GatewayConfig().firmware_dir, seed=args.seed,
                                 bad_ratio=args.bad_ratio, topic_prefix=farm.prefix)
    sent: dict[str, SimMessage] = {}

    def stream():  # type: ignore[no-untyped-def]
        for msg in itertools.islice(sim, args.messages):
            sent[msg.key] = msg
            yield msg

    pub = BackgroundPublisher(stream(), farm.broker.port, rate=args.rate)
    ready_s: list[float] = []
    integrity_failures = 0
    pauses = kill_intervals(args.seed, args.cycles, args.min_interval, args.max_interval)
    for n, pause in enumerate(pauses, 1):
        time.sleep(pause)  # the seeded fault schedule
        farm.agent.kill9()
        if farm.integrity_rw() != "ok":
            integrity_failures += 1
        ready_s.append(farm.start_agent(timeout=60))
        progress(f"kill {n}/{args.cycles}  published {len(sent)}/{args.messages}  "
                 f"READY after {ready_s[-1]:.2f} s  elapsed {time.monotonic() - started:.0f} s")
    report = pub.join(timeout=args.messages / args.rate + 300)
    kills_done = time.monotonic()
    acked = set(report.acked)
    valid = {k for k in acked if sent[k].valid}
    invalid = acked - valid

    def at_central() -> bool:
        got = len(set(farm.central_reading_ids()) & valid)
        progress(f"draining: {got}/{len(valid)} readings at central")
        return got >= len(valid)

    drained = True
    try:
        wait_until(at_central, 600, "central to receive every reading", step=2.0)
        wait_until(lambda: farm.backlog() == 0, 120, "the outbox to empty")
    except AssertionError:
        drained = False
    print(file=sys.stderr)
    missing, dups, unexpected = farm.check_exactly_once(valid)
    quarantined = {r[0] for r in farm.buffer("SELECT record_id FROM quarantine")}
    rows, distinct = farm.buffer("SELECT COUNT(*), COUNT(DISTINCT record_id) FROM readings")[0]
    gaps = farm.central_events("session_gap")
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_wall)),
        "host": f"{platform.node()} ({platform.system()} {platform.release()}, "
                f"Python {platform.python_version()})",
        "parameters": vars(args) | {"out": str(args.out)},
        "kills": len(ready_s),
        "published": report.sent,
        "acked_by_broker": len(acked),
        "acked_valid": len(valid),
        "acked_malformed": len(invalid),
        "missing": len(missing),
        "duplicates_central": dups,
        "unexpected_central": len(unexpected),
        "malformed_not_quarantined": len(invalid - quarantined),
        "buffer_rows": rows,
        "buffer_duplicates": rows - distinct,
        "integrity_failures": integrity_failures,
        "final_integrity": farm.integrity(),
        "session_gap_events": gaps,
        "ready_s": {"median": round(statistics.median(ready_s), 2),
                    "p95": round(sorted(ready_s)[int(0.95 * (len(ready_s) - 1))], 2),
                    "max": round(max(ready_s), 2)},
        "publish_s": round(report.elapsed_s, 1),
        "drain_after_last_kill_s": round(time.monotonic() - kills_done, 1),
        "total_s": round(time.monotonic() - started, 1),
        "drained": drained,
    }
    result["passed"] = (
        drained and not missing and dups == 0 and not unexpected and rows == distinct
        and not (invalid - quarantined) and integrity_failures == 0
        and result["final_integrity"] == "ok" and max(ready_s) < READY_WITHIN_S
        and gaps == 1 and report.complete
    )
    return result


def markdown(r: dict[str, Any]) -> str:
    p = r["parameters"]
    ready = r["ready_s"]
    rows = [
        ((f"SIGKILLs of the agent (pause U({p['min_interval']}, {p['max_interval']}) s, "
         f"seed {p['seed']})"), r["kills"]),
        (f"Messages published (QoS 1, {p['rate']:.0f}/s) / PUBACKed by the broker",
         f"{r['published']} / {r['acked_by_broker']}"),
        ("of which valid / malformed", f"{r['acked_valid']} / {r['acked_malformed']}"),
        ("**missing** at PostgreSQL (acked valid, not stored)", f"**{r['missing']}**"),
        ("**duplicates** at PostgreSQL / in the buffer",
         f"**{r['duplicates_central']}** / {r['buffer_duplicates']}"),
        ("unexpected records at PostgreSQL", r["unexpected_central"]),
        ("malformed not quarantined", r["malformed_not_quarantined"]),
        ("integrity_check failures (after each kill) / final",
         f"{r['integrity_failures']} / {r['final_integrity']}"),
        ("restart to READY=1: median / p95 / max",
         f"{ready['median']} / {ready['p95']} / {ready['max']} s"),
        ("session_gap events (1 = only the very first connect)", r["session_gap_events"]),
        ("publishing took / drain after the last kill / total",
         f"{r['publish_s']} / {r['drain_after_last_kill_s']} / {r['total_s']} s"),
    ]
    head = [
        f"### T1 long form: {'PASSED' if r['passed'] else 'FAILED'}",
        "",
        f"Command: `{r['command']}`  ",
        f"Started {r['started_utc']} UTC on {r['host']}.",
        "",
        "| Figure | Value |",
        "|---|---|",
    ]
    return "\n".join([*head, *(f"| {k} | {v} |" for k, v in rows), ""])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or ROOT / "out" / time.strftime("faults_t1-%Y%m%d-%H%M%S")
    args.out = out
    out.mkdir(parents=True, exist_ok=True)
    result = run(args)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(markdown(result))
    print(markdown(result))
    print(f"report: {out / 'report.md'}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
