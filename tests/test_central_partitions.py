"""Readings partitioned by month on PostgreSQL; retention by dropping partitions;
exactly-once kept by the claims table (UNIQUE (device_id, record_id) cannot live on
a table partitioned by time).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_central import PG_ADMIN, pg_available, reading, unique_device

from agent.central.store import BatchMeta, SeqOutcome
from agent.central.store_postgres import MIGRATIONS, PostgresStore
from agent.central.validate import ValidRecord, validate_record
from agent.cli.main import main
from agent.records.protocol import RecordStatus

DAY = 86400.0


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A database of its own (partitions are per database)."""
    if not pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"dairy_part_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def valid(*records: dict[str, Any]) -> list[ValidRecord]:
    out = []
    for i, record in enumerate(records):
        checked = validate_record(i, record)
        assert isinstance(checked, ValidRecord), checked
        out.append(checked)
    return out


def meta(device: str, seq: int, epoch: str = "e1") -> BatchMeta:
    return BatchMeta(device, epoch, seq, f"{device}:{epoch}:{seq}", "k1", 1, 0.0, True, 100)


def at(n: int, ts: float, **extra: Any) -> dict[str, Any]:
    return reading(n, wall_ts=ts, **extra)


def partition_of(url: str, device: str, record_id: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT tableoid::regclass::text FROM readings"
                           " WHERE device_id = %s AND record_id = %s",
                           (device, record_id)).fetchone()
    assert row is not None, record_id
    return str(row[0])


async def test_readings_go_to_their_month_and_stay_exactly_once(fresh_pg: str) -> None:
    store = PostgresStore(fresh_pg)
    await store.start()
    device = unique_device()
    now = time.time()
    try:
        result = await store.ingest(meta(device, 1), valid(
            at(1, now), at(2, 10.0), at(3, now + 3650 * DAY), at(4, now - 40 * DAY)))
        assert [s for s, _ in result.statuses] == [RecordStatus.ACCEPTED] * 4
        assert partition_of(fresh_pg, device, "r000001") == time.strftime(
            "readings_%Y%m", time.gmtime(now))
        assert partition_of(fresh_pg, device, "r000002") == "readings_default"  # 1970 clock
        assert partition_of(fresh_pg, device, "r000003") == "readings_default"  # wild future
        assert partition_of(fresh_pg, device, "r000004") == time.strftime(
            "readings_%Y%m", time.gmtime(now - 40 * DAY))
        # The same record ids again, even with other stamps (a resent or restamped
        # reading): duplicates, in a resend and in a new batch alike.
        again = await store.ingest(meta(device, 2), valid(
            at(1, now + 5), at(2, now), at(3, now), at(4, now - 40 * DAY)))
        assert again.outcome is SeqOutcome.NEW
        assert [s for s, _ in again.statuses] == [RecordStatus.DUPLICATE] * 4
        # Twice in one batch: accepted once.
        twice = await store.ingest(meta(device, 3), valid(at(9, now), at(9, now - 1)))
        assert [s for s, _ in twice.statuses] == [RecordStatus.ACCEPTED, RecordStatus.DUPLICATE]
        assert (await store.stats())["devices"][device]["reading"] == 5
        with psycopg.connect(fresh_pg) as conn:
            values = conn.execute("SELECT count(*) FROM reading_values WHERE device_id = %s",
                                  (device,)).fetchone()
        assert values == (10,)  # 5 readings x 2 metrics
    finally:
        await store.close()


async def test_retention_drops_whole_old_months_and_their_claims(fresh_pg: str) -> None:
    store = PostgresStore(fresh_pg)
    await store.start()
    device = unique_device()
    now = time.time()
    try:
        stamps = {1: now - 200 * DAY, 2: now - 100 * DAY, 3: now, 4: 10.0}
        await store.ingest(meta(device, 1), valid(*(at(n, ts) for n, ts in stamps.items())))
        before = await store.reading_partitions()
        cutoff = now - 90 * DAY
        expected = [name for name, lo, hi in before if hi is not None and hi <= cutoff]
        assert partition_of(fresh_pg, device, "r000001") in expected
        assert await store.drop_readings_before(cutoff, dry_run=True) == expected
        assert len(await store.reading_partitions()) == len(before)  # a dry run drops nothing
        assert await store.drop_readings_before(cutoff) == expected
        names = [name for name, _, _ in await store.reading_partitions()]
        assert "readings_default" in names and not set(expected) & set(names)
        with psycopg.connect(fresh_pg) as conn:
            left = {r[0] for r in conn.execute(
                "SELECT record_id FROM readings WHERE device_id = %s", (device,))}
            claims = {r[0] for r in conn.execute(
                "SELECT record_id FROM reading_claims WHERE device_id = %s", (device,))}
        assert "r000001" not in left and {"r000003", "r000004"} <= left
        assert claims == left  # the dropped months' claims went with them
        # Newer data answers duplicate as before.
        again = await store.ingest(meta(device, 2), valid(at(3, now)))
        assert [s for s, _ in again.statuses] == [RecordStatus.DUPLICATE]
    finally:
        await store.close()


