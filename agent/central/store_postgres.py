"""The central store on PostgreSQL (psycopg 3, async), in a schema an ERP can read.

Tables: ``gateways`` (one row per device), ``sequences`` (highest seq per device
and epoch), ``batches`` (every attempt, replays included), and one table per
record kind (``readings``, ``alerts``, ``events``, ``inferences``,
``identifications``, ``body_conditions``, ``milk_checks``), each with
UNIQUE(device_id, record_id). The view ``reading_values`` has one row per
reading and metric. Migrations are numbered, run under an advisory lock and
recorded in ``schema_migrations``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from agent.central.keys import KeyRow, KeyRuleError, keys_to_revoke
from agent.central.store import (
    STORED_OUTCOMES,
    BatchMeta,
    IngestResult,
    SeqOutcome,
    StoreUnavailable,
    decide,
    same_content,
)
from agent.central.validate import KINDS, ValidRecord
from agent.records.protocol import RecordStatus
from agent.records.types import RecordKind

log = logging.getLogger(__name__)

_STAMP_COLS = """
    wall_ts double precision NOT NULL,
    mono_ns bigint NOT NULL,
    boot_id text NOT NULL,
    clock_synced boolean NOT NULL,
    batch_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    extra jsonb NOT NULL DEFAULT '{}'::jsonb,
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        f"""
CREATE TABLE gateways (
    device_id text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    last_key_id text,
    last_batch_id text,
    last_clock_synced boolean
);
CREATE TABLE sequences (
    device_id text NOT NULL REFERENCES gateways (device_id),
    epoch text NOT NULL,
    highest_seq bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, epoch)
);
CREATE TABLE batches (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    epoch text NOT NULL,
    seq bigint NOT NULL,
    batch_id text NOT NULL,
    key_id text NOT NULL,
    outcome text NOT NULL,
    record_count integer NOT NULL,
    accepted integer NOT NULL DEFAULT 0,
    duplicate integer NOT NULL DEFAULT 0,
    rejected integer NOT NULL DEFAULT 0,
    sent_wall_ts double precision,
    clock_synced boolean,
    body_bytes integer,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batches_device_batch ON batches (device_id, batch_id);
CREATE TABLE readings (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    sensor_id text NOT NULL,
    firmware text NOT NULL,
    topic text NOT NULL DEFAULT '',
    animal_id text,
    source_ts double precision,
    msg_id text,
    "values" jsonb NOT NULL,
    raw jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    units jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    attributes jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE INDEX readings_sensor_time ON readings (device_id, sensor_id, wall_ts);
CREATE INDEX readings_animal_time ON readings (animal_id, wall_ts) WHERE animal_id IS NOT NULL;
CREATE TABLE alerts (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    rule text NOT NULL,
    severity text NOT NULL,
    state text NOT NULL,
    message text NOT NULL,
    sensor_id text,
    animal_id text,
    details jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    event text NOT NULL,
    detail text NOT NULL DEFAULT '',
    data jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE TABLE inferences (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    source_id text NOT NULL,
    animal_id text,
    latency_ms double precision,
    outputs jsonb NOT NULL,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE VIEW reading_values AS
SELECT r.device_id, r.record_id, r.sensor_id, r.firmware, r.animal_id,
       r.wall_ts, to_timestamp(r.wall_ts) AS wall_time, r.clock_synced,
       v.key AS metric, (v.value #>> '{{}}')::double precision AS value,
       r.units ->> v.key AS unit, (r.raw ->> v.key)::double precision AS raw_value,
       r.received_at
FROM readings r CROSS JOIN LATERAL jsonb_each(r."values") AS v;
""",
    ),
    (
        2,
        "identifications",
        f"""
CREATE TABLE identifications (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    camera_id text NOT NULL,
    visit_id text NOT NULL,
    status text NOT NULL,
    tag_number text,
    animal_id text,
    station text,
    rfid_eid text,
    rfid_agrees boolean,
    confidence double precision NOT NULL,
    started_wall_ts double precision NOT NULL,
    ended_wall_ts double precision NOT NULL,
    flags jsonb NOT NULL DEFAULT '[]'::jsonb,
    evidence jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    model_versions jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    crop_jpeg bytea,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE INDEX identifications_animal_time ON identifications (animal_id, ended_wall_ts)
    WHERE animal_id IS NOT NULL;
CREATE INDEX identifications_camera_time ON identifications (device_id, camera_id, ended_wall_ts);
CREATE INDEX identifications_to_check ON identifications (status, ended_wall_ts)
    WHERE status <> 'identified';
""",
    ),
    (
        3,
        "body conditions and milk checks",
        f"""
CREATE TABLE body_conditions (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    camera_id text NOT NULL,
    visit_id text NOT NULL,
    animal_id text,
    bcs double precision NOT NULL,
    low double precision NOT NULL,
    high double precision NOT NULL,
    quality double precision NOT NULL,
    frames integer NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    details jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE INDEX body_conditions_animal_time ON body_conditions (animal_id, wall_ts)
    WHERE animal_id IS NOT NULL;
CREATE INDEX body_conditions_camera_time ON body_conditions (device_id, camera_id, wall_ts);
CREATE TABLE milk_checks (
    id bigserial PRIMARY KEY,
    device_id text NOT NULL,
    record_id text NOT NULL,
    camera_id text NOT NULL,
    animal_id text,
    quarter text,
    result text NOT NULL,
    confidence double precision NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    scores jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    details jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE INDEX milk_checks_animal_time ON milk_checks (animal_id, wall_ts)
    WHERE animal_id IS NOT NULL;
CREATE INDEX milk_checks_camera_time ON milk_checks (device_id, camera_id, wall_ts);
CREATE INDEX milk_checks_abnormal ON milk_checks (result, wall_ts) WHERE result <> 'normal';
""",
    ),
    (
        4,
        "gateway keys and batch content digests",
        """
CREATE TABLE gateway_keys (
    key_id text PRIMARY KEY,
    device_id text NOT NULL,
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX gateway_keys_device ON gateway_keys (device_id);
ALTER TABLE batches ADD COLUMN content_sha256 text;
""",
    ),
    (
        5,
        "readings partitioned by month, exactly-once claims",
        """
DROP VIEW reading_values;
ALTER TABLE readings RENAME TO readings_v4;
ALTER TABLE readings_v4 RENAME CONSTRAINT readings_pkey TO readings_v4_pkey;
ALTER TABLE readings_v4 RENAME CONSTRAINT readings_device_id_record_id_key
    TO readings_v4_device_record_key;
ALTER INDEX readings_sensor_time RENAME TO readings_v4_sensor_time;
ALTER INDEX readings_animal_time RENAME TO readings_v4_animal_time;
ALTER SEQUENCE readings_id_seq OWNED BY NONE;
CREATE TABLE readings (
    id bigint NOT NULL DEFAULT nextval('readings_id_seq'),
    device_id text NOT NULL,
    record_id text NOT NULL,
    sensor_id text NOT NULL,
    firmware text NOT NULL,
    topic text NOT NULL DEFAULT '',
    animal_id text,
    source_ts double precision,
    msg_id text,
    "values" jsonb NOT NULL,
    raw jsonb NOT NULL DEFAULT '{}'::jsonb,
    units jsonb NOT NULL DEFAULT '{}'::jsonb,
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    wall_ts double precision NOT NULL,
    mono_ns bigint NOT NULL,
    boot_id text NOT NULL,
    clock_synced boolean NOT NULL,
    batch_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    extra jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (id, wall_ts)
) PARTITION BY RANGE (wall_ts);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;
CREATE TABLE reading_claims (
    device_id text NOT NULL,
    record_id text NOT NULL,
    wall_ts double precision NOT NULL,
    PRIMARY KEY (device_id, record_id)
);
CREATE INDEX reading_claims_time ON reading_claims (wall_ts);
CREATE FUNCTION dairy_reading_partition(month date) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    name text := format('readings_%s', to_char(month, 'YYYYMM'));
    lo double precision := extract(epoch FROM month::timestamp AT TIME ZONE 'UTC');
    hi double precision :=
        extract(epoch FROM (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%s) TO (%s)',
                       name, lo, hi);
    END IF;
    RETURN name;
END
$fn$;
SELECT dairy_reading_partition(m) FROM (
    SELECT DISTINCT date_trunc('month', to_timestamp(wall_ts) AT TIME ZONE 'UTC')::date AS m
    FROM readings_v4 WHERE wall_ts >= 946684800 AND wall_ts < 4102444800
) AS months;
SELECT dairy_reading_partition(date_trunc('month', now() AT TIME ZONE 'UTC')::date);
INSERT INTO readings SELECT id, device_id, record_id, sensor_id, firmware, topic, animal_id,
    source_ts, msg_id, "values", raw, units, attributes, wall_ts, mono_ns, boot_id,
    clock_synced, batch_id, received_at, extra FROM readings_v4;
INSERT INTO reading_claims SELECT device_id, record_id, wall_ts FROM readings_v4;
DROP TABLE readings_v4;
ALTER SEQUENCE readings_id_seq OWNED BY readings.id;
CREATE INDEX readings_sensor_time ON readings (device_id, sensor_id, wall_ts);
CREATE INDEX readings_animal_time ON readings (animal_id, wall_ts) WHERE animal_id IS NOT NULL;
CREATE INDEX readings_record ON readings (device_id, record_id);
CREATE VIEW reading_values AS
SELECT r.device_id, r.record_id, r.sensor_id, r.firmware, r.animal_id,
       r.wall_ts, to_timestamp(r.wall_ts) AS wall_time, r.clock_synced,
       v.key AS metric, (v.value #>> '{}')::double precision AS value,
       r.units ->> v.key AS unit, (r.raw ->> v.key)::double precision AS raw_value,
       r.received_at
FROM readings r CROSS JOIN LATERAL jsonb_each(r."values") AS v;
""",
    ),
    (
        6,
        "a month's new readings partition takes its rows from readings_default",
        """
CREATE OR REPLACE FUNCTION dairy_reading_partition(month date) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    name text := format('readings_%s', to_char(month, 'YYYYMM'));
    lo double precision := extract(epoch FROM month::timestamp AT TIME ZONE 'UTC');
    hi double precision :=
        extract(epoch FROM (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    -- Rows of this month may be in readings_default (stamped outside the window when
    -- they came, or their partition was dropped); a partition cannot be made over
    -- them, so they move into it: made detached, filled, then attached.
    LOCK TABLE readings_default IN EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM readings_default WHERE wall_ts >= lo AND wall_ts < hi) THEN
        EXECUTE format('CREATE TABLE %I (LIKE readings INCLUDING DEFAULTS)', name);
        EXECUTE format('WITH moved AS (DELETE FROM readings_default'
                       ' WHERE wall_ts >= %s AND wall_ts < %s RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved', lo, hi, name);
        EXECUTE format('ALTER TABLE readings ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       name, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%s) TO (%s)',
                       name, lo, hi);
    END IF;
    RETURN name;
END
$fn$;
""",
    ),
    (
        7,
        "versions each gateway runs, signed bundles published",
        """
CREATE TABLE gateway_versions (
    device_id text PRIMARY KEY,
    record_id text NOT NULL,
    models_bundle text,
    config_bundle text,
    models jsonb NOT NULL DEFAULT '{}'::jsonb,
    reported_wall_ts double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION dairy_gateway_versions() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO gateway_versions AS g (device_id, record_id, models_bundle, config_bundle,
                                       models, reported_wall_ts)
    VALUES (NEW.device_id, NEW.record_id, NEW.data->>'models_bundle',
            NEW.data->>'config_bundle', COALESCE(NEW.data->'models', '{}'::jsonb), NEW.wall_ts)
    ON CONFLICT (device_id) DO UPDATE SET record_id = excluded.record_id,
        models_bundle = excluded.models_bundle, config_bundle = excluded.config_bundle,
        models = excluded.models, reported_wall_ts = excluded.reported_wall_ts,
        received_at = now()
    WHERE excluded.reported_wall_ts >= g.reported_wall_ts;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER events_versions AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.event = 'versions') EXECUTE FUNCTION dairy_gateway_versions();
CREATE TABLE bundles (
    sha256 text PRIMARY KEY,
    kind text NOT NULL,
    version text NOT NULL,
    created text NOT NULL DEFAULT '',
    files jsonb NOT NULL DEFAULT '{}'::jsonb,
    added_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, version)
);
""",
    ),
]

