#!/usr/bin/env python3
"""Measure the central receiver: latency per signed batch and records/s.

Posts N batches of M new readings to `run_central` on SQLite and, when it
answers on 127.0.0.1:5432, on a scratch PostgreSQL database (dropped after).

    .venv/bin/python scripts/bench_central.py [--batches 40] [--records 500]

With ``--receivers R`` it measures scale-out instead: R `dairy-edge central`
processes on one scratch PostgreSQL database, G gateways (``--gateways``, each
with its own key, each posting its batches one at a time, gateway i to receiver
i mod R, as a connection-level load balancer would spread them), for R = 1 and
then R; it prints records/s in all and per receiver, and the receivers' CPU.

    .venv/bin/python scripts/bench_central.py --receivers 3 --gateways 12

With ``--backlog N`` it measures issue 10's central row: one `dairy-edge central`
process on a scratch PostgreSQL database takes a backlog of N readings from G
gateways (``--gateways``, default 1), each posting its batches of ``--records``
one at a time as the agent's uploader does; it prints rows/s, the receiver's CPU
per row, and the limit measured beside it in the same run: the same rows COPYed
(binary, one transaction) into an empty table made LIKE readings INCLUDING ALL.

    .venv/bin/python scripts/bench_central.py --backlog 100000 --gateways 1

``--micro``: the receiver's CPU per record of each stage of one batch, in process.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg._copy_base import TextFormatter
from psycopg.adapt import Transformer

from agent.central.server import run_central
from agent.config.model import CentralConfig
from agent.sync.signing import headers_for

KEY = b"bench-key-0123456789"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def batch(device: str, seq: int, records: int,
          key_id: str = "k") -> tuple[bytes, dict[str, str]]:
    now = time.time()
    doc = {
        "protocol": 1, "device_id": device, "epoch": "bench", "seq": seq,
        "batch_id": f"{device}:bench:{seq}", "created_mono_ns": time.monotonic_ns(),
        "sent_wall_ts": now, "clock_synced": True,
        "records": [
            {
                "record_id": uuid.uuid4().hex, "kind": "reading", "wall_ts": now,
                "mono_ns": time.monotonic_ns(), "boot_id": "b", "clock_synced": True,
                "sensor_id": f"collar-{i % 60:04d}", "firmware": "neck-collar",
                "topic": "barn/collar/x", "animal_id": str(1000 + i % 60),
                "values": {"activity": 250.0 + i, "rumination_min": 7.0},
                "raw": {"activity": 250.0 + i, "rumination_min": 7.0},
                "units": {"activity": "count", "rumination_min": "min"},
            }
            for i in range(records)
        ],
    }
    body = gzip.compress(json.dumps(doc).encode())
    # What a gateway sends: the signed header (checked before the body) and the body signature.
    return body, headers_for(key_id, KEY, str(doc["batch_id"]), body, device)


async def run(database_url: str, batches: int, records: int) -> tuple[float, float]:
    handle = await run_central(
        CentralConfig(host="127.0.0.1", port=0, database_url=database_url), {"k": KEY}
    )
    device = f"gw-{uuid.uuid4().hex[:8]}"
    bodies = [batch(device, seq, records) for seq in range(1, batches + 1)]
    times = []
    try:
        async with aiohttp.ClientSession() as http:
            started = time.perf_counter()
            for body, headers in bodies:
                t0 = time.perf_counter()
                async with http.post(handle.url, data=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                times.append(time.perf_counter() - t0)
            total = time.perf_counter() - started
    finally:
        await handle.stop()
    return statistics.median(times), batches * records / total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scale(receivers: int, gateways: int, batches: int, records: int,
                copy: bool = False, redis: str = "") -> dict[str, Any]:
    """R receiver processes on one fresh PostgreSQL database; G gateways posting at once.

    With ``copy``, also the COPY limit of the rows stored (see copy_limit).
    """
    from agent.central.store_postgres import PostgresStore

    name = pg_database()
    if name is None:
        raise SystemExit("scale-out needs PostgreSQL on 127.0.0.1:5432")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    work = Path(tempfile.mkdtemp(prefix="dairy-bench-"))
    devices = [f"gw-bench-{g:02d}" for g in range(gateways)]
    keys = ",".join(f"{d}/k{g}={KEY.decode()}" for g, d in enumerate(devices))
    env = {**os.environ, "DAIRY_EDGE_CENTRAL_KEYS": keys}
    procs: list[asyncio.subprocess.Process] = []
    ports: list[int] = []
    try:
        store = PostgresStore(url)
        await store.start()  # the schema once, before the receivers start
        await store.close()
        for r in range(receivers):
            port = _free_port()
            cfg = work / f"central-{r}.yaml"
            cache = f"  redis_url: {redis}\n  redis_prefix: bench-{name}\n" if redis else ""
            cfg.write_text(f"central:\n  host: 127.0.0.1\n  port: {port}\n"
                           f"  database_url: {url}\n{cache}logging:\n  level: WARNING\n")
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli.main", "central", "--config", str(cfg),
                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
            ports.append(port)
        for port in ports:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        plans = [
            (ports[g % receivers], [batch(d, seq, records, f"k{g}")
                                    for seq in range(1, batches + 1)])
            for g, d in enumerate(devices)
        ]
        cpu_before = [_cpu_s(p.pid) for p in procs]
        done = dict.fromkeys(ports, 0)

        async def gateway(http: aiohttp.ClientSession, port: int,
                          bodies: list[tuple[bytes, dict[str, str]]]) -> None:
            for body, headers in bodies:
                async with http.post(f"http://127.0.0.1:{port}/api/v1/batches", data=body,
                                     headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                done[port] += records

        async with aiohttp.ClientSession() as http:
            started = time.perf_counter()
            await asyncio.gather(*(gateway(http, port, bodies) for port, bodies in plans))
            total = time.perf_counter() - started
        cpu = [_cpu_s(p.pid) - before for p, before in zip(procs, cpu_before, strict=True)]
        copy_rate = copy_limit(url) if copy else float("nan")
    finally:
        for p in procs:
            p.terminate()
            await p.wait()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if redis:
            await _drop_redis_keys(redis, f"bench-{name}:")
    return {
        "rate": gateways * batches * records / total,
        "per_receiver": [done[p] / total for p in ports],
        "cpu_s": cpu,
        "copy_rate": copy_rate,
    }


async def _drop_redis_keys(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def copy_limit(url: str) -> float:
    """Rows/s of a binary COPY of every stored reading into an empty table of the same
    definition (LIKE readings INCLUDING ALL: same columns, defaults and indexes), one
    transaction: the fastest PostgreSQL takes these rows on this machine."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE copy_probe (LIKE readings INCLUDING ALL)")
        conn.commit()
        buf = bytearray()
        with conn.cursor().copy("COPY (SELECT * FROM readings) TO STDOUT (FORMAT binary)") as cp:
            for chunk in cp:
                buf += chunk
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        rows = int(row[0]) if row else 0
        conn.commit()
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(
                "COPY copy_probe FROM STDIN (FORMAT binary)") as cp:
            for i in range(0, len(buf), 1 << 20):
                cp.write(bytes(buf[i:i + (1 << 20)]))
        return rows / (time.perf_counter() - t0)