async def test_a_version_4_database_is_migrated_with_its_readings(fresh_pg: str) -> None:
    now = time.time()
    device = unique_device()
    with psycopg.connect(fresh_pg, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                     " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for version, name, ddl in MIGRATIONS[:4]:
            conn.execute(ddl.encode())
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (version, name))
        for n, ts in ((1, now - 30 * DAY), (2, now), (3, 10.0)):
            conn.execute(
                "INSERT INTO readings (device_id, record_id, sensor_id, firmware, \"values\","
                " wall_ts, mono_ns, boot_id, clock_synced, batch_id)"
                " VALUES (%s, %s, 'collar-1', 'collar-v2', %s, %s, 1, 'b', true, 'x')",
                (device, f"r{n:06d}", json.dumps({"temp_c": 38.5}), ts),
            )
    store = PostgresStore(fresh_pg)
    await store.start()
    try:
        assert partition_of(fresh_pg, device, "r000001") == time.strftime(
            "readings_%Y%m", time.gmtime(now - 30 * DAY))
        assert partition_of(fresh_pg, device, "r000003") == "readings_default"
        # The moved readings keep their exactly-once claims.
        result = await store.ingest(meta(device, 1), valid(at(1, now - 30 * DAY), at(4, now)))
        assert [s for s, _ in result.statuses] == [RecordStatus.DUPLICATE,
                                                  RecordStatus.ACCEPTED]
        with psycopg.connect(fresh_pg) as conn:
            ids = conn.execute("SELECT id FROM readings ORDER BY id").fetchall()
            assert len({i for (i,) in ids}) == 4  # ids go on from the old sequence
    finally:
        await store.close()


def test_cli_retention(fresh_pg: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "central.yaml"
    config.write_text(f"central:\n  database_url: {fresh_pg}\n")
    assert main(["central", "retention", "--keep-days", "30", "--dry-run", "-c",
                 str(config)]) == 0
    assert "would drop 0 readings partition(s)" in capsys.readouterr().out
    sqlite = tmp_path / "sqlite.yaml"
    sqlite.write_text(f"central:\n  database_url: sqlite:///{tmp_path / 'c.db'}\n")
    assert main(["central", "retention", "--keep-days", "30", "-c", str(sqlite)]) == 0
    assert "not partitioned" in capsys.readouterr().out
    assert main(["central", "retention", "--keep-days", "0", "-c", str(config)]) == 2


async def test_a_month_in_the_default_partition_moves_into_its_partition(
    fresh_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.central import store_postgres

    store = PostgresStore(fresh_pg)
    await store.start()
    device = unique_device()
    later = time.time() + 70 * DAY  # beyond the window: readings_default
    month = time.strftime("readings_%Y%m", time.gmtime(later))
    try:
        await store.ingest(meta(device, 1), valid(at(1, later), at(3, 1000.0)))
        assert partition_of(fresh_pg, device, "r000001") == "readings_default"
        # The window grows to that month: its partition is made, and takes the month's
        # rows out of the default one (a 1970 stamp stays there); still exactly once.
        monkeypatch.setattr(store_postgres, "PARTITION_AHEAD_DAYS", 120)
        result = await store.ingest(meta(device, 2), valid(at(2, later + 1), at(1, later)))
        assert [s for s, _ in result.statuses] == [RecordStatus.ACCEPTED,
                                                   RecordStatus.DUPLICATE]
        assert partition_of(fresh_pg, device, "r000002") == month
        assert partition_of(fresh_pg, device, "r000001") == month
        assert partition_of(fresh_pg, device, "r000003") == "readings_default"
        assert (await store.stats())["devices"][device]["reading"] == 3
        # Dropped by retention in another process (the CLI): this receiver still
        # believes in the month, so a reading of it goes to the default partition ...
        cli = PostgresStore(fresh_pg)
        await cli.start()
        try:
            assert month in await cli.drop_readings_before(later + 40 * DAY)
        finally:
            await cli.close()
        result = await store.ingest(meta(device, 3), valid(at(4, later)))
        assert [s for s, _ in result.statuses] == [RecordStatus.ACCEPTED]
        assert partition_of(fresh_pg, device, "r000004") == "readings_default"
        # ... until a receiver that does not know the month makes it again, with that row.
        other = PostgresStore(fresh_pg)
        await other.start()
        try:
            result = await other.ingest(meta(device, 4), valid(at(5, later)))
            assert [s for s, _ in result.statuses] == [RecordStatus.ACCEPTED]
            assert partition_of(fresh_pg, device, "r000005") == month
            assert partition_of(fresh_pg, device, "r000004") == month
        finally:
            await other.close()
    finally:
        await store.close()
