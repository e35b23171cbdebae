"""Body conditions and milk checks in the gateway buffer: migration, the one
writer, dedup, the outbox lanes, the reader (the per-cow trend), space, clock fix."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from helpers_bcs_milk import body_condition, milk_check
from helpers_identification import identification
from helpers_store import alert, event, make_writer, query, reading

from agent.records import Inference, Stamp
from agent.records.protocol import BatchResponse, RecordResult, RecordStatus
from agent.store import migrations, outbox, space
from agent.store.reader import StoreReader

NEW_TABLES = ("body_conditions", "milk_checks")


def _old_buffer(path: Path) -> None:
    """A buffer as the release before these kinds left it, with one identification."""
    conn = sqlite3.connect(path, isolation_level=None)
    names = [name for name, _ in migrations.MIGRATIONS]
    stop = names.index("0006_body_conditions_milk_checks")
    migrations.applied(conn)
    for name, fn in migrations.MIGRATIONS[:stop]:
        conn.execute("BEGIN")
        fn(conn)
        conn.execute("INSERT INTO migrations (name, applied_wall_ts) VALUES (?, 0)", (name,))
        conn.execute("COMMIT")
    conn.execute(
        "INSERT INTO identifications (record_id, wall_ts, mono_ns, body, size) "
        "VALUES ('old-1', 1.0, 1, '{\"kind\":\"identification\",\"status\":\"review\"}', 40)"
    )
    conn.close()


def test_old_buffer_gains_both_tables_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    _old_buffer(db)
    assert query(db, "SELECT name FROM sqlite_master WHERE name IN "
                     "('body_conditions', 'milk_checks')") == []
    w = make_writer(db)
    w.submit(body_condition(1, run="m"))
    w.submit(milk_check(1, run="m", result="blood", quarter="RR"))
    w.close()
    assert query(db, "SELECT record_id, status FROM identifications") == [("old-1", "review")]
    assert query(db, "SELECT record_id, animal_id, synced FROM body_conditions") == [
        ("bcs-m-1", "cow-2386", 0)]
    assert query(db, "SELECT record_id, result, synced FROM milk_checks") == [
        ("milk-m-1", "blood", 0)]
    for table in NEW_TABLES:
        plan = query(db, f"EXPLAIN QUERY PLAN SELECT record_id, body, size FROM {table} "
                         "WHERE synced = 0 ORDER BY id LIMIT 10")
        assert f"{table}_unsynced" in " ".join(str(r[-1]) for r in plan), plan
    assert [n for (n,) in query(db, "SELECT name FROM migrations")][-1] == (
        "0006_body_conditions_milk_checks")


def test_the_writer_takes_them_redelivery_is_a_dedup_hit_reader_newest_first(
    tmp_path: Path,
) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    acks: list[str] = []
    items = [
        body_condition(1, run="r", bcs=2.75, low=2.5, high=3.0),
        body_condition(1, run="r", bcs=2.75, low=2.5, high=3.0),  # the same visit again
        body_condition(2, run="r", animal=None, quality=0.4),
        milk_check(1, run="r"),
        milk_check(2, run="r", result="clots", confidence=0.71, quarter=None),
        milk_check(2, run="r", result="clots", confidence=0.71, quarter=None),
    ]
    for item in items:
        assert w.submit(item, on_commit=lambda rid=item.record_id: acks.append(rid))
    w.close()
    assert len(acks) == 6  # the duplicates are acknowledged too: safely stored
    assert query(db, "SELECT COUNT(*) FROM body_conditions") == [(2,)]
    assert query(db, "SELECT COUNT(*) FROM milk_checks") == [(2,)]

    reader = StoreReader(db)
    bcs = reader.recent_body_conditions(10)
    assert [r["record_id"] for r in bcs] == ["bcs-r-2", "bcs-r-1"]
    newest, oldest = bcs
    assert newest["animal_id"] is None and newest["quality"] == 0.4
    assert (oldest["bcs"], oldest["low"], oldest["high"]) == (2.75, 2.5, 3.0)
    assert oldest["kind"] == "body_condition" and oldest["synced"] is False
    assert oldest["camera_id"] == "topview-1" and oldest["frames"] == 9
    assert [r["record_id"] for r in reader.recent_body_conditions(1)] == ["bcs-r-2"]

    milk = reader.recent_milk_checks(10)
    assert [r["record_id"] for r in milk] == ["milk-r-2", "milk-r-1"]
    assert (milk[0]["result"], milk[0]["quarter"], milk[0]["confidence"]) == ("clots", None, 0.71)
    assert milk[1]["scores"]["normal"] == 0.96 and milk[1]["kind"] == "milk_check"
    assert reader.recent_milk_checks(0) == []

    counts = reader.counts()
    assert counts["tables"]["body_conditions"] == 2 and counts["tables"]["milk_checks"] == 2
    assert counts["unsynced"]["milk_checks"] == 2 and counts["backlog"] == 4


def test_lanes_milk_checks_then_body_conditions_between_identifications_and_inferences(
    tmp_path: Path,
) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    st = Stamp(time.time(), time.monotonic_ns(), "boot-1", True)
    inference = Inference(record_id="inf-1", model="bcs", model_version="1", source_id="cam",
                          outputs={"score": 3.0}, stamp=st)
    # Stored in the reverse of the lane order: the lanes, not the arrival, decide.
    for item in (reading(1), inference, body_condition(1, run="l"), milk_check(1, run="l"),
                 identification(1, run="l"), event(1), alert(1)):
        w.submit(item)
    batch = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 10, 100_000, 1)).result(5)
    assert batch is not None
    assert [r["kind"] for r in batch.records] == [
        "alert", "event", "identification", "milk_check", "body_condition", "inference",
        "reading"]
    w.close()


def test_the_answer_marks_them_synced(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    w.submit(body_condition(1, run="s"))
    w.submit(milk_check(1, run="s"))
    batch = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 10, 100_000, 1)).result(5)
    assert batch is not None
    assert sorted(table for table, _ in batch.refs) == ["body_conditions", "milk_checks"]
    response = BatchResponse(batch_id=batch.batch_id, results=[
        RecordResult(record_id=r, status=RecordStatus.ACCEPTED) for _, r in batch.refs])
    w.call(lambda c: outbox.apply(c, batch, response, 3, 0.0)).result(5)
    w.close()
    reader = StoreReader(db)
    assert [r["synced"] for r in reader.recent_body_conditions()] == [True]
    assert [r["synced"] for r in reader.recent_milk_checks()] == [True]
    assert reader.counts()["backlog"] == 0


def test_body_condition_history_is_one_cows_oldest_first_since(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    t0 = 1_750_000_000.0
    day = 86_400.0
    # Committed out of time order (a late visit): the history sorts by time.
    w.submit(body_condition(1, run="h", bcs=3.0, low=2.75, high=3.25, wall_ts=t0 + 2 * day))
    w.submit(body_condition(2, run="h", bcs=3.5, low=3.25, high=3.75, quality=0.9,
                            wall_ts=t0))
    w.submit(body_condition(3, run="h", bcs=2.75, low=2.5, high=3.0, wall_ts=t0 + 9 * day))
    w.submit(body_condition(4, run="h", animal="cow-17", bcs=4.0, low=3.75, high=4.25,
                            wall_ts=t0 + day))
    w.submit(body_condition(5, run="h", animal=None, bcs=1.5, low=1.0, high=2.0,
                            wall_ts=t0 + day))
    w.close()
    reader = StoreReader(db)
    assert reader.body_condition_history("cow-2386", t0) == [
        (t0, 3.5, 3.25, 3.75, 0.9),
        (t0 + 2 * day, 3.0, 2.75, 3.25, 0.82),
        (t0 + 9 * day, 2.75, 2.5, 3.0, 0.82),
    ]
    assert [ts for ts, *_ in reader.body_condition_history("cow-2386", t0 + day)] == [
        t0 + 2 * day, t0 + 9 * day]
    assert reader.body_condition_history("cow-17", 0.0) == [(t0 + day, 4.0, 3.75, 4.25, 0.82)]
    assert reader.body_condition_history("cow-nobody", 0.0) == []
    plan = query(db, "EXPLAIN QUERY PLAN SELECT wall_ts FROM body_conditions "
                     "WHERE animal_id = ? AND wall_ts >= ? ORDER BY wall_ts, id", ("x", 0.0))
    assert "body_conditions_animal_time" in " ".join(str(r[-1]) for r in plan), plan


def test_clock_fix_corrects_them_and_the_history_follows(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    bcs = body_condition(1, run="c")
    bcs.stamp = Stamp(wall_ts=5.0, mono_ns=2_000_000_000, boot_id="boot-x", clock_synced=False)
    milk = milk_check(1, run="c")
    milk.stamp = Stamp(wall_ts=6.0, mono_ns=3_000_000_000, boot_id="boot-x", clock_synced=False)
    w.submit(bcs)
    w.submit(milk)
    w.call(lambda c: None).result(5)  # committed
    # Before the fix: the time the gateway had, not yet a point of the recent trend.
    assert StoreReader(db).body_condition_history("cow-2386", 0.0)[0][0] == 5.0
    assert StoreReader(db).body_condition_history("cow-2386", 1_750_000_000.0) == []
    fixed = w.clock_synced(offset=1_750_000_000.0, boot="boot-x").result(5)
    w.close()
    assert fixed == 2
    body = json.loads(query(db, "SELECT body FROM body_conditions")[0][0])
    assert body["wall_ts"] == 1_750_000_002.0 and body["wall_corrected"] is True
    assert json.loads(query(db, "SELECT body FROM milk_checks")[0][0])["wall_ts"] == (
        1_750_000_003.0)
    # The derived columns survive the body's rewrite.
    assert query(db, "SELECT animal_id FROM body_conditions") == [("cow-2386",)]
    assert query(db, "SELECT result FROM milk_checks") == [("normal",)]
    history = StoreReader(db).body_condition_history("cow-2386", 1_750_000_000.0)
    assert history == [(1_750_000_002.0, 3.25, 3.0, 3.5, 0.82)]


def _fill_for_space(db: Path) -> None:
    w = make_writer(db)
    for i in range(120):
        w.submit(reading(i, pad=1500))
    for i in range(3):
        w.submit(identification(i, run="s"))
        w.submit(body_condition(i, run="s"))
        w.submit(milk_check(i, run="s"))
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


def test_unsynced_ones_are_dropped_after_readings_and_before_identifications(
    tmp_path: Path,
) -> None:
    db = tmp_path / "b.db"
    _fill_for_space(db)
    assert _dropped_kinds(db, target_fraction=0.7, synced=False) == ["reading"]
    assert query(db, "SELECT COUNT(*) FROM body_conditions") == [(3,)]
    assert query(db, "SELECT COUNT(*) FROM milk_checks") == [(3,)]
    assert _dropped_kinds(db, target_fraction=0.0, synced=False) == [
        "inference", "body_condition", "milk_check", "identification", "event"]
    assert query(db, "SELECT COUNT(*) FROM alerts") == [(1,)]


def test_synced_ones_are_evicted_in_the_same_order(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    _fill_for_space(db)
    assert _dropped_kinds(db, target_fraction=0.7, synced=True) == ["reading"]
    assert _dropped_kinds(db, target_fraction=0.0, synced=True) == [
        "inference", "body_condition", "milk_check", "identification", "event", "alert"]