# Readings go to a partition per month of their wall_ts. Partitions are made for
# months from PARTITION_PAST_DAYS ago to PARTITION_AHEAD_DAYS ahead of the
# receiver's clock; anything else (a gateway clock in 1970, a wild future stamp)
# goes to readings_default, so a sender cannot make the receiver create tables.
PARTITION_PAST_DAYS = 400
PARTITION_AHEAD_DAYS = 35
_UNIQUE_CLAIMS = "reading_claims"

# Any number is an arbitrary choice; it only has to be the same for every receiver.
_MIGRATION_LOCK = 7_412_001
_POOL_SIZE = 8
_CONNECT_TIMEOUT_S = 5


class _Pool:
    """A few reusable connections; a broken one is dropped and replaced on demand."""

    def __init__(self, url: str, password: str | None, size: int) -> None:
        self._url = url
        self._kwargs: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT_S, "autocommit": True}
        if password:
            self._kwargs["password"] = password
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._closed:
            raise StoreUnavailable("store closed")
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            finally:
                usable = not (conn.closed or conn.broken) and not self._closed
                if usable and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
        except psycopg.Error as err:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {err}") from err

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class PostgresStore:
    """CentralStore on PostgreSQL."""

    def __init__(self, url: str, password: str | None = None, pool_size: int = _POOL_SIZE) -> None:
        self._pool = _Pool(url, password, pool_size)
        self._inserts = {kind: _insert_sql(kind) for kind in KINDS}
        self._months: set[str] = set()  # readings partitions known to exist ("YYYY-MM")

    async def start(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, name, ddl in MIGRATIONS:
                if version in done:
                    continue
                await conn.execute(ddl.encode())  # bytes: run as a script, no parameters
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
                log.info("central schema migrated to version %d (%s)", version, name)
        now = time.time()
        await self._ensure_partitions({_month(now), _month(now + 32 * 86400)})

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def ingest(
        self,
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        rejected: int = 0,
        *,
        max_seq_advance: int | None = None,
    ) -> IngestResult:
        limit = max_seq_advance
        try:
            await self._ensure_partitions(_months_of(records) - self._months)
            return await self._ingest(meta, records, rejected, isolate=False, limit=limit)
        except (psycopg.DataError, psycopg.IntegrityError) as err:
            # Validation should have caught it; fall back to one savepoint per
            # record so the record the database refuses is rejected alone.
            log.warning("batch needs per-record isolation: %s", err)
            try:
                return await self._ingest(meta, records, rejected, isolate=True, limit=limit)
            except psycopg.Error as err2:
                raise StoreUnavailable(f"PostgreSQL: {err2}") from err2
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def _ingest(
        self,
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        rejected: int,
        isolate: bool,
        limit: int | None,
    ) -> IngestResult:
        async with self._pool.connection() as conn, conn.transaction():
            # The rows to lock (a sequence needs its gateway); made here only if missing,
            # and removed again below if this batch is refused.
            # Four statements, one round trip (pipeline mode); run in this order.
            async with conn.pipeline():
                if any(r.kind == RecordKind.READING for r in records):
                    # The session's staging table, made in the batch's own transaction
                    # when missing: a new session, one whose table a rolled-back batch
                    # took away, or a pooler (pgbouncer) that hands out another session.
                    await conn.execute(_STAGE_DDL)
                gateway_cur = await conn.execute(
                    "INSERT INTO gateways (device_id) VALUES (%s) ON CONFLICT DO NOTHING"
                    " RETURNING 1",
                    (meta.device_id,),
                )
                sequence_cur = await conn.execute(
                    "INSERT INTO sequences (device_id, epoch) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    (meta.device_id, meta.epoch),
                )
                # The lock that serialises batches of one (device, epoch): see store.py.
                lock_cur = await conn.execute(
                    "SELECT highest_seq FROM sequences WHERE device_id = %s AND epoch = %s"
                    " FOR UPDATE",
                    (meta.device_id, meta.epoch),
                )
                seen_cur = await conn.execute(
                    "SELECT content_sha256 FROM batches WHERE device_id = %s AND batch_id = %s"
                    " AND outcome = ANY(%s) ORDER BY id LIMIT 1",
                    (meta.device_id, meta.batch_id, list(STORED_OUTCOMES)),
                )
            new_gateway = await gateway_cur.fetchone() is not None
            new_sequence = await sequence_cur.fetchone() is not None
            row = await lock_cur.fetchone()
            highest = int(row[0]) if row else 0
            seen = await seen_cur.fetchone()
            same = True
            if seen is not None:
                known = same_content(seen[0], meta.content_sha256)
                if known is None:  # stored before digests: only if it stores nothing new
                    known = await self._all_stored(conn, meta.device_id, records)
                same = known
            outcome = decide(seen is not None, meta.seq, highest, max_advance=limit,
                             same_content=same)
            statuses: list[tuple[RecordStatus, str | None]] = []
            if outcome in (SeqOutcome.NEW, SeqOutcome.RESEND):
                # Only a stored batch updates the gateway (last_key_id tells an operator
                # that a rotation took); a refused one is only logged in batches.
                await conn.execute(
                    "UPDATE gateways SET last_seen = now(), last_key_id = %s,"
                    " last_batch_id = %s, last_clock_synced = %s WHERE device_id = %s",
                    (meta.key_id, meta.batch_id, meta.clock_synced, meta.device_id),
                )
                statuses = await self._insert_records(conn, meta, records, isolate)
            else:
                if new_sequence:
                    await conn.execute(
                        "DELETE FROM sequences WHERE device_id = %s AND epoch = %s",
                        (meta.device_id, meta.epoch),
                    )
                if new_gateway:
                    await conn.execute("DELETE FROM gateways WHERE device_id = %s",
                                       (meta.device_id,))
            counts = _count(statuses)
            async with conn.pipeline():  # the last two statements, one round trip
                if outcome is SeqOutcome.NEW:
                    highest = meta.seq
                    await conn.execute(
                        "UPDATE sequences SET highest_seq = %s, updated_at = now()"
                        " WHERE device_id = %s AND epoch = %s",
                        (highest, meta.device_id, meta.epoch),
                    )
                await conn.execute(
                    "INSERT INTO batches (device_id, epoch, seq, batch_id, key_id, outcome,"
                    " record_count, accepted, duplicate, rejected, sent_wall_ts, clock_synced,"
                    " body_bytes, content_sha256)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (meta.device_id, meta.epoch, meta.seq, meta.batch_id, meta.key_id,
                     str(outcome), meta.record_count, counts[RecordStatus.ACCEPTED],
                     counts[RecordStatus.DUPLICATE], counts[RecordStatus.REJECTED] + rejected,
                     meta.sent_wall_ts, meta.clock_synced, meta.body_bytes,
                     meta.content_sha256 or None),
                )
        return IngestResult(outcome, highest, statuses)

    async def _all_stored(
        self, conn: psycopg.AsyncConnection[Any], device_id: str,
        records: Sequence[ValidRecord],
    ) -> bool:
        """Whether every record is stored for ``device_id`` already (see store.same_content)."""
        by_table: dict[str, set[str]] = {}
        for record in records:
            # Readings are claimed in reading_claims (the partitioned table has no unique key).
            table = (
                "reading_claims" if record.kind == RecordKind.READING else KINDS[record.kind].table
            )
            by_table.setdefault(table, set()).add(record.record_id)
        for table, ids in by_table.items():
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE device_id = %s AND record_id = ANY(%s)")
                .format(sql.Identifier(table)),
                (device_id, list(ids)),
            )
            row = await cur.fetchone()
            if row is None or int(row[0]) != len(ids):
                return False
        return True

    async def _insert_records(
        self,
        conn: psycopg.AsyncConnection[Any],
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        isolate: bool,
    ) -> list[tuple[RecordStatus, str | None]]:
        statuses: list[tuple[RecordStatus, str | None]] = [
            (RecordStatus.DUPLICATE, None)
        ] * len(records)
        if isolate:
            for pos, record in enumerate(records):
                try:
                    async with conn.transaction():  # a savepoint
                        cur = await conn.execute(
                            self._inserts[record.kind], _params(meta, record)
                        )
                        inserted = await cur.fetchone() is not None
                except (psycopg.DataError, psycopg.IntegrityError) as err:
                    reason = f"store_refused: {type(err).__name__}"
                    statuses[pos] = (RecordStatus.REJECTED, reason)
                    continue
                if inserted:
                    statuses[pos] = (RecordStatus.ACCEPTED, None)
            return statuses
        by_kind: dict[str, list[int]] = {}
        for pos, record in enumerate(records):
            by_kind.setdefault(record.kind, []).append(pos)
        readings = by_kind.pop(RecordKind.READING, None)
        if readings:
            for pos in await self._copy_readings(conn, meta, records, readings):
                statuses[pos] = (RecordStatus.ACCEPTED, None)
        async with conn.cursor() as cur:
            # The other kinds come a few at a time: one statement per row is fine there.
            for kind, positions in by_kind.items():
                await cur.executemany(
                    self._inserts[kind],
                    [_params(meta, records[pos]) for pos in positions],
                    returning=True,
                )
                # One result set per row: a row back means inserted, none means conflict.
                for pos in positions:
                    if await cur.fetchone() is not None:
                        statuses[pos] = (RecordStatus.ACCEPTED, None)
                    cur.nextset()
        return statuses

    async def _copy_readings(
        self,
        conn: psycopg.AsyncConnection[Any],
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        positions: list[int],
    ) -> list[int]:
        """Bulk-load the batch's readings; the positions (in ``records``) stored now.

        COPY into a temporary staging table (this connection's own, emptied at
        commit), then one statement claims (device_id, record_id) and inserts the
        readings whose claim is new; the rest are duplicates. Same transaction,
        same sequence-row lock as before, so exactly-once is unchanged: only the
        round trips per row are gone (executemany spent most of the receiver's CPU).
        """
        async with conn.cursor() as cur:
            async with cur.copy(_STAGE_COPY) as copy:
                write = copy.write_row
                for pos in positions:
                    await write(_stage_row(pos, records[pos].row))
            await cur.execute(_STAGE_INSERT, (meta.device_id, meta.device_id, meta.batch_id))
            return [int(row[0]) for row in await cur.fetchall()]

    async def _ensure_partitions(self, months: set[str]) -> None:
        """Make the readings partitions of these months ("YYYY-MM") if they are missing.

        Each in a short transaction of its own, before the batch's, under an
        advisory lock (receivers may race for the same month). Rows of the month
        that went to readings_default move into the new partition (schema 6).
        """
        for month in sorted(months - self._months):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s, 1)", (_MIGRATION_LOCK,))
                    await conn.execute("SELECT dairy_reading_partition(%s::date)",
                                       (f"{month}-01",))
            except psycopg.errors.CheckViolation:
                # Should not happen since schema 6 (the rows are moved); the month's rows
                # then stay in readings_default, which is correct, only not partitioned.
                log.warning("readings of %s are in readings_default; no partition made for "
                            "that month", month)
            self._months.add(month)

    async def reading_partitions(self) -> list[tuple[str, float | None, float | None]]:
        """(name, from, to) of every readings partition, oldest first; default: (name, None, None)."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                    " JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'readings'::regclass ORDER BY c.relname"
                )
                rows = await cur.fetchall()
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err
        out: list[tuple[str, float | None, float | None]] = []
        for name, bound in rows:
            values = re.findall(r"'([-0-9.e+]+)'", bound or "")
            lo, hi = (float(values[0]), float(values[1])) if len(values) == 2 else (None, None)
            out.append((str(name), lo, hi))
        return sorted(out, key=lambda p: (p[1] is None, p[1] or 0.0))

    async def drop_readings_before(self, cutoff_ts: float, dry_run: bool = False) -> list[str]:
        """Drop every monthly readings partition that ends at or before ``cutoff_ts``.

        Their claims go with them (a record that old sent again would be stored
        again). readings_default (clock-less gateways' 1970 stamps) is never touched.
        """
        dropped: list[str] = []
        for name, lo, hi in await self.reading_partitions():
            if lo is None or hi is None or hi > cutoff_ts:
                continue
            dropped.append(name)
            if dry_run:
                continue
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    await conn.execute(
                        "DELETE FROM reading_claims WHERE wall_ts >= %s AND wall_ts < %s",
                        (lo, hi),
                    )
                    await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            except psycopg.Error as err:
                raise StoreUnavailable(f"PostgreSQL: {err}") from err
            self._months.discard(name.removeprefix("readings_")[:4] + "-"
                                 + name.removeprefix("readings_")[4:])
            log.info("dropped readings partition %s", name)
        return dropped

    async def gateway_versions(self) -> list[dict[str, Any]]:
        """The latest "versions" event of each gateway (kept by a trigger on events)."""
        query = ("SELECT v.device_id, v.models_bundle, v.config_bundle, v.models,"
                 " v.reported_wall_ts, v.received_at::text, g.last_seen::text"
                 " FROM gateway_versions v LEFT JOIN gateways g USING (device_id)"
                 " ORDER BY v.device_id")
        names = ("device_id", "models_bundle", "config_bundle", "models", "reported_wall_ts",
                 "received_at", "last_seen")
        return [dict(zip(names, row, strict=True)) for row in await self._fetch(query)]

    async def add_bundle(self, sha256: str, kind: str, version: str, created: str,
                         files: dict[str, str]) -> bool:
        """Record a verified bundle; False when that kind and version (or file) is known."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO bundles (sha256, kind, version, created, files)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (sha256, kind, version, created, json.dumps(files, sort_keys=True)))
                return cur.rowcount == 1
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def bundles(self) -> list[dict[str, Any]]:
        query = ("SELECT sha256, kind, version, created, added_at::text FROM bundles"
                 " ORDER BY kind, added_at, version")
        names = ("sha256", "kind", "version", "created", "added_at")
        return [dict(zip(names, row, strict=True)) for row in await self._fetch(query)]

    async def _fetch(self, query: str) -> list[tuple[Any, ...]]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query)
                return list(await cur.fetchall())
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def key_rows(self, include_revoked: bool = False) -> list[KeyRow]:
        query = (
            "SELECT key_id, device_id, secret, created_at::text, revoked_at::text"
            " FROM gateway_keys"
            + ("" if include_revoked else " WHERE revoked_at IS NULL")
            + " ORDER BY created_at, key_id"
        )
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query)
                return [KeyRow(*row) for row in await cur.fetchall()]
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def add_key(self, device_id: str, key_id: str, secret: str,
                      *, rotate: bool = False) -> list[str]:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # One key change per gateway at a time, across every receiver and CLI.
                await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                                   (_MIGRATION_LOCK, device_id))
                cur = await conn.execute("SELECT 1 FROM gateway_keys WHERE key_id = %s",
                                         (key_id,))
                if await cur.fetchone() is not None:
                    raise KeyRuleError(f"key id {key_id} exists already; pick another")
                cur = await conn.execute(
                    "SELECT key_id FROM gateway_keys WHERE device_id = %s"
                    " AND revoked_at IS NULL ORDER BY created_at, key_id",
                    (device_id,),
                )
                active = [row[0] for row in await cur.fetchall()]
                revoked = keys_to_revoke(device_id, active, rotate)
                if revoked:
                    await conn.execute(
                        "UPDATE gateway_keys SET revoked_at = now() WHERE key_id = ANY(%s)",
                        (revoked,),
                    )
                await conn.execute(
                    "INSERT INTO gateway_keys (key_id, device_id, secret) VALUES (%s, %s, %s)",
                    (key_id, device_id, secret),
                )
                return revoked
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def revoke_key(self, key_id: str) -> bool:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "UPDATE gateway_keys SET revoked_at = now()"
                    " WHERE key_id = %s AND revoked_at IS NULL",
                    (key_id,),
                )
                return cur.rowcount == 1
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err

    async def stats(self) -> dict[str, Any]:
        try:
            async with self._pool.connection() as conn:
                devices: dict[str, dict[str, int]] = {}
                for kind, spec in KINDS.items():
                    query = sql.SQL(
                        "SELECT device_id, count(*) FROM {} GROUP BY device_id"
                    ).format(sql.Identifier(spec.table))
                    cur = await conn.execute(query)
                    for device_id, count in await cur.fetchall():
                        devices.setdefault(device_id, _zero())[str(kind)] = int(count)
                cur = await conn.execute(
                    "SELECT device_id, outcome, count(*) FROM batches GROUP BY device_id, outcome"
                )
                for device_id, outcome, count in await cur.fetchall():
                    devices.setdefault(device_id, _zero())[f"batches_{outcome}"] = int(count)
        except psycopg.Error as err:
            raise StoreUnavailable(f"PostgreSQL: {err}") from err
        return {"devices": devices}


