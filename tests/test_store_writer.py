"""The buffer writer: group commit, ack after commit, dedup, faults, recovery."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from helpers_store import (
    alert,
    event,
    make_writer,
    quarantined,
    query,
    reading,
    sample,
)

from agent.clock import SystemClock
from agent.config.model import StoreConfig
from agent.errors import StorageFault
from agent.records import Stamp
from agent.store import migrations
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter


def test_ack_only_after_commit_and_grouped(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    w = make_writer(db, commit_max_messages=50, commit_interval_ms=200)
    seen: list[tuple[str, bool, str]] = []
    commits_before = sample("dairy_edge_store_commits_total")

    def make_ack(rid: str) -> object:
        def ack() -> None:
            # Another connection must already see the row: ack never precedes COMMIT.
            rows = query(db, "SELECT 1 FROM readings WHERE record_id = ?", (rid,))
            seen.append((rid, bool(rows), threading.current_thread().name))

        return ack

    for i in range(200):
        r = reading(i)
        w.submit(r, on_commit=make_ack(r.record_id))  # type: ignore[arg-type]
    w.close()
    assert len(seen) == 200
    assert all(committed for _, committed, _ in seen)
    assert {name for _, _, name in seen} == {"store-writer"}
    assert [rid for rid, _, _ in seen] == [f"r-s1-{i}" for i in range(200)]
    commits = sample("dairy_edge_store_commits_total") - commits_before
    # 200 items at 50 per group: a handful of commits, not 200.
    assert 4 <= commits <= 8


def test_timer_commits_a_partial_group(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "b.db", commit_max_messages=1000, commit_interval_ms=100)
    done = threading.Event()
    t0 = time.monotonic()
    w.submit(reading(1), on_commit=done.set)
    assert done.wait(2.0), "the timer must commit a group that never fills"
    elapsed = time.monotonic() - t0
    assert 0.08 <= elapsed < 1.0
    w.close()


def test_dedup_and_all_kinds(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    dedup_before = sample("dairy_edge_dedup_hits_total")
    rej_before = sample("dairy_edge_rejected_total", {"reason": "bad_json"})
    acks: list[str] = []
    for item in [reading(1), reading(1), reading(2, sensor="s2"), alert(1), event(1),
                 quarantined(1), quarantined(1)]:
        w.submit(item, on_commit=lambda rid=item.record_id: acks.append(rid))
    w.close()
    # Duplicates are acknowledged too: they are already safely stored.
    assert len(acks) == 7
    assert query(db, "SELECT COUNT(*) FROM readings") == [(2,)]
    assert query(db, "SELECT COUNT(*) FROM quarantine") == [(1,)]
    assert sample("dairy_edge_dedup_hits_total") - dedup_before == 2
    assert sample("dairy_edge_rejected_total", {"reason": "bad_json"}) - rej_before == 1
    reader = StoreReader(db)
    counts = reader.counts()
    assert counts["tables"] == {"alerts": 1, "events": 1, "identifications": 0,
                                "milk_checks": 0, "body_conditions": 0,
                                "inferences": 0, "readings": 2}
    assert counts["backlog"] == 4
    assert counts["quarantine_by_reason"] == {"bad_json": 1}
    assert counts["quarantine"] == 1 and counts["readings"] == 2
    latest = {s["sensor_id"]: s for s in reader.sensor_latest(now_wall=time.time())}
    assert all(0 <= s["age_s"] < 60 for s in latest.values())
    assert set(latest) == {"s1", "s2"}
    assert latest["s1"]["count"] == 1  # the duplicate did not count
    assert reader.recent_quarantine(5)[0]["payload_head"] == "{not json"
    assert reader.recent_alerts(5)[0]["rule"] == "fever"
    assert reader.db_size_bytes() > 0


def test_epoch_persists_and_close_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    epoch = w.epoch
    w.close()
    w.close()
    w2 = make_writer(db)
    assert w2.epoch == epoch
    assert w2.moved_aside is None
    names = [r[0] for r in query(db, "SELECT name FROM migrations")]
    assert names == [name for name, _ in migrations.MIGRATIONS]
    assert names[:2] == ["0001_initial", "0002_time_and_space"]
    w2.close()


def test_call_runs_in_transaction_and_propagates_errors(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "b.db")
    w.submit(reading(1))
    n = w.call(lambda c: c.execute("SELECT COUNT(*) FROM readings").fetchone()[0]).result(5)
    assert n == 1  # records queued before a call are committed first

    def boom(c: sqlite3.Connection) -> None:
        c.execute("UPDATE readings SET synced = 1")
        raise ValueError("no")

    with pytest.raises(ValueError):
        w.call(boom).result(5)
    # Rolled back.
    assert w.call(lambda c: c.execute("SELECT SUM(synced) FROM readings").fetchone()[0]
                  ).result(5) == 0
    w.close()
    with pytest.raises(RuntimeError):
        w.call(lambda c: None).result(1)


def test_corrupt_header_is_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    w = make_writer(db)
    w.submit(reading(1))
    w.close()
    with open(db, "r+b") as f:
        f.write(b"garbage, not sqlite!" * 5)
    w2 = make_writer(db)
    assert w2.moved_aside == tmp_path / "buffer.db.corrupt-1"
    assert w2.moved_aside.exists()
    assert w2.corruption
    done = threading.Event()
    w2.submit(reading(2), on_commit=done.set)
    assert done.wait(5)
    w2.close()
    assert query(db, "SELECT record_id FROM readings") == [("r-s1-2",)]


def test_corrupt_page_found_by_quick_check(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    w = make_writer(db)
    for i in range(2000):
        w.submit(reading(i, pad=200))
    w.close()
    # Clobber a b-tree page in the middle of the file, keeping the header.
    size = db.stat().st_size
    assert size > 100_000
    with open(db, "r+b") as f:
        for off in range(8192, size - 4096, 16384):
            f.seek(off)
            f.write(b"\xff" * 4096)
    w2 = make_writer(db)
    assert w2.moved_aside is not None and w2.moved_aside.name == "buffer.db.corrupt-1"
    assert query(db, "SELECT COUNT(*) FROM readings") == [(0,)]
    w2.close()
    # A second corruption gets the next free name.
    db.write_bytes(b"x" * 4096)
    w3 = make_writer(db)
    assert w3.moved_aside is not None and w3.moved_aside.name == "buffer.db.corrupt-2"
    w3.close()


def test_disk_full_no_ack_fault_reported_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    faults: list[StorageFault] = []
    w = StoreWriter(db, StoreConfig(commit_interval_ms=10), SystemClock(), on_fault=faults.append)
    w.start()
    pages = w.call(lambda c: c.execute("PRAGMA page_count").fetchone()[0]).result(5)
    w.call(lambda c: c.execute(f"PRAGMA max_page_count = {int(pages) + 1}")).result(5)
    faults_before = sample("dairy_edge_storage_faults_total", {"kind": "disk_full"})
    acked: list[str] = []
    for i in range(50):
        r = reading(i, pad=2000)
        w.submit(r, on_commit=lambda rid=r.record_id: acked.append(rid))
    deadline = time.monotonic() + 5
    while not faults and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # a few retries happen while the disk is still full
    assert faults and faults[0].kind == "disk_full"
    assert not w.healthy
    assert w.last_fault is not None
    assert acked == []
    assert sample("dairy_edge_storage_faults_total", {"kind": "disk_full"}) > faults_before

    # Space comes back: the kept group commits and only then is acknowledged.
    w.call(lambda c: c.execute("PRAGMA max_page_count = 1000000")).result(5)
    deadline = time.monotonic() + 10
    while len(acked) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(acked) == 50
    assert w.healthy
    w.close()
    assert query(db, "SELECT COUNT(*) FROM readings") == [(50,)]


def test_close_drains_queue(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db, commit_interval_ms=1000, commit_max_messages=10000)
    acks = []
    for i in range(500):
        w.submit(reading(i), on_commit=lambda: acks.append(1))
    t0 = time.monotonic()
    w.close(timeout=5)
    assert time.monotonic() - t0 < 1.0  # no waiting out the 1 s timer
    assert len(acks) == 500
    w.submit(reading(999), on_commit=lambda: acks.append(1))  # after close: dropped, no ack
    assert len(acks) == 500
    assert query(db, "SELECT COUNT(*) FROM readings") == [(500,)]


def test_bad_item_does_not_block_its_group(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db, commit_interval_ms=50)
    acks: list[str] = []
    bad = reading(2)
    bad.record_id = None  # type: ignore[assignment]  # violates NOT NULL
    worse = reading(3)
    worse.values = object()  # type: ignore[assignment]  # not JSON at all
    for item in (reading(1), bad, worse, reading(4)):
        w.submit(item, on_commit=lambda rid=item.record_id: acks.append(str(rid)))
    w.close()
    # The id-less record is neither stored nor acknowledged; odd values are
    # stored as text rather than lost.
    assert sorted(acks) == ["r-s1-1", "r-s1-3", "r-s1-4"]
    rows = {r[0] for r in query(db, "SELECT record_id FROM readings")}
    assert rows == {"r-s1-1", "r-s1-3", "r-s1-4"}


def test_latest_value_follows_a_reboot(tmp_path: Path) -> None:
    """Monotonic time restarts at boot: a reading from the new boot is the latest even
    with a smaller mono_ns, and its age is not computed across boots."""
    db = tmp_path / "b.db"
    w = make_writer(db)
    before, after = reading(1), reading(2)
    before.stamp = Stamp(time.time() - 600, 9_000_000_000_000, "boot-old", True)
    after.stamp = Stamp(time.time() - 5, 2_000_000_000, "boot-new", True)
    late = reading(3)  # same boot as `after`, but older on its monotonic clock
    late.stamp = Stamp(time.time() - 9, 1_000_000_000, "boot-new", True)
    done = threading.Event()
    w.submit(before)
    w.submit(after)
    w.submit(late, on_commit=done.set)
    assert done.wait(10)
    w.close()
    (latest,) = StoreReader(db).sensor_latest(
        now_wall=time.time(), now_mono_ns=3_000_000_000, boot="boot-new")
    assert latest["record_id"] == after.record_id
    assert latest["age_s"] == 1.0  # same boot: monotonic
    (latest,) = StoreReader(db).sensor_latest(
        now_wall=time.time(), now_mono_ns=3_000_000_000, boot="boot-newer")
    assert 4 <= latest["age_s"] < 60  # another boot: by the wall clock
