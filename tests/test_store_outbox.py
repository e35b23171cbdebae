"""Outbox queries: indexed unsynced lookup, open batch persisted before sending."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_store import alert, make_writer, query, reading

from agent.records.protocol import BatchResponse, RecordResult, RecordStatus
from agent.store import outbox


def test_unsynced_query_uses_partial_index(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    w.close()
    for table in ("alerts", "events", "identifications", "milk_checks", "body_conditions",
                  "inferences", "readings"):
        plan = query(
            db, f"EXPLAIN QUERY PLAN SELECT record_id, body, size FROM {table} "
            "WHERE synced = 0 ORDER BY id LIMIT 10"
        )
        assert f"{table}_unsynced" in " ".join(str(r[-1]) for r in plan), plan


def test_open_batch_persisted_then_closed(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    w = make_writer(db)
    for item in (reading(1), reading(2), alert(1)):
        w.submit(item)
    batch = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 10, 10_000, 123)).result(5)
    assert batch is not None and batch.seq == 1
    state = json.loads(query(db, "SELECT value FROM sync_state WHERE key='open_batch'")[0][0])
    assert state["batch_id"] == f"gw:{w.epoch}:1"
    assert [r for _, r in state["refs"]] == ["a-1", "r-s1-1", "r-s1-2"]
    # Preparing again (a retry) gives the same batch, not a new seq.
    again = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 10, 10_000, 999)).result(5)
    assert again is not None and again.resumed and again.refs == batch.refs
    assert again.created_mono_ns == 123
    resp = BatchResponse(batch_id=batch.batch_id, results=[
        RecordResult(record_id="a-1", status=RecordStatus.ACCEPTED),
        RecordResult(record_id="r-s1-1", status=RecordStatus.DUPLICATE),
        RecordResult(record_id="r-s1-2", status=RecordStatus.RETRY),
        RecordResult(record_id="not-ours", status=RecordStatus.ACCEPTED),
    ])
    res = w.call(lambda c: outbox.apply(c, batch, resp, 5, 0.0)).result(5)
    assert (res.synced, res.retry, res.missing) == (2, 1, 0)
    assert query(db, "SELECT key, value FROM sync_state") == [("seq", "1")]
    nxt = w.call(lambda c: outbox.prepare(c, "gw", w.epoch, 10, 10_000, 5)).result(5)
    assert nxt is not None and nxt.seq == 2 and [r for _, r in nxt.refs] == ["r-s1-2"]
    w.close()