def _month(ts: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(ts))


def _months_of(records: Sequence[ValidRecord]) -> set[str]:
    """The months of the batch's readings that should have a partition of their own."""
    now = time.time()
    low, high = now - PARTITION_PAST_DAYS * 86400, now + PARTITION_AHEAD_DAYS * 86400
    # A batch spans a few days at most: the month of each distinct day, not of each row.
    days = {
        ts // 86400 for r in records
        if r.kind == RecordKind.READING and low <= (ts := r.row["wall_ts"]) < high
    }
    return {_month(day * 86400) for day in days}


def _zero() -> dict[str, int]:
    return {str(kind): 0 for kind in KINDS}


# The SQL type of each readings column, for the typed placeholders of _insert_reading_sql.
_READING_TYPES = {
    "device_id": "text", "batch_id": "text", "record_id": "text", "sensor_id": "text",
    "firmware": "text", "topic": "text", "animal_id": "text", "wall_ts": "double precision",
    "mono_ns": "bigint", "boot_id": "text", "clock_synced": "boolean",
    "source_ts": "double precision", "msg_id": "text", "values": "jsonb", "raw": "jsonb",
    "units": "jsonb", "attributes": "jsonb", "extra": "jsonb",
}


def _insert_reading_sql() -> sql.Composed:
    """Claim (device_id, record_id), and insert the reading only if the claim is new.

    The partitioned readings table cannot hold UNIQUE (device_id, record_id)
    (a unique key must contain the partition key), so the claim table holds it;
    both inserts are one statement, so a row back means stored now, none a duplicate.
    """
    spec = KINDS[RecordKind.READING]
    columns = ("device_id", "batch_id", *spec.columns)
    return sql.SQL(
        "WITH claim AS (INSERT INTO reading_claims (device_id, record_id, wall_ts)"
        " VALUES (%s, %s, %s) ON CONFLICT (device_id, record_id) DO NOTHING RETURNING 1)"
        " INSERT INTO readings ({columns}) SELECT {values} WHERE EXISTS (SELECT 1 FROM claim)"
        " RETURNING id"
    ).format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        values=sql.SQL(", ").join(
            sql.SQL("%s::{}").format(sql.SQL(_READING_TYPES[c])) for c in columns
        ),
    )