def pg_database() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2) as conn:
            name = f"dairy_bench_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{name}"')
            return name
    except psycopg.Error:
        return None


def micro(records: int) -> None:
    """CPU per record of each stage of a batch in the receiver, in process (best of 20)."""
    from agent.central import app
    from agent.central.intake import Inflater
    from agent.central.store_postgres import _stage_row
    from agent.central.validate import validate_with_model
    from agent.records.protocol import RecordStatus

    body, _ = batch("gw-micro", 1, records)

    def inflate() -> bytearray:
        inflater = Inflater("gzip", 64 << 20, 10_000_000)
        inflater.feed(body)
        return inflater.finish()

    raw = inflate()
    data = json.loads(raw)
    envelope, raw_records = app._envelope(data)
    checked = app._check_records(raw_records)
    valid = [c for c in checked if isinstance(c, app.ValidRecord)]
    rows = [_stage_row(c.index, c.row) for c in valid]
    formatter = TextFormatter(Transformer())
    statuses = [(RecordStatus.ACCEPTED, None)] * len(valid)
    stages: list[tuple[str, Any]] = [
        ("gunzip + value count", inflate),
        ("json.loads", lambda: json.loads(raw)),
        ("content digest", lambda: app._content_digest(envelope, raw_records)),
        ("record checks", lambda: app._check_records(raw_records)),
        ("record checks, pydantic path", lambda: [
            validate_with_model(i, r["record_id"], r) for i, r in enumerate(raw_records)]),
        ("staging rows", lambda: [_stage_row(c.index, c.row) for c in valid]),
        ("COPY text format (psycopg)", lambda: [formatter.write_row(r) for r in rows]),
        ("answer (results JSON)", lambda: app._results("b", checked, valid, statuses)),
    ]
    print(f"CPU per record, us (best of 20, a batch of {records} readings):")
    for name, fn in stages:
        best = min(_cpu(fn) for _ in range(20))
        print(f"  {name:28} {best / records * 1e6:6.2f}")


