"""Fault injection, short form (reliability.md T6, T7, T8, T9, T21): store and sync.

A real aiohttp receiver (tests/helpers_sync.Receiver) sits behind the TCP fault
proxy (tests/faults/proxy.py); the uploader and the SQLite writer are the real
ones. Every test checks by record id: missing = 0, duplicates stored = 0,
and PRAGMA integrity_check = ok.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_store import alert, integrity, make_writer, query, reading, sample, wait_for
from helpers_sync import Receiver, Rig, unsynced

from agent.errors import StorageFault
from agent.sync import TransportResponse
from agent.sync.backoff import Backoff

from .proxy import Fault, FaultProxy


@dataclass
class Attempt:
    start: float
    end: float
    status: int | None  # None: a network error or timeout
    retry_after: float | None


class RecordingTransport:
    """Wraps the real transport; logs every attempt (monotonic) and the overlap."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.attempts: list[Attempt] = []
        self.now = 0
        self.peak = 0

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> TransportResponse:
        self.now += 1
        self.peak = max(self.peak, self.now)
        start = time.monotonic()
        status: int | None = None
        ra: float | None = None
        try:
            resp = await self.inner.post(url, body, headers)  # type: ignore[attr-defined]
            status = resp.status
            if status == 503 and resp.headers.get("Retry-After"):
                ra = float(resp.headers["Retry-After"])
            return resp
        finally:
            self.now -= 1
            self.attempts.append(Attempt(start, time.monotonic(), status, ra))

    async def close(self) -> None:
        await self.inner.close()  # type: ignore[attr-defined]


@pytest.fixture
async def rig_parts(tmp_path: Path) -> AsyncIterator[tuple[Receiver, FaultProxy]]:
    rec = Receiver()
    await rec.start()
    port = int(rec.url.split(":")[2].split("/")[0])
    proxy = FaultProxy("127.0.0.1", port, seed=1)
    await proxy.start()
    yield rec, proxy
    await proxy.stop()
    await rec.stop()


def _proxied(rec: Receiver, proxy: FaultProxy) -> str:
    return rec.url.replace(rec.url.split("/")[2], f"127.0.0.1:{proxy.port}")


async def _drain(rig: Rig, limit_s: float) -> float:
    """Run the uploader until the outbox is empty; returns the seconds it took."""
    stop = asyncio.Event()
    task = asyncio.create_task(rig.up.run(stop))
    t0 = time.monotonic()
    try:
        while unsynced(rig.db):
            assert time.monotonic() - t0 < limit_s, f"outbox not empty after {limit_s} s"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    return time.monotonic() - t0


def _check_delivery(rec: Receiver, ids: list[str], db: Path) -> None:
    missing = set(ids) - rec.stored
    dups = {i: n for i, n in rec.accepted.items() if n > 1}
    assert not missing, f"missing = {len(missing)}"
    assert not dups, f"duplicates = {len(dups)}"
    assert integrity(db) == "ok"
    assert query(db, "SELECT COUNT(*) FROM dead_letter") == [(0,)]