# The readings staging table: each row's position in the batch, the plain
# reading columns, and the JSON ones as one array (one encoding per row, not
# five); device_id and batch_id are the batch's, given once. Temporary (per
# session, so receivers and connections never share one) and emptied at every
# commit or rollback of the batch's transaction; "IF NOT EXISTS" only looks it up
# when it is there (and PostgreSQL sends a notice).
_READING_COLUMNS = KINDS[RecordKind.READING].columns
_STAGE_JSON = tuple(c for c in _READING_COLUMNS if c in KINDS[RecordKind.READING].json_columns)
_STAGE_PLAIN = tuple(c for c in _READING_COLUMNS if c not in _STAGE_JSON)
_STAGE_DDL = sql.SQL(
    "CREATE TEMPORARY TABLE IF NOT EXISTS dairy_reading_stage"
    " (pos integer NOT NULL, {}, docs jsonb NOT NULL) ON COMMIT DELETE ROWS"
).format(sql.SQL(", ").join(
    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_READING_TYPES[c])) for c in _STAGE_PLAIN
))
_STAGE_COPY = sql.SQL("COPY dairy_reading_stage (pos, {}, docs) FROM STDIN").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in _STAGE_PLAIN)
)
# Claims in record-id order (two transactions claiming overlapping ids take their
# locks in the same order); a record id twice in one batch: the first one counts,
# as with one INSERT per row. A data-modifying WITH runs whether or not its
# result is read; its rows go in batch order, so ids follow the batch.
_STAGE_INSERT = sql.SQL(
    "WITH claimed AS ("
    " INSERT INTO reading_claims (device_id, record_id, wall_ts)"
    " SELECT %s, record_id, wall_ts FROM dairy_reading_stage ORDER BY record_id, pos"
    " ON CONFLICT (device_id, record_id) DO NOTHING RETURNING record_id),"
    " firsts AS (SELECT min(s.pos) AS pos FROM dairy_reading_stage s"
    " JOIN claimed c USING (record_id) GROUP BY s.record_id),"
    " stored AS (INSERT INTO readings (device_id, batch_id, {columns})"
    " SELECT %s, %s, {values} FROM dairy_reading_stage s JOIN firsts f USING (pos)"
    " ORDER BY s.pos RETURNING 1)"
    " SELECT pos FROM firsts"
).format(
    columns=sql.SQL(", ").join(sql.Identifier(c) for c in (*_STAGE_PLAIN, *_STAGE_JSON)),
    values=sql.SQL(", ").join([
        *(sql.Identifier("s", c) for c in _STAGE_PLAIN),
        *(sql.SQL("s.docs -> {}").format(sql.Literal(i)) for i in range(len(_STAGE_JSON))),
    ]),
)


