"""Identifications in the gateway buffer: migration, dedup, reader, lanes, space."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path

from helpers_identification import identification, tag_jpeg
from helpers_store import alert, event, make_writer, query, reading

from agent.records import Inference, Stamp
from agent.records.protocol import BatchResponse, RecordResult, RecordStatus
from agent.store import migrations, outbox, space
from agent.store.reader import StoreReader


def _old_buffer(path: Path) -> None:
    """A buffer as the release before identifications left it, with one reading."""
    conn = sqlite3.connect(path, isolation_level=None)
    names = [name for name, _ in migrations.MIGRATIONS]
    stop = names.index("0005_identifications")
    migrations.applied(conn)
    for name, fn in migrations.MIGRATIONS[:stop]:
        conn.execute("BEGIN")
        fn(conn)
        conn.execute("INSERT INTO migrations (name, applied_wall_ts) VALUES (?, 0)", (name,))
        conn.execute("COMMIT")
    conn.execute(
        "INSERT INTO readings (record_id, wall_ts, mono_ns, body, size) "
        "VALUES ('old-1', 1.0, 1, '{\"kind\":\"reading\"}', 18)"
    )
    conn.close()


def test_old_buffer_gains_the_table_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    _old_buffer(db)
    assert query(db, "SELECT name FROM sqlite_master WHERE name = 'identifications'") == []
    w = make_writer(db)
    w.submit(identification(1, run="m"))
    w.close()
    assert query(db, "SELECT record_id FROM readings") == [("old-1",)]
    assert query(db, "SELECT record_id, status, synced FROM identifications") == [
        ("id-m-1", "identified", 0)
    ]
    plan = query(db, "EXPLAIN QUERY PLAN SELECT record_id, body, size FROM identifications "
                     "WHERE synced = 0 ORDER BY id LIMIT 10")
    assert "identifications_unsynced" in " ".join(str(r[-1]) for r in plan), plan
    assert "0005_identifications" in [n for (n,) in query(db, "SELECT name FROM migrations")]


def test_redelivery_is_a_dedup_hit_and_the_reader_shows_newest_first(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    crop = tag_jpeg("4711")
    acks: list[str] = []
    items = [
        identification(1, run="r"),
        identification(1, run="r"),  # the same visit emitted again
        identification(2, run="r", status="flagged", tag="4711", animal="cow-4711", crop=crop),
        identification(3, run="r", status="review", crop=crop),
    ]
    for item in items:
        w.submit(item, on_commit=lambda rid=item.record_id: acks.append(rid))
    w.close()
    assert len(acks) == 4  # the duplicate is acknowledged too: it is safely stored
    assert query(db, "SELECT COUNT(*) FROM identifications") == [(3,)]

    reader = StoreReader(db)
    recent = reader.recent_identifications(10)
    assert [r["record_id"] for r in recent] == ["id-r-3", "id-r-2", "id-r-1"]
    review, flagged, identified = recent
    assert review["status"] == "review" and review["tag_number"] is None
    assert flagged["flags"] == ["not_in_register"] and flagged["synced"] is False
    # The crop stays out of the status page unless asked for; its size is given.
    assert "crop_jpeg_b64" not in flagged and flagged["crop_bytes"] == len(crop)
    assert identified["crop_bytes"] is None and identified["confidence"] == 0.97
    with_crop = reader.recent_identifications(1, include_crop=True)[0]
    assert base64.b64decode(with_crop["crop_jpeg_b64"]) == crop
    assert [r["record_id"] for r in reader.recent_identifications(2)] == ["id-r-3", "id-r-2"]
    assert reader.identification_counts() == {"identified": 1, "flagged": 1, "review": 1}
    assert reader.identification_counts(since_wall_ts=time.time() + 60) == {
        "identified": 0, "flagged": 0, "review": 0}
    counts = reader.counts()
    assert counts["tables"]["identifications"] == 3
    assert counts["unsynced"]["identifications"] == 3 and counts["backlog"] == 3


def test_lane_after_alerts_and_events_before_inferences_and_readings(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    st = Stamp(time.time(), time.monotonic_ns(), "boot-1", True)
    inference = Inference(record_id="inf-1", model="bcs", model_version="1", source_id="cam",
                          outputs={"score": 3.0}, stamp=st)
    for item in (reading(1), inference, identification(1, run="l"), event(1), alert(1)):
        w.submit(item)
    batch = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 10, 100_000, 1)).result(5)
    w.close()
    assert batch is not None
    assert [r["kind"] for r in batch.records] == [
        "alert", "event", "identification", "inference", "reading"]


def test_a_crop_larger_than_a_batch_goes_alone_and_never_wedges(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    big = identification(1, run="o", status="flagged", crop=tag_jpeg(noise=64))
    assert len(big.crop_jpeg_b64 or "") > 4096
    w.submit(alert(1))
    w.submit(big)
    for i in range(3):
        w.submit(reading(i))
    sizes: list[list[str]] = []
    for seq in range(1, 6):
        batch = w.call(lambda c, s=seq: outbox.prepare(c, "gw", w.epoch, 100, 4096, s)).result(5)
        if batch is None:
            break
        sizes.append([r for _, r in batch.refs])
        response = BatchResponse(batch_id=batch.batch_id, results=[
            RecordResult(record_id=r, status=RecordStatus.ACCEPTED) for _, r in batch.refs])
        w.call(lambda c, b=batch, resp=response: outbox.apply(c, b, resp, 3, 0.0)).result(5)
    w.close()
    # Within the byte cap after the alert, the crop does not fit; then it goes alone.
    assert sizes == [["a-1"], ["id-o-1"], ["r-s1-0", "r-s1-1", "r-s1-2"]]


def _fill_for_space(db: Path) -> None:
    w = make_writer(db)
    for i in range(120):
        w.submit(reading(i, pad=1500))
    for i in range(3):
        w.submit(identification(i, run="s"))
    st = Stamp(time.time(), time.monotonic_ns(), "boot-1", True)
    w.submit(Inference(record_id="inf-1", model="bcs", model_version="1", source_id="cam",
                       outputs={"score": 3.0}, stamp=st))
    w.submit(event(1))
    w.submit(alert(1))
    w.close()


def _dropped_kinds(db: Path, *, target_fraction: float, synced: bool) -> list[str]:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        if synced:
            for table in migrations.SYNC_TABLES:
                conn.execute(f"UPDATE {table} SET synced = 1")
        tally = space.DropTally()
        conn.execute("BEGIN IMMEDIATE")
        target = int(space.used_bytes(conn) * target_fraction)
        if synced:
            space.evict_synced(conn, target, tally)
        else:
            space.drop_unsynced(conn, target, tally, include_alerts=False)
        conn.execute("COMMIT")
        return [kind for _, kind in tally.entries]
    finally:
        conn.close()


def test_unsynced_identifications_are_dropped_only_after_readings(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    _fill_for_space(db)
    # Freeing some space takes readings (one chunk: all of them) and nothing else.
    assert _dropped_kinds(db, target_fraction=0.7, synced=False) == ["reading"]
    assert query(db, "SELECT COUNT(*) FROM readings") == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM identifications") == [(3,)]
    # Freeing everything reaches inferences, identifications, then events; never alerts.
    assert _dropped_kinds(db, target_fraction=0.0, synced=False) == [
        "inference", "identification", "event"]
    assert query(db, "SELECT COUNT(*) FROM alerts") == [(1,)]


def test_synced_identifications_are_evicted_after_readings(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    _fill_for_space(db)
    assert _dropped_kinds(db, target_fraction=0.7, synced=True) == ["reading"]
    assert query(db, "SELECT COUNT(*) FROM identifications") == [(3,)]
    assert _dropped_kinds(db, target_fraction=0.0, synced=True) == [
        "inference", "identification", "event", "alert"]


def test_clock_fix_corrects_identifications_too(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    item = identification(1, run="c")
    item.stamp = Stamp(wall_ts=5.0, mono_ns=2_000_000_000, boot_id="boot-x", clock_synced=False)
    w.submit(item)
    fixed = w.clock_synced(offset=1_750_000_000.0, boot="boot-x").result(5)
    w.close()
    assert fixed == 1
    body = json.loads(query(db, "SELECT body FROM identifications")[0][0])
    assert body["wall_ts"] == 1_750_000_002.0 and body["wall_corrected"] is True
    assert query(db, "SELECT status FROM identifications") == [("identified",)]
