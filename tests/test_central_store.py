"""The central stores directly: schema an ERP can read, migrations, the replay rule."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_central import (
    reading,
    unique_device,
)

from agent.central import load_keys, open_store
from agent.central.store import BatchMeta, CentralStore, SeqOutcome, decide
from agent.central.store_postgres import PostgresStore
from agent.central.validate import ValidRecord, validate_record
from agent.errors import ConfigError
from agent.records.protocol import RecordStatus

pytest_plugins = ("helpers_central_fixtures",)  # the fixtures: pg_url, store, central, http

def meta(device: str, seq: int, batch_id: str | None = None, epoch: str = "e1") -> BatchMeta:
    return BatchMeta(device, epoch, seq, batch_id or f"{device}:{epoch}:{seq}", "k1", 1,
                     1_750_000_000.0, True, 100)


def valid(*records: dict[str, Any]) -> list[ValidRecord]:
    out = []
    for i, record in enumerate(records):
        checked = validate_record(i, record)
        assert isinstance(checked, ValidRecord), checked
        out.append(checked)
    return out


def test_replay_rule_table() -> None:
    assert decide(seen=True, seq=1, highest=9) is SeqOutcome.RESEND
    assert decide(seen=False, seq=9, highest=9) is SeqOutcome.REPLAY
    assert decide(seen=False, seq=3, highest=9) is SeqOutcome.REPLAY
    assert decide(seen=False, seq=10, highest=9) is SeqOutcome.NEW
    assert decide(seen=False, seq=1, highest=0) is SeqOutcome.NEW


async def test_ingest_outcomes(store: CentralStore) -> None:
    device = unique_device()
    first = await store.ingest(meta(device, 1), valid(reading(1), reading(2)))
    assert first.outcome is SeqOutcome.NEW and first.highest_seq == 1
    assert [s for s, _ in first.statuses] == [RecordStatus.ACCEPTED] * 2
    again = await store.ingest(meta(device, 1), valid(reading(1), reading(2)))
    assert again.outcome is SeqOutcome.RESEND
    assert [s for s, _ in again.statuses] == [RecordStatus.DUPLICATE] * 2
    replay = await store.ingest(meta(device, 1, batch_id="x"), valid(reading(3)))
    assert replay.outcome is SeqOutcome.REPLAY and replay.statuses == []
    # The same record id on another device is another record.
    other = await store.ingest(meta(unique_device(), 1), valid(reading(1)))
    assert [s for s, _ in other.statuses] == [RecordStatus.ACCEPTED]


async def test_postgres_schema_is_readable_by_an_erp(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.start()
    await store.start()  # migrations are idempotent
    device = unique_device()
    try:
        await store.ingest(meta(device, 1), valid(reading(1), reading(2, animal=None)))
    finally:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT record_id, metric, value, unit, raw_value FROM reading_values"
            " WHERE device_id = %s ORDER BY record_id, metric",
            (device,),
        ).fetchall()
        assert rows[0] == ("r000001", "activity", 1.0, "steps", 1.0)
        assert ("r000001", "temp_c", 38.51, "degC", 38.41) in rows and len(rows) == 4
        # Readings are partitioned by month; their UNIQUE (device_id, record_id) is
        # the primary key of reading_claims (a unique key must hold the partition key).
        claims = conn.execute(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = 'reading_claims'"
            " AND c.contype = 'p'"
        ).fetchall()
        assert claims == [("PRIMARY KEY (device_id, record_id)",)]
        for table in ("alerts", "events", "inferences", "identifications",
                      "body_conditions", "milk_checks"):
            uniques = conn.execute(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
                " JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = %s AND c.contype = 'u'",
                (table,),
            ).fetchall()
            assert ("UNIQUE (device_id, record_id)",) in uniques, table
        batch = conn.execute(
            "SELECT seq, outcome, accepted, received_at IS NOT NULL FROM batches"
            " WHERE device_id = %s", (device,),
        ).fetchone()
        assert batch == (1, "new", 2, True)
        gateway = conn.execute(
            "SELECT last_key_id FROM gateways WHERE device_id = %s", (device,)
        ).fetchone()
        assert gateway == ("k1",)
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(1,), (2,), (3,), (4,), (5,), (6,), (7,)]


async def test_postgres_concurrent_first_start_is_safe(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
    finally:
        for s in stores:
            await s.close()


async def test_sqlite_view_and_unique(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = open_store(f"sqlite:///{path}")
    await store.start()
    device = unique_device()
    try:
        await store.ingest(meta(device, 1), valid(reading(1)))
    finally:
        await store.close()
    await store.close()  # idempotent
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT metric, value, unit FROM reading_values ORDER BY metric"
    ).fetchall()
    assert rows == [("activity", 1.0, "steps"), ("temp_c", 38.51, "degC")]
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO readings (device_id, record_id, sensor_id, firmware, \"values\","
            " wall_ts, mono_ns, boot_id, clock_synced, batch_id)"
            " VALUES (?, 'r000001', 's', 'f', '{}', 0, 0, 'b', 1, 'x')",
            (device,),
        )
    conn.close()


def test_open_store_refuses_unknown_urls() -> None:
    with pytest.raises(ConfigError):
        open_store("mysql://somewhere/db")


def test_load_keys_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAIRY_EDGE_CENTRAL_KEYS", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "s3cret")
    assert load_keys() == {"default": b"s3cret"}
    monkeypatch.setenv("DAIRY_EDGE_CENTRAL_KEYS", "old=abc, new=def\nthird=ghi")
    assert load_keys() == {"old": b"abc", "new": b"def", "third": b"ghi"}
    monkeypatch.setenv("DAIRY_EDGE_CENTRAL_KEYS", "no-equals-sign")
    with pytest.raises(ConfigError):
        load_keys()


async def test_postgres_isolates_a_record_the_database_refuses(pg_url: str) -> None:
    # Validation should stop this first; the store's last resort must still not fail
    # the other records (nor answer 503 forever).
    store = PostgresStore(pg_url)
    await store.start()
    device = unique_device()
    good = valid(reading(1), reading(3))
    poison = valid(reading(2))[0]
    poison = ValidRecord(poison.index, poison.record_id, poison.kind,
                         {**poison.row, "topic": "nul\x00inside"})
    try:
        result = await store.ingest(meta(device, 1), [good[0], poison, good[1]])
        assert [s for s, _ in result.statuses] == [
            RecordStatus.ACCEPTED, RecordStatus.REJECTED, RecordStatus.ACCEPTED
        ]
        assert (result.statuses[1][1] or "").startswith("store_refused")
        assert (await store.stats())["devices"][device]["reading"] == 2
    finally:
        await store.close()


async def test_postgres_bulk_load_statuses_order_and_a_lost_staging_table(pg_url: str) -> None:
    """Readings bulk-loaded (staging COPY, one claims + readings statement): a repeated
    id is accepted once (its first), ids stored before are duplicates, rows keep the
    batch's order; and a session whose staging table a rolled-back batch took away,
    or that never had one, still stores the next batch."""
    store = PostgresStore(pg_url, pool_size=1)  # one session: the same one every batch
    await store.start()
    device = unique_device()
    poison = valid(reading(11))[0]
    poison = ValidRecord(poison.index, poison.record_id, poison.kind,
                         {**poison.row, "topic": "nul\x00inside"})
    try:
        # The session's first batch makes the staging table in its transaction, which
        # the database's refusal rolls back (the isolation retry stores the rest).
        refused = await store.ingest(meta(device, 1), [poison, *valid(reading(12))])
        assert [s for s, _ in refused.statuses] == [RecordStatus.REJECTED, RecordStatus.ACCEPTED]
        first = await store.ingest(meta(device, 2), valid(reading(5), reading(6)))
        assert [s for s, _ in first.statuses] == [RecordStatus.ACCEPTED] * 2
        repeat = reading(7)
        records = valid(reading(9), repeat, reading(6), {**repeat, "wall_ts": 1.0}, reading(8))
        result = await store.ingest(meta(device, 3), records)
        assert [s for s, _ in result.statuses] == [
            RecordStatus.ACCEPTED, RecordStatus.ACCEPTED, RecordStatus.DUPLICATE,
            RecordStatus.DUPLICATE, RecordStatus.ACCEPTED,
        ]
        with psycopg.connect(pg_url) as pg:
            rows = pg.execute("SELECT r.record_id, r.wall_ts, c.wall_ts FROM readings r"
                              " JOIN reading_claims c USING (device_id, record_id)"
                              " WHERE device_id = %s ORDER BY r.id", (device,)).fetchall()
        assert [r[0] for r in rows] == [
            "r000012", "r000005", "r000006", "r000009", "r000007", "r000008"]
        assert all(r[1] == r[2] == 1_750_000_000.0 + int(r[0][1:]) for r in rows)
        # A pooler handing out another session: the table is missing outright.
        async with store._pool.connection() as conn:
            await conn.execute("DROP TABLE IF EXISTS pg_temp.dairy_reading_stage")
        again = await store.ingest(meta(device, 4), valid(reading(15), reading(9)))
        assert [s for s, _ in again.statuses] == [RecordStatus.ACCEPTED, RecordStatus.DUPLICATE]
        assert (await store.stats())["devices"][device]["reading"] == 7
    finally:
        await store.close()


def gateway_rows(database_url: str, device: str) -> tuple[Any, list[str]]:
    """(last_key_id, last_batch_id) of the gateway row or None, and its sequences' epochs."""
    queries = ("SELECT last_key_id, last_batch_id FROM gateways WHERE device_id = {p}",
               "SELECT epoch FROM sequences WHERE device_id = {p} ORDER BY epoch")
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as lite:
            row = lite.execute(queries[0].format(p="?"), (device,)).fetchone()
            epochs = [r[0] for r in lite.execute(queries[1].format(p="?"), (device,))]
        return (tuple(row) if row else None), epochs
    with psycopg.connect(database_url) as pg:
        row = pg.execute(queries[0].format(p="%s"), (device,)).fetchone()
        epochs = [r[0] for r in pg.execute(queries[1].format(p="%s"), (device,))]
    return (tuple(row) if row else None), epochs