async def test_t6_central_5xx_hangs_resets_retry_after(
    tmp_path: Path, rig_parts: tuple[Receiver, FaultProxy]
) -> None:
    rec, proxy = rig_parts
    rng = random.Random(6)

    def choose(_: object) -> str:
        x = rng.random()
        return "500" if x < 0.30 else "503" if x < 0.40 else "hang" if x < 0.50 else "ok"

    rec.chooser = choose
    rec.retry_after = "1"
    rec.hang_s = 2.0
    # 5% of connections are reset mid-body (RST after 200-3000 request bytes).
    proxy.chooser = lambda r: (Fault("cut", cut_after=r.randint(200, 3000)) if r.random() < 0.05
                               else Fault())
    base, cap = 0.05, 0.4
    rig = Rig(tmp_path / "b.db", _proxied(rec, proxy), backoff_base_s=base, backoff_max_s=cap,
              request_timeout_s=0.5, connect_timeout_s=0.5, batch_max_records=20)
    recorder = RecordingTransport(rig.transport)
    rig.up._transport = recorder
    items = [alert(i) for i in range(5)] + [reading(i) for i in range(600)]
    rig.fill(items)
    await _drain(rig, 120)
    _check_delivery(rec, [i.record_id for i in items], rig.db)

    modes = [m for _, _, m, _ in rec.log]
    assert {"500", "503", "hang", "ok"} <= set(modes), modes
    assert len({b for _, b, _, _ in rec.log}) < len(rec.log), "some batch was resent"
    assert recorder.peak == 1, "one request at a time"
    # Backoff: after the k-th failure in a row, the gap is within bounds(k-1);
    # after a 503 it is never shorter than Retry-After.
    bo = Backoff(base, cap)
    fails = 0
    checked = 0
    for prev, nxt in itertools.pairwise(recorder.attempts):
        gap = nxt.start - prev.end
        if prev.status == 200:
            fails = 0
            continue
        fails += 1
        if prev.retry_after is not None:
            assert gap >= prev.retry_after - 0.01, (gap, prev)
        else:
            low, high = bo.bounds(fails - 1)
            assert low - 0.01 <= gap <= high + 0.3, (fails, gap, low, high)
        checked += 1
    assert checked >= 15
    # Every attempt ended: finite timeouts (hangs end at ~0.5 s, not 300 s).
    assert max(a.end - a.start for a in recorder.attempts) < 0.5 + 0.5 + 1.0
    # The receiver's view agrees: nothing arrived sooner than Retry-After after a 503.
    by_arrival = sorted(rec.log)
    for (_, _, mode, answered), (arrived, _, _, _) in itertools.pairwise(by_arrival):
        if mode == "503":
            assert arrived - answered >= 1.0 - 0.01
    await rig.close()


async def test_t7_poison_record_dead_lettered_others_first_attempt(
    tmp_path: Path, rig_parts: tuple[Receiver, FaultProxy]
) -> None:
    rec, proxy = rig_parts
    rec.reject_ids = {"r-s1-7", "r-s1-33"}
    rig = Rig(tmp_path / "b.db", _proxied(rec, proxy), max_attempts=4, batch_max_records=25)
    items = [reading(i) for i in range(100)]
    rig.fill(items)
    await _drain(rig, 30)
    dead = query(rig.db, "SELECT record_id, reason, attempts FROM dead_letter ORDER BY record_id")
    assert dead == [("r-s1-33", "poison", 4), ("r-s1-7", "poison", 4)]
    good = [i.record_id for i in items if i.record_id not in rec.reject_ids]
    assert all(rec.seen[rid] == 1 for rid in good), "others synced on the first attempt"
    assert rec.seen["r-s1-7"] == 4 and rec.seen["r-s1-33"] == 4
    assert rec.stored == set(good)
    # The loop keeps going: new records still flow.
    rig.fill([reading(i) for i in range(100, 110)])
    await _drain(rig, 10)
    assert {f"r-s1-{i}" for i in range(100, 110)} <= rec.stored
    assert integrity(rig.db) == "ok"
    await rig.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_t8_flaky_wan(tmp_path: Path, rig_parts: tuple[Receiver, FaultProxy]) -> None:
    rec, proxy = rig_parts
    rec.close_connections = True  # every request takes a fresh (faulty) connection

    def flaky(r: random.Random) -> Fault:
        x = r.random()
        if x < 0.35:
            return Fault()
        if x < 0.55:
            return Fault("delay", delay_s=0.15, jitter_s=0.1)
        if x < 0.65:
            return Fault("bandwidth", bytes_per_s=40_000)
        if x < 0.75:
            return Fault("blackhole")
        if x < 0.85:
            return Fault("reset")
        return Fault("cut", cut_after=r.randint(100, 4000))

    proxy.chooser = flaky
    rig = Rig(tmp_path / "b.db", _proxied(rec, proxy), backoff_base_s=0.05, backoff_max_s=0.3,
              request_timeout_s=0.6, connect_timeout_s=0.5, batch_max_records=10)
    items = [reading(i, pad=200) for i in range(800)]
    rig.fill(items[:400])
    fds0, tasks0 = _fds(), len(asyncio.all_tasks())
    await _drain(rig, 120)
    assert len(proxy.by_mode) >= 5 and proxy.connections >= 40, proxy.by_mode
    # Heal the link: the rest drains within backlog / throughput + a margin.
    proxy.chooser = None
    proxy.set(Fault())
    rig.fill(items[400:])
    took = await _drain(rig, 30)
    assert took < 10
    _check_delivery(rec, [i.record_id for i in items], rig.db)
    # No leaks: sockets closed and tasks gone after all those failures.
    await asyncio.sleep(0)
    assert _fds() <= fds0 + 5
    assert len(asyncio.all_tasks()) <= tasks0 + 2
    await rig.close()


