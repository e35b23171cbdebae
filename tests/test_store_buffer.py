"""The byte-bounded buffer: backpressure, reserved alert floor, eviction, drops."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from helpers_store import alert, event, integrity, make_writer, query, reading, sample, wait_for

from agent.store import db as store_db
from agent.store import migrations
from agent.store.writer import StoreWriter

MIB = 1024 * 1024


def _acks() -> tuple[list[str], threading.Lock]:
    return [], threading.Lock()


def _fill(w: StoreWriter, n: int, acked: list[str], pad: int = 1000, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        r = reading(i, pad=pad)
        ids.append(r.record_id)
        assert w.submit(r, on_commit=lambda rid=r.record_id: acked.append(rid))
    return ids


def test_full_holds_back_then_evicts_synced(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db, max_buffer_bytes=MIB, reserved_alert_fraction=0.1,
                    full_drop_after_s=3600, synced_max_age_s=0, commit_max_messages=100)
    acked: list[str] = []
    ids = _fill(w, 1200, acked)
    assert wait_for(lambda: w.full, 10), "1.4 MB of readings must fill a 1 MiB buffer"
    w.call(lambda c: None).result(5)
    n_acked = len(acked)
    assert 0 < n_acked < 1200
    stored = {r[0] for r in query(db, "SELECT record_id FROM readings")}
    # Exactly the acknowledged ones are stored; the rest wait, unacknowledged.
    assert stored == set(acked)
    st = w.buffer_status()
    assert st["full"] and st["held"] > 0
    # Readings stop at the general cap; the alert floor stays free.
    # (the general cap is kept to within the estimate's error; the total cap exactly).
    assert st["used_bytes"] <= int(MIB * 0.9 * 1.05)
    assert sample("dairy_edge_store_full") == 1

    # An alert still gets in (reserved floor) while readings are held.
    got_alert = threading.Event()
    w.submit(alert(1), on_commit=got_alert.set)
    assert got_alert.wait(5)
    assert len(acked) == n_acked

    # Once the central store confirms them, synced rows make room: no data lost.
    evicted_before = sample("dairy_edge_dropped_total",
                            {"reason": "evicted_synced", "kind": "reading"})
    lost_before = sample("dairy_edge_dropped_total", {"reason": "buffer_full", "kind": "reading"})
    # Play the uploader: each round confirms what is stored, which frees room
    # for the held readings, until every one was committed and acknowledged.
    for _ in range(10):
        before = len(acked)
        w.call(lambda c: c.execute("UPDATE readings SET synced = 1")).result(5)
        if before == 1200:
            break
        assert wait_for(lambda b=before: len(acked) > b, 5), "eviction must make room"
    assert len(acked) == 1200
    assert wait_for(lambda: not w.full, 5)
    assert sorted(acked) == sorted(ids)
    evicted = sample("dairy_edge_dropped_total",
                     {"reason": "evicted_synced", "kind": "reading"}) - evicted_before
    assert evicted > 0
    assert sample("dairy_edge_dropped_total",
                  {"reason": "buffer_full", "kind": "reading"}) == lost_before
    drops = query(db, "SELECT reason, kind, SUM(count) FROM drops GROUP BY reason, kind")
    assert drops == [("evicted_synced", "reading", evicted)]
    # Every reading that is not stored any more was synced first.
    assert query(db, "SELECT COUNT(*) FROM readings WHERE synced = 0")[0][0] == 0
    w.close()
    assert integrity(db) == "ok"


def test_stays_full_drops_oldest_unsynced_by_priority(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db, max_buffer_bytes=MIB, reserved_alert_fraction=0.1,
                    full_drop_after_s=0.3, synced_max_age_s=0, commit_max_messages=100)
    acked: list[str] = []
    early = [alert(i) for i in range(5)] + [event(i) for i in range(5)]
    for item in early:
        w.submit(item, on_commit=lambda rid=item.record_id: acked.append(rid))
    ids = _fill(w, 1500, acked)
    t0 = time.monotonic()
    assert wait_for(lambda: len(acked) == 1510, 20), len(acked)
    # Nothing was dropped before the buffer had been full for full_drop_after_s.
    assert time.monotonic() - t0 >= 0.3
    w.call(lambda c: None).result(5)
    # Alerts and events survive; the oldest readings went first.
    assert query(db, "SELECT COUNT(*) FROM alerts")[0][0] == 5
    assert {r[0] for r in query(db, "SELECT record_id FROM events WHERE "
                                "json_extract(body, '$.event') = 'restart'")} == {
        f"e-{i}" for i in range(5)}
    kept = [r[0] for r in query(db, "SELECT record_id FROM readings ORDER BY id")]
    assert kept == ids[len(ids) - len(kept):], "kept readings must be the newest ones"
    dropped = len(ids) - len(kept)
    assert dropped > 0
    rows = query(db, "SELECT reason, kind, SUM(count) FROM drops GROUP BY reason, kind")
    assert rows == [("buffer_full", "reading", dropped)]
    assert sample("dairy_edge_dropped_total",
                  {"reason": "buffer_full", "kind": "reading"}) >= dropped
    # The loss is also an event record that will be uploaded.
    ev = query(db, "SELECT body FROM events WHERE "
               "json_extract(body, '$.event') = 'buffer_drop'")
    assert ev and sum(
        sum(json.loads(b)["data"]["dropped"].values()) for (b,) in ev) == dropped
    w.close()
    assert integrity(db) == "ok"


def test_pending_cap_blocks_then_refuses(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db, max_pending_items=10, submit_timeout_s=0.2, commit_interval_ms=10)
    pages = w.call(lambda c: c.execute("PRAGMA page_count").fetchone()[0]).result(5)
    w.call(lambda c: c.execute(f"PRAGMA max_page_count = {int(pages)}")).result(5)
    acked: list[str] = []
    for i in range(10):
        r = reading(i, pad=3000)
        assert w.submit(r, on_commit=lambda rid=r.record_id: acked.append(rid))
    assert wait_for(lambda: not w.healthy, 5)
    t0 = time.monotonic()
    assert not w.submit(reading(99), on_commit=lambda: acked.append("r-s1-99"))
    assert 0.15 <= time.monotonic() - t0 < 2.0
    assert acked == []
    w.call(lambda c: c.execute("PRAGMA max_page_count = 1000000")).result(5)
    assert wait_for(lambda: len(acked) == 10, 10)
    assert w.healthy
    # Slots came back: submitting works again.
    assert w.submit(reading(100), timeout=1)
    w.close()
    assert "r-s1-99" not in {r[0] for r in query(db, "SELECT record_id FROM readings")}
    # The recovery was recorded for the central store.
    assert query(db, "SELECT COUNT(*) FROM events WHERE "
                 "json_extract(body, '$.event') = 'storage_recovered'")[0][0] == 1


def test_migration_backfills_clock_columns(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    conn = store_db.connect(db)
    migrations.applied(conn)
    name, fn = migrations.MIGRATIONS[0]
    conn.execute("BEGIN")
    fn(conn)
    conn.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    body = json.dumps({"record_id": "old", "boot_id": "b-old", "clock_synced": False})
    conn.execute("INSERT INTO readings (record_id, wall_ts, mono_ns, body, size) "
                 "VALUES ('old', 1.0, 5, ?, 10)", (body,))
    conn.execute("COMMIT")
    conn.close()
    w = make_writer(db)
    w.close()
    assert query(db, "SELECT boot_id, clock_synced, wall_corrected FROM readings") == [
        ("b-old", 0, 0)]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
