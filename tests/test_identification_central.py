"""Identifications from the gateway's writer to central: real uploader, real central
on PostgreSQL and SQLite, real Redis; validation, dedup, crops, migrations."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import redis.asyncio as aioredis
from helpers_central import (
    PG_ADMIN,
    batch_doc,
    post,
    reading,
    signed,
    statuses,
    unique_device,
)
from helpers_gateway import Gateway
from helpers_identification import identification, tag_jpeg
from helpers_store import query
from helpers_store import reading as store_reading

from agent.central import CentralHandle, store_postgres, store_sqlite
from agent.central.store import BatchMeta, CentralStore, open_store
from agent.central.validate import MAX_CROP_BYTES, InvalidRecord, validate_record
from agent.errors import TransientError
from agent.records import Identification
from agent.store.reader import StoreReader
from agent.sync import Outcome

# The fixtures: pg_url, store, central, http; redis_client, prefix, cached_central.
pytest_plugins = ("helpers_central_fixtures", "helpers_redis_fixtures")


# ----- helpers


async def rows(store: CentralStore, database_url: str, device: str) -> list[dict[str, Any]]:
    """The device's identifications as central stored them, oldest first."""
    sql = ("SELECT record_id, camera_id, visit_id, status, tag_number, animal_id, station,"
           " rfid_eid, rfid_agrees, confidence, started_wall_ts, ended_wall_ts, flags,"
           " evidence, model_versions, crop_jpeg, batch_id FROM identifications"
           " WHERE device_id = {} ORDER BY id")
    if database_url.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(sql.format("%s"), (device,))
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql.format("?"), (device,))]
    finally:
        conn.close()


def wire(item: Identification) -> dict[str, Any]:
    return {k: v for k, v in item.to_dict().items() if v is not None}


# ----- the whole way: writer, outbox, uploader, central, Redis


