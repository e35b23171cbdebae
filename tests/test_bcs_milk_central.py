"""Body conditions and milk checks from the gateway's writer to central: real
uploader, real central on PostgreSQL and SQLite, real Redis; exactly once,
validation with reasons, the cow's latest score in Redis, migrations."""

from __future__ import annotations

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
from helpers_bcs_milk import body_condition, milk_check
from helpers_central import PG_ADMIN, batch_doc, post, reading, signed, statuses, unique_device
from helpers_gateway import Gateway
from helpers_store import query

from agent.central import CentralHandle, store_postgres, store_sqlite
from agent.central.store import BatchMeta, CentralStore, open_store
from agent.central.validate import InvalidRecord, ValidRecord, validate_record
from agent.errors import TransientError
from agent.records import BodyCondition, MilkCheck
from agent.store.reader import StoreReader
from agent.sync import Outcome

# The fixtures: pg_url, store, central, http; redis_client, prefix, cached_central.
pytest_plugins = ("helpers_central_fixtures", "helpers_redis_fixtures")

BCS_COLUMNS = ("record_id, camera_id, visit_id, animal_id, bcs, low, high, quality, frames,"
               " model, model_version, details, wall_ts, clock_synced, batch_id")
MILK_COLUMNS = ("record_id, camera_id, animal_id, quarter, result, confidence, model,"
                " model_version, scores, details, wall_ts, batch_id")


async def rows(database_url: str, table: str, columns: str, device: str) -> list[dict[str, Any]]:
    """The device's rows of ``table`` as central stored them, oldest first."""
    sql = f"SELECT {columns} FROM {table} WHERE device_id = {{}} ORDER BY id"
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


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def wire(item: BodyCondition | MilkCheck) -> dict[str, Any]:
    return {k: v for k, v in item.to_dict().items() if v is not None}


# ----- the whole way: writer, outbox, uploader, central, Redis