def _stage_row(pos: int, row: dict[str, Any]) -> list[Any]:
    """One COPY row: the position, the plain columns, then the JSON ones in one array."""
    out: list[Any] = [pos]
    out.extend(row[c] for c in _STAGE_PLAIN)
    out.append(_dumps([row[c] for c in _STAGE_JSON]))
    return out


def _insert_sql(kind: str) -> sql.Composed:
    if kind == RecordKind.READING:
        return _insert_reading_sql()
    spec = KINDS[kind]
    columns = ("device_id", "batch_id", *spec.columns)
    return sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES ({values})"
        " ON CONFLICT (device_id, record_id) DO NOTHING RETURNING id"
    ).format(
        table=sql.Identifier(spec.table),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )


def _params(meta: BatchMeta, record: ValidRecord) -> list[Any]:
    spec = KINDS[record.kind]
    params: list[Any] = [meta.device_id, meta.batch_id]
    if record.kind == RecordKind.READING:  # the claim first (see _insert_reading_sql)
        params = [meta.device_id, record.record_id, record.row["wall_ts"], *params]
    for column in spec.columns:
        value = record.row[column]
        if column in spec.json_columns:
            value = Jsonb(value, dumps=_dumps)
        params.append(value)
    return params


# Made once: json.dumps with options makes a new encoder on every call.
_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _count(statuses: list[tuple[RecordStatus, str | None]]) -> dict[RecordStatus, int]:
    counts = dict.fromkeys(RecordStatus, 0)
    for status, _ in statuses:
        counts[status] += 1
    return counts