async def test_identification_synced_exactly_once_with_its_crop(
    tmp_path: Path,
    cached_central: CentralHandle,
    store: CentralStore,
    database_url: str,
    redis_client: aioredis.Redis,
    prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    gw = Gateway(tmp_path / "b.db", cached_central.url)
    crop = tag_jpeg("4711")
    seen = identification(1, status="identified", tag="2386", animal="cow-2386")
    flagged = identification(2, status="flagged", tag="4711", animal="cow-4711", crop=crop)
    review = identification(3, status="review", crop=tag_jpeg("77"))
    try:
        gw.store(seen, flagged, review)
        # The first answer is lost: the gateway keeps the open batch and resends it.
        gw.transport.lose_next = True
        with pytest.raises(TransientError):
            await gw.up.sync_once()
        assert StoreReader(gw.db).counts()["unsynced"]["identifications"] == 3
        out = await gw.up.sync_once()
        assert out.outcome == Outcome.SENT and out.resumed and out.records == 3
        assert out.applied.by_status == {"duplicate": 3}
        assert StoreReader(gw.db).counts()["unsynced"]["identifications"] == 0
        assert [r["synced"] for r in StoreReader(gw.db).recent_identifications()] == [True] * 3

        # The very same bytes sent again (a captured request replayed): duplicates.
        body, headers = gw.transport.sent[0]
        status, data, _ = await post(http, cached_central, body, headers)
        assert status == 200 and statuses(data) == ["duplicate"] * 3

        stored = await rows(store, database_url, gw.device)
        assert [r["record_id"] for r in stored] == [seen.record_id, flagged.record_id,
                                                   review.record_id]
        first, second, third = stored
        assert (first["status"], first["tag_number"], first["animal_id"]) == (
            "identified", "2386", "cow-2386")
        assert first["camera_id"] == "lane-1" and first["station"] == "parlour-exit"
        assert bool(first["rfid_agrees"]) is True and first["confidence"] == 0.97
        assert first["ended_wall_ts"] == seen.ended_wall_ts
        assert first["crop_jpeg"] is None
        assert bytes(second["crop_jpeg"]) == crop  # decoded from base64, byte for byte
        assert third["tag_number"] is None and third["animal_id"] is None
        flags = second["flags"]
        assert (json.loads(flags) if isinstance(flags, str) else flags) == ["not_in_register"]
        assert (await store.stats())["devices"][gw.device]["identification"] == 3

        # Redis: where each named cow was last seen; a review visit names none.
        assert cached_central.cache is not None
        await cached_central.cache.drain()
        hit = await redis_client.hgetall(f"{prefix}:animal:{gw.device}:cow-2386")
        assert hit["last_seen_ts"] == repr(seen.ended_wall_ts)
        assert (hit["camera_id"], hit["tag_number"], hit["status"]) == (
            "lane-1", "2386", "identified")
        assert float(hit["confidence"]) == 0.97 and hit["identification_id"] == seen.record_id
        # A flagged visit is a question for staff, not where the cow is: not cached.
        assert await redis_client.hgetall(f"{prefix}:animal:{gw.device}:cow-4711") == {}
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:animal:*")]
        assert len(keys) == 1, keys
    finally:
        await gw.close()


async def test_a_crop_over_the_limit_is_rejected_and_never_wedges_the_outbox(
    tmp_path: Path, central: CentralHandle, store: CentralStore, database_url: str
) -> None:
    huge = tag_jpeg(noise=420)
    assert len(huge) > MAX_CROP_BYTES
    gw = Gateway(tmp_path / "b.db", central.url, max_attempts=2, batch_max_bytes=64 * 1024)
    big = identification(1, status="flagged", tag="4711", crop=huge)
    small = identification(2, status="flagged", tag="4712", crop=tag_jpeg("4712"))
    try:
        gw.store(big, small, *[store_reading(i) for i in range(3)])
        first = await gw.up.sync_once()
        # Over the batch's byte cap, the big record went alone, and was refused.
        assert first.records == 1 and first.applied.rejected == 1
        assert query(gw.db, "SELECT last_error FROM identifications WHERE record_id = ?",
                     (big.record_id,))[0][0].startswith(
            "invalid identification: crop_jpeg_b64: Value error, crop is over 262144 bytes")
        second = await gw.up.sync_once()
        assert second.applied.dead_lettered == 1 and second.applied.dead_ids == [big.record_id]
        # What waited behind it goes now.
        third = await gw.up.sync_once()
        assert third.applied.by_status == {"accepted": 4}
        assert (await gw.up.sync_once()).outcome == Outcome.IDLE
        assert [r["record_id"] for r in await rows(store, database_url, gw.device)] == [
            small.record_id]
        assert StoreReader(gw.db).recent_dead_letters()[0]["record_id"] == big.record_id
    finally:
        await gw.close()


# ----- validation


def _base(**change: Any) -> dict[str, Any]:
    return {**wire(identification(1, run="v")), **change}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "guessed"}, "status: Input should be 'identified', 'flagged' or 'review'"),
        ({"confidence": 2.0}, "confidence: Input should be less than or equal to 1"),
        ({"confidence": -0.1}, "confidence: Input should be greater than or equal to 0"),
        ({"tag_number": "12\n"}, "tag_number: Value error, must be 1 to 16 letters, digits"),
        ({"tag_number": "12345678901234567"}, "tag_number: Value error"),
        ({"tag_number": "-124"}, "tag_number: Value error"),
        ({"camera_id": "lane 1"}, "camera_id: Value error"),
        ({"visit_id": "v1\n"}, "visit_id: Value error"),
        ({"status": "review"}, "a review visit claims no tag_number"),
        ({"tag_number": None}, "status identified needs its tag_number"),
        ({"crop_jpeg_b64": "not base64!"}, "crop is not valid base64"),
        ({"crop_jpeg_b64": base64.b64encode(b"\x89PNG\r\n").decode()}, "crop is not a JPEG"),
        ({"crop_jpeg_b64": base64.b64encode(b"\xff\xd8\xff" + bytes(MAX_CROP_BYTES)).decode()},
         "crop is over 262144 bytes; send a smaller crop or none"),
    ],
)
def test_malformed_identification_is_rejected_with_a_reason(
    change: dict[str, Any], reason: str
) -> None:
    result = validate_record(0, _base(**change))
    assert isinstance(result, InvalidRecord)
    assert reason in result.reason and result.reason.startswith("invalid identification: ")