def _cpu(fn: Any) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches to post (default 40)")
    parser.add_argument("--records", type=int, default=500, help="records per batch (500)")
    parser.add_argument("--receivers", type=int, default=0,
                        help="scale-out: compare 1 receiver process with this many")
    parser.add_argument("--gateways", type=int, default=None,
                        help="gateways posting at once (scale-out: 12, backlog: 1)")
    parser.add_argument("--backlog", type=int, default=0,
                        help="issue 10's central row: this many readings into one receiver "
                        "process, with the COPY limit beside it")
    parser.add_argument("--rounds", type=int, default=1, help="backlog: rounds (1)")
    parser.add_argument("--redis", default="",
                        help="the receivers' dashboard cache (e.g. redis://127.0.0.1:6379/0, "
                        "as bench_suite's central has; keys under bench-<db>:, removed after); "
                        "off by default")
    parser.add_argument("--micro", action="store_true",
                        help="only the CPU per record of each stage of a batch, in process")
    args = parser.parse_args()
    if args.micro:
        micro(args.records)
        return
    if args.backlog:
        gateways = args.gateways or 1
        per_gateway = max(1, args.backlog // (gateways * args.records))
        rows = gateways * per_gateway * args.records
        print(f"backlog {rows:,} readings from {gateways} gateway(s), {per_gateway} batches of "
              f"{args.records} each, posted one at a time per gateway; 1 receiver process, "
              f"Redis cache {'on' if args.redis else 'off'}; "
              f"load average {os.getloadavg()[0]:.1f}")
        for n in range(args.rounds):
            r = asyncio.run(scale(1, gateways, per_gateway, args.records, copy=True,
                                  redis=args.redis))
            cpu_us = r["cpu_s"][0] / rows * 1e6
            print(f"  round {n + 1}: central {r['rate']:,.0f} rows/s, {cpu_us:.0f} us CPU/row; "
                  f"COPY {r['copy_rate']:,.0f} rows/s; ratio {r['rate'] / r['copy_rate']:.3f}",
                  flush=True)
        return
    if args.receivers:
        args.gateways = args.gateways or 12
        per_gateway = max(1, args.batches // args.gateways * 2)
        for count in sorted({1, args.receivers}):
            r = asyncio.run(scale(count, args.gateways, per_gateway, args.records))
            print(f"{count} receiver(s), {args.gateways} gateways x {per_gateway} batches x "
                  f"{args.records} readings: {r['rate']:,.0f} records/s in all; per receiver "
                  + ", ".join(f"{x:,.0f}" for x in r["per_receiver"])
                  + "; receiver CPU s " + ", ".join(f"{x:.1f}" for x in r["cpu_s"]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("SQLite", f"sqlite:///{Path(tmp) / 'central.db'}")]
        name = pg_database()
        if name:
            targets.append(("PostgreSQL", f"postgresql://postgres@127.0.0.1:5432/{name}"))
        try:
            for label, url in targets:
                median, rate = asyncio.run(run(url, args.batches, args.records))
                print(f"{label:<11} {args.batches} x {args.records} records: median "
                      f"{median * 1000:.0f} ms per batch, {rate:,.0f} records/s")
        finally:
            if name:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