async def test_a_refused_batch_leaves_the_gateway_and_its_sequences_alone(
    store: CentralStore, database_url: str
) -> None:
    device = unique_device()
    first = dataclasses.replace(meta(device, 1), key_id="k-old", content_sha256="a" * 64)
    assert (await store.ingest(first, valid(reading(1)))).outcome is SeqOutcome.NEW
    stored = (("k-old", first.batch_id), ["e1"])
    assert gateway_rows(database_url, device) == stored
    # Replayed, conflicting and too-far batches, signed with another key: all refused ...
    refused = [
        dataclasses.replace(meta(device, 1, batch_id="other"), key_id="k-new"),
        dataclasses.replace(first, key_id="k-new", content_sha256="b" * 64),
        dataclasses.replace(meta(device, 10**6), key_id="k-new"),
        dataclasses.replace(meta(device, 10**6, epoch="e2"), key_id="k-new"),
    ]
    for batch in refused:
        result = await store.ingest(batch, valid(reading(2)), max_seq_advance=100)
        assert result.outcome in (SeqOutcome.REPLAY, SeqOutcome.CONFLICT,
                                  SeqOutcome.TOO_FAR), batch
        # ... and none of them moves last_key_id or opens a sequence (epoch e2).
        assert gateway_rows(database_url, device) == stored, batch
    # A gateway never stored gets no row from a refused batch.
    stranger = unique_device()
    result = await store.ingest(meta(stranger, 10**6), valid(reading(1)), max_seq_advance=100)
    assert result.outcome is SeqOutcome.TOO_FAR
    assert gateway_rows(database_url, stranger) == (None, [])
    # The next stored batch does (a resend too).
    second = dataclasses.replace(meta(device, 2), key_id="k-new")
    assert (await store.ingest(second, valid(reading(3)))).outcome is SeqOutcome.NEW
    assert gateway_rows(database_url, device) == (("k-new", second.batch_id), ["e1"])
    assert (await store.ingest(first, valid(reading(1)))).outcome is SeqOutcome.RESEND
    assert gateway_rows(database_url, device) == (("k-old", first.batch_id), ["e1"])


async def test_a_batch_stored_without_a_digest_takes_no_new_records(store: CentralStore) -> None:
    # A batch stored before schema 4 has no content digest (NULL in batches).
    device = unique_device()
    old = meta(device, 1)  # content_sha256 "": stored as NULL
    assert (await store.ingest(old, valid(reading(1), reading(2)))).outcome is SeqOutcome.NEW
    now = dataclasses.replace(old, content_sha256="c" * 64)
    # Its resend (same record ids): a resend, every record a duplicate.
    again = await store.ingest(now, valid(reading(1), reading(2)))
    assert again.outcome is SeqOutcome.RESEND
    assert [s for s, _ in again.statuses] == [RecordStatus.DUPLICATE] * 2
    # The same batch id with a record never stored: a conflict, nothing stored.
    forged = await store.ingest(now, valid(reading(1), reading(2), reading(3)))
    assert forged.outcome is SeqOutcome.CONFLICT and forged.statuses == []
    other = await store.ingest(now, valid(reading(9)))
    assert other.outcome is SeqOutcome.CONFLICT
    assert (await store.stats())["devices"][device]["reading"] == 2