def test_crop_of_exactly_the_limit_is_accepted() -> None:
    crop = b"\xff\xd8\xff" + bytes(MAX_CROP_BYTES - 3)
    result = validate_record(0, _base(crop_jpeg_b64=base64.b64encode(crop).decode()))
    assert not isinstance(result, InvalidRecord)
    assert result.row["crop_jpeg"] == crop and "crop_jpeg_b64" not in result.row


async def test_malformed_ones_rejected_over_http_the_good_one_stored(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore,
    database_url: str,
) -> None:
    device = unique_device()
    good = wire(identification(1))
    bad = [
        {**wire(identification(2)), "status": "maybe"},
        {**wire(identification(3)), "confidence": 2.0},
        {**wire(identification(4)), "tag_number": "12\n"},
    ]
    status, data, _ = await post(http, central, *signed(batch_doc(device, 1, [good, *bad,
                                                                             reading(1)])))
    assert status == 200
    assert statuses(data) == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    reasons = [r["reason"] for r in data["results"][1:4]]
    assert "status" in reasons[0] and "confidence" in reasons[1] and "tag_number" in reasons[2]
    assert [r["record_id"] for r in await rows(store, database_url, device)] == [
        good["record_id"]]


# ----- Redis: newest sighting wins, the reading's fields stay


async def test_last_seen_newest_wins_beside_the_latest_reading(
    cached_central: CentralHandle, http: aiohttp.ClientSession, redis_client: aioredis.Redis,
    prefix: str,
) -> None:
    device = unique_device()
    newer = wire(identification(1, animal="cow-7", ended=1_750_000_500.0))
    older = wire(identification(2, animal="cow-7", ended=1_750_000_100.0))
    # A review visit claims no cow, even when it carries an animal id.
    review = {**wire(identification(3, status="review")), "animal_id": "cow-9"}
    for seq, records in enumerate([[reading(1), newer], [older, review]], start=1):
        status, _, _ = await post(http, cached_central, *signed(batch_doc(device, seq, records)))
        assert status == 200
    assert cached_central.cache is not None
    await cached_central.cache.drain()
    animal = await redis_client.hgetall(f"{prefix}:animal:{device}:cow-7")
    assert animal["identification_id"] == newer["record_id"]
    assert animal["last_seen_ts"] == repr(1_750_000_500.0)
    assert animal["record_id"] == "r000001" and animal["sensor_id"] == "collar-1"
    assert not await redis_client.exists(f"{prefix}:animal:{device}:cow-9")


# ----- migrations: an existing central database gains the table


async def test_existing_central_databases_gain_identifications(
    tmp_path: Path, pg_admin_db: str
) -> None:
    # SQLite: a file made by the first release.
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    version, name, ddl = store_sqlite.MIGRATIONS[0]
    conn.executescript(ddl)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                 " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT 'then')")
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
    conn.commit()
    conn.close()
    # PostgreSQL: a database made by the first release.
    with psycopg.connect(pg_admin_db, autocommit=True) as pg:
        pg.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                   " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        pg.execute(store_postgres.MIGRATIONS[0][2].encode())
        pg.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'initial schema')")
    for url in (f"sqlite:///{path}", pg_admin_db):
        opened = open_store(url)
        await opened.start()
        try:
            device = unique_device()
            meta = BatchMeta(device, "e1", 1, f"{device}:e1:1", "k1", 1, 0.0, True, 1)
            record = validate_record(0, wire(identification(1)))
            assert not isinstance(record, InvalidRecord)
            result = await opened.ingest(meta, [record])
            assert [str(s) for s, _ in result.statuses] == ["accepted"]
        finally:
            await opened.close()
    assert [v for (v,) in sqlite3.connect(path).execute(
        "SELECT version FROM schema_migrations ORDER BY version")] == [
            v for v, _, _ in store_sqlite.MIGRATIONS]
    with psycopg.connect(pg_admin_db) as pg:
        versions = pg.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in versions.fetchall()] == [
            v for v, _, _ in store_postgres.MIGRATIONS]
        uniques = pg.execute(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t"
            " ON t.oid = c.conrelid WHERE t.relname = 'identifications' AND c.contype = 'u'"
        ).fetchall()
        assert ("UNIQUE (device_id, record_id)",) in uniques


@pytest.fixture
def pg_admin_db() -> Iterator[str]:
    """An empty database of our own (the session one already has the new schema)."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            pass
    except psycopg.Error:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"dairy_ident_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)))
