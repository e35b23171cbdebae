"""`dairy-edge replay`: back-test the rules on recorded MQTT traffic."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO

from agent.config.loader import load_config

PROGRESS_EVERY_S = 2.0


def add_replay_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="replay recorded MQTT traffic through ingest and the rules; one line per alert",
        description="Replay recorded MQTT traffic (JSON lines: ts, topic, payload or "
        "payload_b64) through the daemon's ingest, detection and alert code, with the clock "
        "following the data, as fast as the CPU allows. Writes one JSON line per raised "
        "alert: ts, rule, subject, severity, alert_id, detail. A bad input line is reported "
        "on stderr with its line number and skipped.",
    )
    p.add_argument("messages", type=Path, metavar="MESSAGES.jsonl",
                   help="recorded messages, one JSON object a line ('-' reads stdin)")
    p.add_argument("--config", "-c", type=Path, default=None,
                   help="agent YAML config: rule profiles, firmware and calibration folders "
                   "(defaults when omitted)")
    p.add_argument("--farm", type=Path, default=None,
                   help="farm events, JSON lines of {ts, type, animal, ...} (docs/alerts.md): "
                   "calving, dry_off, pen_move, insemination, heat, milking, "
                   "milking_schedule, collection")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="ALERTS.jsonl",
                   help="where to write the raised alerts ('-' for stdout)")
    p.add_argument("--tick-s", type=float, default=60.0,
                   help="data seconds between periodic rule ticks (silence, escalation); "
                   "default 60")
    p.add_argument("--anomaly-scores", action="store_true",
                   help="also compute the per-reading anomaly scores, as the daemon does "
                   "(they raise no alert; slower)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.runtime.replay import Replayer, iso, load_farm_events, replay_lines

    config = load_config(args.config)
    events = load_farm_events(args.farm) if args.farm else []
    replayer = Replayer(config, events, tick_s=args.tick_s, anomaly_scores=args.anomaly_scores)
    err = sys.stderr
    quiet = args.quiet
    bad_shown = 0

    def on_bad(number: int, reason: str) -> None:
        nonlocal bad_shown
        bad_shown += 1
        if bad_shown <= 100:
            print(f"{args.messages}:{number}: skipped: {reason}", file=err)
        elif bad_shown == 101:
            print("(further bad lines are counted, not shown)", file=err)

    if str(args.messages) == "-":
        source: IO[bytes] = sys.stdin.buffer
        total = 0
    else:
        try:
            source = args.messages.open("rb")
        except OSError as e:
            print(f"dairy-edge replay: cannot read {args.messages}: {e.strerror}", file=err)
            return 1
        total = args.messages.stat().st_size
    out: IO[str]
    out = sys.stdout if str(args.output) == "-" else args.output.open("w", encoding="utf-8")
    started = last = time.perf_counter()
    show = not quiet and total > 8 * 1024 * 1024
    st = replayer.stats

    def on_progress(lines: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if show and now - last >= PROGRESS_EVERY_S:
            last = now
            _progress(err, lines, st.messages, now - started,
                      source.tell() / total if total else None)

    try:
        with source:
            for record in replay_lines(replayer, source, on_bad, on_progress):
                out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    elapsed = time.perf_counter() - started
    if not quiet:
        rate = st.messages / elapsed if elapsed > 0 else 0.0
        span = ""
        if st.first_ts is not None and st.last_ts is not None:
            span = f", data {iso(st.first_ts)} .. {iso(st.last_ts)}"
        quarantined = sum(st.quarantined.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(st.quarantined.items()))
        print(f"replayed {st.messages} messages ({st.readings} readings, {quarantined} "
              f"quarantined{': ' + reasons if reasons else ''}, {st.bad_lines} bad lines) in "
              f"{elapsed:.1f} s, {rate:,.0f} msg/s{span}; {st.alerts_raised} alerts raised"
              f"{f', {st.farm_events} farm events' if st.farm_events else ''}", file=err)
    return 0


def _progress(err: IO[str], lines: int, messages: int, elapsed: float,
              share: float | None) -> None:
    rate = messages / elapsed if elapsed > 0 else 0.0
    where = f" ({share:.0%})" if share is not None else ""
    print(f"  {lines} lines{where}, {rate:,.0f} msg/s", file=err, flush=True)