# ---------------------------------------------------------------- T9 disk full


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                         check=False, capture_output=True)
    return res.returncode == 0


def _fill_disk(path: Path) -> None:
    """Write zeros until ENOSPC, down to the last few bytes (unbuffered writes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (256 * 1024, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_t9_disk_full(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mounted = _mount_tmpfs(mnt, "8m")
    if not mounted:
        # Not root or no mount namespace: the in-process fallback still asserts.
        mnt.mkdir(exist_ok=True)
    try:
        _disk_full_case(mnt, real_fs=mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def _disk_full_case(mnt: Path, real_fs: bool) -> None:
    db = mnt / "buffer.db"
    faults: list[StorageFault] = []
    faulted = threading.Event()

    def on_fault(f: StorageFault) -> None:
        faults.append(f)
        faulted.set()

    from agent.clock import SystemClock
    from agent.config.model import StoreConfig
    from agent.store.writer import StoreWriter

    w = StoreWriter(db, StoreConfig(commit_interval_ms=10, max_buffer_bytes=64 * 1024 * 1024),
                    SystemClock(), on_fault=on_fault)
    w.start()
    acked: list[str] = []
    lock = threading.Lock()

    def ack(rid: str) -> None:
        with lock:
            acked.append(rid)

    for i in range(100):
        r = reading(i, pad=500)
        w.submit(r, on_commit=lambda rid=r.record_id: ack(rid))
    w.call(lambda c: None).result(5)
    assert len(acked) == 100
    filler = mnt / "filler"
    if real_fs:
        _fill_disk(filler)
        assert shutil.disk_usage(mnt).free < 64 * 1024
    else:
        pages = w.call(lambda c: c.execute("PRAGMA page_count").fetchone()[0]).result(5)
        w.call(lambda c: c.execute(f"PRAGMA max_page_count = {int(pages)}")).result(5)
    faults_before = sample("dairy_edge_storage_faults_total", {"kind": "disk_full"})
    for i in range(100, 400):
        r = reading(i, pad=2000)
        w.submit(r, on_commit=lambda rid=r.record_id: ack(rid))
    assert faulted.wait(10), "the disk-full fault must be reported"
    assert faults[0].kind == "disk_full"
    assert wait_for(lambda: sample("dairy_edge_storage_faults_total",
                                   {"kind": "disk_full"}) >= faults_before + 2, 10)
    # No PUBACK for what is not committed: every ack is a stored row.
    with lock:
        snapshot = set(acked)
    stored = {r[0] for r in query(db, "SELECT record_id FROM readings")}
    assert snapshot <= stored
    assert len(snapshot) < 400
    assert not w.healthy and w.buffer_status()["fault"].startswith("disk_full")
    assert w._thread is not None and w._thread.is_alive(), "no crash"

    # Space comes back: everything commits, then (only then) is acknowledged.
    if real_fs:
        filler.unlink()
    else:
        w.call(lambda c: c.execute("PRAGMA max_page_count = 1000000")).result(5)
    assert wait_for(lambda: len(acked) == 400, 20), len(acked)
    assert w.healthy
    w.close()
    assert len(set(acked)) == 400
    assert query(db, "SELECT COUNT(*) FROM readings") == [(400,)]
    assert integrity(db) == "ok"
    assert query(db, "SELECT COUNT(*) FROM events WHERE "
                 "json_extract(body, '$.event') = 'storage_recovered'") == [(1,)]


# ---------------------------------------------------------------- T21 corrupt db


def _populated(db: Path, n: int = 1500) -> None:
    w = make_writer(db)
    for i in range(n):
        w.submit(reading(i, pad=200))
    w.close()


def _fresh_works(db: Path) -> None:
    w = make_writer(db)
    done = threading.Event()
    w.submit(reading(999_999), on_commit=done.set)
    assert done.wait(5)
    w.close()
    assert integrity(db) == "ok"


def test_t21_corrupt_header_moved_aside_reported_no_loop(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    _populated(db)
    with open(db, "r+b") as f:
        f.write(os.urandom(100))  # the header and the first page
    before = sample("dairy_edge_storage_faults_total", {"kind": "corrupt"})
    w = make_writer(db)
    assert w.moved_aside == tmp_path / "buffer.db.corrupt-1"
    w.close()
    assert sample("dairy_edge_storage_faults_total", {"kind": "corrupt"}) == before + 1
    ev = query(db, "SELECT json_extract(body, '$.data.moved_to'), "
               "json_extract(body, '$.clock_synced') FROM events "
               "WHERE json_extract(body, '$.event') = 'store_corrupt'")
    assert ev and ev[0][0] == str(tmp_path / "buffer.db.corrupt-1")
    # It is an ordinary unsynced record: the central store will hear of it.
    assert query(db, "SELECT synced FROM events") == [(0,)]
    # Restarting again does not find it corrupt again (no crash loop).
    for _ in range(3):
        _fresh_works(db)
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == [
        "buffer.db.corrupt-1"]


def test_t21_flipped_bytes_truncated_wal_deleted_shm(tmp_path: Path) -> None:
    rng = random.Random(21)
    # 100 random bytes flipped in b-tree pages: found by quick_check or harmless.
    db = tmp_path / "a" / "buffer.db"
    db.parent.mkdir()
    _populated(db)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        for _ in range(100):
            off = rng.randrange(100, size)
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0xFF]))
    w = make_writer(db)
    moved = w.moved_aside
    w.close()
    if moved is not None:
        assert query(db, "SELECT COUNT(*) FROM events") == [(1,)]
    _fresh_works(db)

    # A truncated -wal and a deleted -shm (a crash mid-checkpoint, a careless cleanup).
    db2 = tmp_path / "b" / "buffer.db"
    db2.parent.mkdir()
    w = make_writer(db2)
    for i in range(300):
        w.submit(reading(i, pad=200))
    w.call(lambda c: None).result(5)
    snap = tmp_path / "b" / "snap"
    snap.mkdir()
    for suffix in ("", "-wal", "-shm"):  # the files as a power cut would leave them
        src = db2.with_name(db2.name + suffix)
        if src.exists():
            shutil.copy(src, snap / (db2.name + suffix))
    w.close()
    copy = snap / "buffer.db"
    wal = snap / "buffer.db-wal"
    if wal.exists():
        with open(wal, "r+b") as f:
            f.truncate(wal.stat().st_size // 2)
    (snap / "buffer.db-shm").unlink(missing_ok=True)
    w = make_writer(copy)
    assert w.moved_aside is None
    w.close()
    _fresh_works(copy)
