#!/usr/bin/env python3
"""Several central receivers behind a round-robin proxy on one PostgreSQL, receivers killed.

Starts N `dairy-edge central` processes on one scratch PostgreSQL database, a
local round-robin TCP proxy in front of them (what an ordinary load balancer
does: each new connection goes to the next receiver, a receiver that refuses
the connection is skipped), and G simulated gateways: the real Uploader and
StoreWriter, each with its own buffer and its own key (`central keys add`).
Readings are fed in waves while receivers are SIGKILLed and restarted. At the
end every buffer must be empty and PostgreSQL must hold each reading once:

    missing 0, duplicates 0

The short form runs in CI (tests/test_central_scaleout.py); the long form:

    .venv/bin/python scripts/scaleout_central.py --readings 100000 --kills 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from agent import metrics
from agent.central.store_postgres import PostgresStore
from agent.clock import SystemClock
from agent.config.model import StoreConfig, SyncConfig
from agent.records.types import Reading, Stamp
from agent.store.writer import StoreWriter
from agent.sync import AiohttpTransport, Uploader

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RoundRobinProxy:
    """Each new client connection goes to the next backend that accepts it."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = 0
        self.connections: dict[int, int] = dict.fromkeys(backends, 0)
        self._next = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        # Closed sockets end the pipes; cancelling the handlers instead makes asyncio's
        # stream callback log a CancelledError (Python 3.11).
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5)
            for task in pending:
                task.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            for _ in range(len(self.backends)):
                port = self.backends[self._next % len(self.backends)]
                self._next += 1
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue  # that receiver is down: the next one
                self.connections[port] += 1
                self._writers.add(up_writer)
                try:
                    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                finally:
                    self._writers.discard(up_writer)
                    up_writer.close()
                return
        finally:
            self._writers.discard(writer)
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@dataclass
class Receiver:
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli.main", "central", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "DAIRY_EDGE_CENTRAL_KEYS": "", "DAIRY_EDGE_HMAC_KEY": ""},
            )

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False


@dataclass
class Gateway:
    device_id: str
    key_id: str
    secret: str
    buffer: Path
    writer: StoreWriter | None = None
    uploader: Uploader | None = None
    transport: AiohttpTransport | None = None
    fed: list[str] = field(default_factory=list)

    def unsynced(self) -> int:
        conn = sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM readings WHERE synced = 0").fetchone()[0])
        finally:
            conn.close()

    def dead(self) -> int:
        conn = sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])
        finally:
            conn.close()


@dataclass
class Report:
    readings: int
    gateways: int
    receivers: int
    kills: int
    seconds: float
    missing: int
    duplicates: int
    unexpected: int
    dead_letters: int
    batches: dict[str, int]
    connections: dict[int, int]
    failed_posts: int  # uploads that failed on the way (a killed receiver) and were resent

    def lines(self) -> list[str]:
        return [
            (f"{self.readings} readings from {self.gateways} gateways through {self.receivers} "
            f"receivers, {self.kills} receiver SIGKILLs: {self.seconds:.1f} s "
            f"({self.readings / self.seconds:,.0f} readings/s end to end)"),
            (f"missing {self.missing}, duplicates {self.duplicates}, unexpected "
            f"{self.unexpected}, dead letters {self.dead_letters}"),
            (f"batches by outcome: {self.batches}; proxy connections per receiver: "
            f"{list(self.connections.values())}; failed uploads retried: {self.failed_posts}"),
        ]


def reading(device: str, n: int) -> Reading:
    now = time.time()
    return Reading(
        record_id=f"{device}-r{n:07d}", sensor_id=f"collar-{n % 50:03d}", firmware="neck-collar",
        topic=f"barn/collar/collar-{n % 50:03d}", values={"activity": float(n % 400)},
        raw={"activity": float(n % 400)}, units={"activity": "count"},
        stamp=Stamp(now, time.monotonic_ns(), "scaleout", True),
    )