async def test_synced_exactly_once_each_in_its_table(
    tmp_path: Path,
    cached_central: CentralHandle,
    store: CentralStore,
    database_url: str,
    redis_client: aioredis.Redis,
    prefix: str,
    http: aiohttp.ClientSession,
) -> None:
    gw = Gateway(tmp_path / "b.db", cached_central.url)
    t0 = 1_750_000_000.0
    older = body_condition(1, bcs=3.5, low=3.25, high=3.75, wall_ts=t0)
    newer = body_condition(2, bcs=3.0, low=2.75, high=3.25, quality=0.9, wall_ts=t0 + 86_400)
    nobody = body_condition(3, animal=None, wall_ts=t0 + 90_000)
    normal = milk_check(1)
    blood = milk_check(2, result="blood", confidence=0.88, quarter="RR")
    unknown_cow = milk_check(3, result="watery", animal=None, quarter=None)
    try:
        # The newer score is stored first: in Redis the newest wins, not the last sent.
        gw.store(newer, older, nobody, normal, blood, unknown_cow)
        # The first answer is lost: the gateway keeps the open batch and resends it.
        gw.transport.lose_next = True
        with pytest.raises(TransientError):
            await gw.up.sync_once()
        unsynced = StoreReader(gw.db).counts()["unsynced"]
        assert (unsynced["body_conditions"], unsynced["milk_checks"]) == (3, 3)
        out = await gw.up.sync_once()
        assert out.outcome == Outcome.SENT and out.resumed and out.records == 6
        assert out.applied.by_status == {"duplicate": 6}
        assert StoreReader(gw.db).counts()["backlog"] == 0
        assert (await gw.up.sync_once()).outcome == Outcome.IDLE

        # The very same bytes sent again (a captured request replayed): duplicates.
        body, headers = gw.transport.sent[0]
        status, data, _ = await post(http, cached_central, body, headers)
        assert status == 200 and statuses(data) == ["duplicate"] * 6

        scores = await rows(database_url, "body_conditions", BCS_COLUMNS, gw.device)
        assert [r["record_id"] for r in scores] == [
            newer.record_id, older.record_id, nobody.record_id]
        first = scores[0]
        assert (first["bcs"], first["low"], first["high"], first["quality"]) == (
            3.0, 2.75, 3.25, 0.9)
        assert (first["animal_id"], first["camera_id"], first["visit_id"]) == (
            "cow-2386", "topview-1", newer.visit_id)
        assert (first["model"], first["model_version"], first["frames"]) == (
            "bcs-topview", "1.2.0", 9)
        assert first["wall_ts"] == t0 + 86_400 and bool(first["clock_synced"]) is True
        assert _json(first["details"]) == {"straightness": 0.91, "back_visible": 0.88}
        assert scores[2]["animal_id"] is None

        checks = await rows(database_url, "milk_checks", MILK_COLUMNS, gw.device)
        assert [(r["record_id"], r["result"], r["quarter"], r["animal_id"]) for r in checks] == [
            (normal.record_id, "normal", "LF", "cow-2386"),
            (blood.record_id, "blood", "RR", "cow-2386"),
            (unknown_cow.record_id, "watery", None, None),
        ]
        assert checks[1]["confidence"] == 0.88 and _json(checks[1]["scores"])["blood"] == 0.88
        assert (checks[1]["model"], checks[1]["model_version"]) == ("milk-colour", "0.4.1")
        # Every row came in the one batch that reached central first.
        assert len({r["batch_id"] for r in scores + checks}) == 1

        device_stats = (await store.stats())["devices"][gw.device]
        assert (device_stats["body_condition"], device_stats["milk_check"]) == (3, 3)

        # Redis: the cow's latest score, newest by time; a score of nobody is not cached.
        assert cached_central.cache is not None
        await cached_central.cache.drain()
        cow = await redis_client.hgetall(f"{prefix}:animal:{gw.device}:cow-2386")
        assert (cow["bcs"], cow["bcs_low"], cow["bcs_high"], cow["bcs_quality"]) == (
            "3.0", "2.75", "3.25", "0.9")
        assert cow["bcs_ts"] == repr(t0 + 86_400) and cow["bcs_id"] == newer.record_id
        assert cow["bcs_camera_id"] == "topview-1"
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:animal:*")]
        assert keys == [f"{prefix}:animal:{gw.device}:cow-2386"]
    finally:
        await gw.close()


async def test_a_bad_record_from_the_gateway_is_rejected_with_its_reason_the_rest_stored(
    tmp_path: Path, central: CentralHandle, database_url: str
) -> None:
    gw = Gateway(tmp_path / "b.db", central.url, max_attempts=2)
    # Outside its interval: a model bug the gateway did not catch.
    bad = body_condition(1, bcs=4.5, low=3.0, high=3.5)
    good = body_condition(2)
    check = milk_check(1, result="colostrum", quarter="LR")
    try:
        gw.store(bad, good, check)
        first = await gw.up.sync_once()
        assert first.applied.by_status == {"accepted": 2, "rejected": 1}
        (error,) = query(gw.db, "SELECT last_error FROM body_conditions WHERE record_id = ?",
                         (bad.record_id,))[0]
        assert error == ("invalid body_condition: record: Value error, bcs 4.5 must lie within"
                         " its interval low 3.0 .. high 3.5")
        second = await gw.up.sync_once()
        assert second.applied.dead_ids == [bad.record_id]
        assert (await gw.up.sync_once()).outcome == Outcome.IDLE
        stored = await rows(database_url, "body_conditions", BCS_COLUMNS, gw.device)
        assert [r["record_id"] for r in stored] == [good.record_id]
        milk = await rows(database_url, "milk_checks", MILK_COLUMNS, gw.device)
        assert [r["result"] for r in milk] == ["colostrum"]
    finally:
        await gw.close()


# ----- validation


