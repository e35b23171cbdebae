"""Sync edge cases: 413 splits, one request at a time, finite timeouts, TLS before NTP."""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers_store import query, reading
from helpers_sync import Receiver, Rig, future_cert, unsynced

from agent.errors import TransientError
from agent.records.protocol import batch_id_for
from agent.sync import AiohttpTransport, BatchTooLarge, Outcome, TransportResponse

pytest_plugins = ("helpers_sync_fixtures",)  # the fixture: receiver


async def test_413_halves_open_batch_keeping_its_id(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, batch_max_records=40)
    rig.fill([reading(i) for i in range(40)])
    receiver.max_records = 12
    outs = []
    while (o := await rig.up.sync_once()).outcome != Outcome.IDLE:
        outs.append(o)
    # 40 -> 20 -> 10 under the same id; then the rest in new batches of <= 10.
    first_id = batch_id_for("gw-01", rig.writer.epoch, 1)
    assert [(o.outcome, o.records) for o in outs[:3]] == [
        (Outcome.SPLIT, 20), (Outcome.SPLIT, 10), (Outcome.SENT, 10)]
    assert {o.batch_id for o in outs[:3]} == {first_id}
    assert [r.record_id for r in receiver.batches[2].records] == [
        f"r-s1-{i}" for i in range(10)]
    assert unsynced(rig.db) == 0
    assert receiver.accepted == {f"r-s1-{i}": 1 for i in range(40)}
    assert max(len(b.records) for b in receiver.batches[3:]) <= 20
    assert query(rig.db, "SELECT COUNT(*) FROM dead_letter") == [(0,)]
    await rig.close()


async def test_413_lone_record_dead_lettered_after_n(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, max_attempts=3)
    rig.fill([reading(i) for i in range(4)])
    receiver.too_large_ids = {"r-s1-0"}
    refusals = 0
    for _ in range(20):
        try:
            out = await rig.up.sync_once()
        except BatchTooLarge:
            refusals += 1
            continue
        if out.outcome == Outcome.IDLE:
            break
    assert refusals == 2  # attempts 1 and 2 back off; the 3rd dead-letters it
    assert query(rig.db, "SELECT record_id, attempts FROM dead_letter") == [("r-s1-0", 3)]
    assert receiver.stored == {"r-s1-1", "r-s1-2", "r-s1-3"}
    assert unsynced(rig.db) == 0
    await rig.close()


class CountingTransport:
    """Wraps a transport and records how many requests overlap."""

    def __init__(self, inner: AiohttpTransport) -> None:
        self.inner = inner
        self.now = 0
        self.peak = 0
        self.calls = 0

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> TransportResponse:
        self.now += 1
        self.calls += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.01)  # widen the window a second request could use
            return await self.inner.post(url, body, headers)
        finally:
            self.now -= 1

    async def close(self) -> None:
        await self.inner.close()


async def test_one_request_at_a_time(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, batch_max_records=5)
    rig.fill([reading(i) for i in range(60)])
    counting = CountingTransport(rig.transport)
    rig.up._transport = counting
    stop = asyncio.Event()
    loop_task = asyncio.create_task(rig.up.run(stop))
    # Extra callers (a "sync now" button, a second loop) must queue, not overlap.
    extra = [asyncio.create_task(rig.up.sync_once()) for _ in range(8)]
    await asyncio.gather(*extra)
    while unsynced(rig.db):
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(loop_task, 5)
    assert counting.calls >= 12
    assert counting.peak == 1
    assert rig.up.in_flight == 0
    assert receiver.accepted == {f"r-s1-{i}": 1 for i in range(60)}
    await rig.close()


async def test_every_request_has_a_finite_deadline(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, request_timeout_s=0.4, connect_timeout_s=0.2)
    t = rig.transport.timeout
    for value in (t.total, t.connect, t.sock_connect, t.sock_read):
        assert value is not None and math.isfinite(value) and value <= 0.4

    class Stuck:
        """A transport that forgot its timeouts: the uploader still gives up."""

        async def post(self, *_: object) -> TransportResponse:
            await asyncio.sleep(3600)
            raise AssertionError

        async def close(self) -> None:
            return None

    rig.up._transport = Stuck()
    rig.fill([reading(1)])
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(TransientError):
        await rig.up.sync_once()
    assert loop.time() - t0 < 0.4 + 0.2 + 1.5
    assert unsynced(rig.db) == 1
    await rig.close()


async def test_certificate_not_yet_valid_is_retried(tmp_path: Path) -> None:
    cert, key = future_cert(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    rec = Receiver()
    await rec.start(ssl_context=ctx)
    rig = Rig(tmp_path / "b.db", rec.url, ca_file=cert, max_attempts=1)
    rig.fill([reading(i) for i in range(3)])
    with pytest.raises(TransientError) as info:
        await rig.up.sync_once()
    assert "not yet valid" in str(info.value)
    stop = asyncio.Event()
    task = asyncio.create_task(rig.up.run(stop))
    while rig.up.backoff.failures < 4:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    # Retried, never dropped or dead-lettered, even with max_attempts = 1.
    assert unsynced(rig.db) == 3
    assert query(rig.db, "SELECT COUNT(*) FROM dead_letter") == [(0,)]
    assert rec.batches == []
    await rig.close()
    await rec.stop()
