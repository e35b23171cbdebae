"""Time without an RTC (T11, store part): correction after sync, steps delete nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_store import FakeClock, alert_at, query, reading_at

from agent.config.model import StoreConfig
from agent.store import outbox
from agent.store.clockfix import clock_offset
from agent.store.writer import StoreWriter

SYNC_WALL = 1_750_000_000.0


def _writer(db: Path, clock: FakeClock, **cfg: object) -> StoreWriter:
    config = StoreConfig(**{"commit_interval_ms": 5, "synced_max_age_s": 0, **cfg})  # type: ignore[arg-type]
    w = StoreWriter(db, config, clock, boot="boot-1")
    w.start()
    return w


def _flush(w: StoreWriter) -> None:
    w.call(lambda c: None).result(5)


def test_unsynced_records_corrected_once_clock_syncs(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    clock = FakeClock(wall=3600.0, mono=500.0, synced=False)  # booted "in 1970"
    w = _writer(db, clock)
    made = []
    for i in range(5):
        st = clock.stamp()
        made.append(st)
        w.submit(reading_at(i, st))
        clock.advance(10)
    w.submit(alert_at(1, clock.stamp()))
    other_boot = clock.stamp("boot-0")  # an earlier boot: its offset is unknown
    w.submit(reading_at(50, other_boot))
    _flush(w)
    late = clock.stamp()  # made before sync, committed after (still in memory)

    clock.advance(30)
    clock.step_wall(SYNC_WALL, synced=True)  # NTP answers
    offset = clock_offset(clock)
    assert offset == pytest.approx(SYNC_WALL - clock.monotonic())
    fixed = w.clock_synced().result(5)
    assert fixed == 6  # five readings and the alert of this boot
    w.submit(reading_at(60, late))
    synced_now = clock.stamp()
    w.submit(reading_at(70, synced_now))
    _flush(w)

    rows = {r[0]: r[1:] for r in query(
        db, "SELECT record_id, wall_ts, mono_ns, clock_synced, wall_corrected, body "
        "FROM readings")}
    for i, st in enumerate(made):
        assert rows[f"r-s1-{i}"][1] == st.mono_ns
        wall_ts, mono_ns, synced, corrected, body = rows[f"r-s1-{i}"]
        assert wall_ts == pytest.approx(mono_ns / 1e9 + offset)
        assert wall_ts == pytest.approx(SYNC_WALL - 30 - 10 * (5 - i), abs=1e-3)
        assert (synced, corrected) == (0, 1)  # the truth: made unsynced, corrected later
        data = json.loads(body)
        assert data["wall_corrected"] is True
        assert data["wall_ts"] == pytest.approx(wall_ts)
    assert rows["r-s1-50"][3] == 0 and rows["r-s1-50"][0] == pytest.approx(other_boot.wall_ts)
    # Committed after the flip, stamped before it: corrected on insert.
    assert rows["r-s1-60"][3] == 1
    assert rows["r-s1-60"][0] == pytest.approx(late.mono_ns / 1e9 + offset)
    assert rows["r-s1-70"][2:4] == (1, 0)
    assert query(db, "SELECT wall_corrected FROM alerts") == [(1,)]

    # The upload carries the corrected time and the flag.
    batch = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 100, 10**7, 1)).result(5)
    assert batch is not None
    by_id = {r["record_id"]: r for r in batch.records}
    assert by_id["r-s1-0"]["wall_corrected"] is True
    assert by_id["r-s1-0"]["wall_ts"] == pytest.approx(rows["r-s1-0"][0])
    assert "wall_corrected" not in by_id["r-s1-70"]
    # A second call finds nothing left to correct.
    assert w.clock_synced().result(5) == 0
    w.close()


def test_clock_steps_delete_nothing(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    clock = FakeClock(wall=SYNC_WALL, mono=10_000.0, synced=True)
    w = _writer(db, clock, synced_max_age_s=3600)
    for i in range(20):
        w.submit(reading_at(i, clock.stamp()))
    for i in range(20, 30):  # rows of an earlier boot, with trusted wall times
        w.submit(reading_at(i, clock.stamp("boot-0")))
    _flush(w)
    w.call(lambda c: c.execute("UPDATE readings SET synced = 1 WHERE record_id IN "
                               "(SELECT record_id FROM readings ORDER BY id LIMIT 10)")).result(5)
    w.call(lambda c: c.execute("UPDATE readings SET synced = 1 WHERE record_id LIKE 'r-s1-2_'"
                               )).result(5)

    def count() -> int:
        return int(query(db, "SELECT COUNT(*) FROM readings")[0][0])

    # Forward ten years, back to 1970, forward again: the monotonic clock barely moves.
    for wall in (SYNC_WALL + 10 * 365 * 86400, 0.0, SYNC_WALL + 86400 * 400):
        clock.step_wall(wall, synced=True)
        clock.advance(1)
        assert w.run_retention_now().result(5) == 0
        assert count() == 30
    # Unsynced rows never expire, however much time really passes.
    clock.advance(7200)
    deleted = w.run_retention_now().result(5)
    assert deleted == 20  # the synced ones: 10 of this boot, 10 of boot-0
    assert count() == 10
    assert query(db, "SELECT COUNT(*) FROM readings WHERE synced = 0") == [(10,)]
    assert query(db, "SELECT reason, kind, count FROM drops") == [
        ("retention_age", "reading", 20)]
    w.close()


def test_retention_by_synced_bytes(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    clock = FakeClock(wall=SYNC_WALL, mono=10_000.0, synced=True)
    w = _writer(db, clock, synced_max_bytes=20_000)
    for i in range(100):
        w.submit(reading_at(i, clock.stamp(), pad=1000))
    _flush(w)
    w.call(lambda c: c.execute("UPDATE readings SET synced = 1 WHERE id <= 80")).result(5)
    assert w.run_retention_now().result(5) > 0
    kept_synced = query(db, "SELECT COALESCE(SUM(size), 0), MIN(id) FROM readings "
                        "WHERE synced = 1")[0]
    assert kept_synced[0] <= 20_000
    assert kept_synced[1] > 1  # the oldest went first
    assert query(db, "SELECT COUNT(*) FROM readings WHERE synced = 0") == [(20,)]
    w.close()


def test_the_open_batch_is_left_as_sent_when_the_clock_syncs(tmp_path: Path) -> None:
    # Central may hold the open batch already (its answer lost): a resend must be
    # byte-for-byte the same records, so the clock fix leaves them alone.
    db = tmp_path / "b.db"
    clock = FakeClock(wall=3600.0, mono=500.0, synced=False)
    w = _writer(db, clock)
    for i in range(6):
        w.submit(reading_at(i, clock.stamp()))
        clock.advance(10)
    _flush(w)
    sent = w.call(lambda c: outbox.prepare(c, "gw", "e1", 3, 1 << 20, 0)).result(5)
    assert sent is not None and len(sent.records) == 3
    clock.step_wall(SYNC_WALL, synced=True)
    assert w.clock_synced().result(5) == 3  # only the three not yet sent
    again = w.call(lambda c: outbox.prepare(c, "gw", "e1", 3, 1 << 20, 0)).result(5)
    assert again is not None and again.resumed and again.batch_id == sent.batch_id
    assert again.records == sent.records
    w.close()


def test_an_open_batch_that_lost_records_is_closed_not_resent_changed(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    clock = FakeClock(wall=SYNC_WALL, mono=500.0, synced=True)
    w = _writer(db, clock)
    for i in range(6):
        w.submit(reading_at(i, clock.stamp()))
    _flush(w)
    first = w.call(lambda c: outbox.prepare(c, "gw", "e1", 3, 1 << 20, 0)).result(5)
    assert first is not None
    gone = first.refs[0][1]
    w.call(lambda c: c.execute("DELETE FROM readings WHERE record_id = ?", (gone,))).result(5)
    nxt = w.call(lambda c: outbox.prepare(c, "gw", "e1", 3, 1 << 20, 0)).result(5)
    assert nxt is not None and not nxt.resumed and nxt.seq == first.seq + 1
    assert gone not in {r for _, r in nxt.refs}
    w.close()