def _bcs(**change: Any) -> dict[str, Any]:
    return {**wire(body_condition(1, run="v")), **change}


def _milk(**change: Any) -> dict[str, Any]:
    return {**wire(milk_check(1, run="v")), **change}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_bcs(bcs=5.5, high=5.0), "bcs: Input should be less than or equal to 5"),
        (_bcs(bcs=0.5, low=0.25), "bcs: Input should be greater than or equal to 1"),
        (_bcs(low=0.9), "low: Input should be greater than or equal to 1"),
        (_bcs(high=5.25), "high: Input should be less than or equal to 5"),
        (_bcs(bcs=3.75), "bcs 3.75 must lie within its interval low 3.0 .. high 3.5"),
        (_bcs(bcs=2.75), "bcs 2.75 must lie within its interval"),
        (_bcs(low=3.5, high=3.0), "must lie within its interval low 3.5 .. high 3.0"),
        (_bcs(quality=1.2), "quality: Input should be less than or equal to 1"),
        (_bcs(quality=-0.01), "quality: Input should be greater than or equal to 0"),
        (_bcs(frames=0), "frames: Input should be greater than or equal to 1"),
        (_bcs(camera_id="top view"), "camera_id: Value error, must be 1 to 128 of"),
        (_bcs(visit_id="v1\n"), "visit_id: Value error"),
        (_bcs(model=""), "model: String should have at least 1 character"),
        (_bcs(animal_id=""), "animal_id: String should have at least 1 character"),
        ({k: v for k, v in _bcs().items() if k != "high"}, "high: Field required"),
        (_bcs(bcs="3.25x"), "bcs: Input should be a valid number"),
        (_milk(result="pink"), "result: Value error, must be one of normal, blood, colostrum"),
        (_milk(result="Normal"), "result: Value error, must be one of"),
        (_milk(confidence=1.5), "confidence: Input should be less than or equal to 1"),
        (_milk(confidence=-0.5), "confidence: Input should be greater than or equal to 0"),
        (_milk(quarter="LB"), "quarter: Value error, must be one of LF, RF, LR, RR or null"),
        (_milk(quarter="lf"), "quarter: Value error"),
        (_milk(scores={"normal": 0.9, "pus": 0.1}), "scores: Value error, unknown class 'pus'"),
        (_milk(scores={"normal": 1.1}), "scores: Value error, each score must be 0 to 1"),
        (_milk(scores={"blood": -0.1}), "each score must be 0 to 1"),
        (_milk(camera_id="cam:1\n"), "camera_id: Value error"),
        ({k: v for k, v in _milk().items() if k != "result"}, "result: Field required"),
    ],
)
def test_malformed_records_are_rejected_with_a_reason(
    record: dict[str, Any], reason: str
) -> None:
    result = validate_record(0, record)
    assert isinstance(result, InvalidRecord), result
    assert reason in result.reason, result.reason
    assert result.reason.startswith(f"invalid {record['kind']}: ")


@pytest.mark.parametrize(
    "record",
    [
        _bcs(bcs=1.0, low=1.0, high=1.0, quality=0.0),
        _bcs(bcs=5.0, low=4.5, high=5.0, quality=1.0),
        {k: v for k, v in _bcs().items() if k not in ("animal_id", "frames", "details")},
        _milk(quarter=None, scores={}),
        {k: v for k, v in _milk().items() if k not in ("quarter", "animal_id", "scores")},
        _milk(result="clots", confidence=0.0, scores={"clots": 1.0, "normal": 0.0}),
    ],
)
def test_edges_and_optional_fields_are_accepted(record: dict[str, Any]) -> None:
    result = validate_record(0, record)
    assert isinstance(result, ValidRecord), result
    assert result.kind == record["kind"]


