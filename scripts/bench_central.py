#!/usr/bin/env python3
"""Measure the central receiver: latency per signed batch and records/s.

Posts N batches of M new readings to `run_central` on SQLite and, when it
answers on 127.0.0.1:5432, on a scratch PostgreSQL database (dropped after).

    .venv/bin/python scripts/bench_central.py [--batches 40] [--records 500]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg

from agent.central.server import run_central
from agent.config.model import CentralConfig
from agent.sync.signing import headers_for

KEY = b"bench-key-0123456789"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def batch(device: str, seq: int, records: int) -> tuple[bytes, dict[str, str]]:
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
    return body, headers_for("k", KEY, str(doc["batch_id"]), body, device)


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


def pg_database() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2) as conn:
            name = f"dairy_bench_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{name}"')
            return name
    except psycopg.Error:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches to post (default 40)")
    parser.add_argument("--records", type=int, default=500, help="records per batch (500)")
    args = parser.parse_args()
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