async def run_scaleout(
    readings: int = 3000,
    gateways: int = 20,
    receivers: int = 3,
    kills: int = 1,
    batch_records: int = 25,
    workdir: Path | None = None,
    timeout_s: float = 240.0,
) -> Report:
    work = workdir or Path(tempfile.mkdtemp(prefix="dairy-scaleout-"))
    db_name = f"dairy_scaleout_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    gws = [Gateway(f"gw-so-{i:02d}", f"gw-so-{i:02d}-k", f"secret-{uuid.uuid4().hex}",
                   work / f"buffer-{i:02d}.db") for i in range(gateways)]
    store = PostgresStore(db_url)
    await store.start()  # the schema, once, before the receivers race for it
    for gw in gws:
        await store.add_key(gw.device_id, gw.key_id, gw.secret)
    await store.close()

    recs: list[Receiver] = []
    for i in range(receivers):
        port = free_port()
        cfg = work / f"central-{i}.yaml"
        cfg.write_text(f"central:\n  host: 127.0.0.1\n  port: {port}\n  database_url: {db_url}\n"
                       "logging:\n  level: WARNING\n")
        recs.append(Receiver(port, cfg, work / f"central-{i}.log"))
    proxy = RoundRobinProxy([r.port for r in recs])
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    failed_before = _failed_posts()
    started = time.monotonic()
    try:
        for r in recs:
            r.start()
        await _wait(lambda: all(r.listening() for r in recs), 30, "the receivers")
        await proxy.start()
        url = f"http://127.0.0.1:{proxy.port}/api/v1/batches"
        for gw in gws:
            config = SyncConfig(url=url, key_id=gw.key_id, interval_s=0.2,
                                batch_max_records=batch_records, backoff_base_s=0.05,
                                backoff_max_s=1.0, request_timeout_s=10.0,
                                connect_timeout_s=2.0)
            gw.writer = StoreWriter(gw.buffer, StoreConfig(commit_interval_ms=20),
                                    SystemClock())
            gw.writer.start()
            gw.transport = AiohttpTransport(config)
            gw.uploader = Uploader(config, gw.device_id, gw.secret.encode(), gw.writer,
                                   gw.buffer, gw.transport, SystemClock())
            tasks.append(asyncio.create_task(gw.uploader.run(stop)))
        per_gateway = readings // gateways
        waves = max(2, kills + 1)
        wave = per_gateway // waves
        for w in range(waves):
            count = wave if w < waves - 1 else per_gateway - wave * (waves - 1)
            for gw in gws:
                assert gw.writer is not None
                for _ in range(count):
                    n = len(gw.fed)
                    gw.writer.submit(reading(gw.device_id, n))
                    gw.fed.append(f"{gw.device_id}-r{n:07d}")
            if w < kills:
                await asyncio.sleep(0.2)  # uploads in full flight
                victim = recs[w % len(recs)]
                victim.kill9()
                await asyncio.sleep(1.0)
                victim.start()
                await _wait(victim.listening, 30, "the restarted receiver")
        total = sum(len(gw.fed) for gw in gws)
        for gw in gws:  # every reading fed is committed to its buffer before we count
            assert gw.writer is not None
            await asyncio.wrap_future(gw.writer.call(lambda c: None))

        async def all_synced() -> bool:
            left = await asyncio.gather(*(asyncio.to_thread(gw.unsynced) for gw in gws))
            return sum(left) == 0

        deadline = time.monotonic() + timeout_s
        while not await all_synced():
            if time.monotonic() > deadline:
                raise AssertionError("timed out: readings still in the gateways' buffers")
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for gw in gws:
            if gw.transport is not None:
                await gw.transport.close()
            if gw.writer is not None:
                gw.writer.close()
        await proxy.stop()
        for r in recs:
            r.stop()

    try:
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT record_id FROM readings").fetchall()
            batches: dict[str, int] = {
                str(k): int(v) for k, v in conn.execute(
                    "SELECT outcome, count(*) FROM batches GROUP BY outcome").fetchall()
            }
            row = conn.execute("SELECT coalesce(sum(accepted), 0) FROM batches").fetchone()
            accepted = int(row[0]) if row else 0
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    stored = [str(r[0]) for r in rows]
    expected = {rid for gw in gws for rid in gw.fed}
    got = set(stored)
    return Report(
        readings=total, gateways=gateways, receivers=receivers,
        kills=sum(r.kills for r in recs), seconds=seconds,
        missing=len(expected - got),
        # A row stored twice, or a record answered "accepted" twice.
        duplicates=(len(stored) - len(got)) + max(0, accepted - len(got)),
        unexpected=len(got - expected),
        dead_letters=sum(gw.dead() for gw in gws),
        batches=batches,
        connections=proxy.connections,
        failed_posts=_failed_posts() - failed_before,
    )


def _failed_posts() -> int:
    return sum(int(metrics.SYNC_ATTEMPTS.labels(outcome=o)._value.get())
               for o in ("transient", "retry_after", "refused"))


async def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(cond):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=3000, help="readings in all (3000)")
    parser.add_argument("--gateways", type=int, default=20, help="simulated gateways (20)")
    parser.add_argument("--receivers", type=int, default=3, help="central receivers (3)")
    parser.add_argument("--kills", type=int, default=1, help="receiver SIGKILLs (1)")
    parser.add_argument("--batch-records", type=int, default=25, help="records per batch (25)")
    args = parser.parse_args()
    report = asyncio.run(run_scaleout(args.readings, args.gateways, args.receivers, args.kills,
                                      args.batch_records, timeout_s=3600))
    print("\n".join(report.lines()))
    return 0 if (report.missing, report.duplicates, report.unexpected) == (0, 0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