async def test_malformed_ones_rejected_over_http_the_good_ones_stored(
    central: CentralHandle, http: aiohttp.ClientSession, database_url: str,
) -> None:
    device = unique_device()
    good = [wire(body_condition(1)), wire(milk_check(1, result="blood"))]
    bad = [
        {**wire(body_condition(2)), "bcs": 3.9},
        {**wire(milk_check(2)), "result": "greenish"},
        {**wire(milk_check(3)), "quarter": "XX"},
    ]
    doc = batch_doc(device, 1, [*good, *bad, reading(1)])
    status, data, _ = await post(http, central, *signed(doc))
    assert status == 200
    assert statuses(data) == ["accepted", "accepted", "rejected", "rejected", "rejected",
                              "accepted"]
    reasons = [r["reason"] for r in data["results"][2:5]]
    assert reasons[0].startswith("invalid body_condition: ") and "interval" in reasons[0]
    assert "result" in reasons[1] and "quarter" in reasons[2]
    # Sent again: what was stored is a duplicate, what was refused is refused again.
    status, data, _ = await post(http, central, *signed(doc))
    assert statuses(data) == ["duplicate", "duplicate", "rejected", "rejected", "rejected",
                              "duplicate"]
    assert [r["record_id"] for r in
            await rows(database_url, "body_conditions", BCS_COLUMNS, device)] == [
        good[0]["record_id"]]
    assert [r["record_id"] for r in
            await rows(database_url, "milk_checks", MILK_COLUMNS, device)] == [
        good[1]["record_id"]]


# ----- migrations: a database made by the release before gains both tables


async def test_existing_central_databases_gain_both_tables(
    tmp_path: Path, pg_admin_db: str
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                 " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT 'then')")
    for version, name, ddl in store_sqlite.MIGRATIONS[:2]:
        conn.executescript(ddl)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                     (version, name))
    conn.commit()
    conn.close()
    with psycopg.connect(pg_admin_db, autocommit=True) as pg:
        pg.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                   " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for version, name, ddl in store_postgres.MIGRATIONS[:2]:
            pg.execute(ddl.encode())
            pg.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                       (version, name))
    for url in (f"sqlite:///{path}", pg_admin_db):
        opened = open_store(url)
        await opened.start()
        try:
            device = unique_device()
            meta = BatchMeta(device, "e1", 1, f"{device}:e1:1", "k1", 2, 0.0, True, 1)
            records = [validate_record(i, wire(item)) for i, item in
                       enumerate((body_condition(1), milk_check(1)))]
            assert all(isinstance(r, ValidRecord) for r in records)
            valid = [r for r in records if isinstance(r, ValidRecord)]
            result = await opened.ingest(meta, valid)
            assert [str(s) for s, _ in result.statuses] == ["accepted", "accepted"]
            again = await opened.ingest(
                BatchMeta(device, "e1", 2, f"{device}:e1:2", "k1", 2, 0.0, True, 1), valid)
            assert [str(s) for s, _ in again.statuses] == ["duplicate", "duplicate"]
        finally:
            await opened.close()
    assert [v for (v,) in sqlite3.connect(path).execute(
        "SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3, 4, 5]
    with psycopg.connect(pg_admin_db) as pg:
        versions = pg.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in versions.fetchall()] == [1, 2, 3, 4, 5, 6, 7]
        for table in ("body_conditions", "milk_checks"):
            uniques = pg.execute(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t"
                " ON t.oid = c.conrelid WHERE t.relname = %s AND c.contype = 'u'", (table,)
            ).fetchall()
            assert uniques == [("UNIQUE (device_id, record_id)",)], table
        indexes = {name for (name,) in pg.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN"
            " ('body_conditions', 'milk_checks')")}
        assert {"body_conditions_animal_time", "milk_checks_animal_time",
                "milk_checks_abnormal"} <= indexes


@pytest.fixture
def pg_admin_db() -> Iterator[str]:
    """An empty database of our own (the session one already has the new schema)."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            pass
    except psycopg.Error:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"dairy_bcs_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)))
