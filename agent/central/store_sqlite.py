"""The central store on SQLite, for the demo and laptops: same tables and rules.

One connection, used by one thread at a time under a lock, every batch inside
``BEGIN IMMEDIATE`` so the sequence check and the inserts are one atomic step.
JSON columns hold text; the ``reading_values`` view uses ``json_each``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

log = logging.getLogger(__name__)

_STAMP_COLS = """
    wall_ts REAL NOT NULL,
    mono_ns INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    clock_synced INTEGER NOT NULL,
    batch_id TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    extra TEXT NOT NULL DEFAULT '{}',
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        f"""
CREATE TABLE gateways (
    device_id TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_key_id TEXT,
    last_batch_id TEXT,
    last_clock_synced INTEGER
);
CREATE TABLE sequences (
    device_id TEXT NOT NULL REFERENCES gateways (device_id),
    epoch TEXT NOT NULL,
    highest_seq INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (device_id, epoch)
);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    batch_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    accepted INTEGER NOT NULL DEFAULT 0,
    duplicate INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    sent_wall_ts REAL,
    clock_synced INTEGER,
    body_bytes INTEGER,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX batches_device_batch ON batches (device_id, batch_id);
CREATE TABLE readings (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    firmware TEXT NOT NULL,
    topic TEXT NOT NULL DEFAULT '',
    animal_id TEXT,
    source_ts REAL,
    msg_id TEXT,
    "values" TEXT NOT NULL,
    raw TEXT NOT NULL DEFAULT '{{}}',
    units TEXT NOT NULL DEFAULT '{{}}',
    attributes TEXT NOT NULL DEFAULT '{{}}',
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE INDEX readings_sensor_time ON readings (device_id, sensor_id, wall_ts);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    sensor_id TEXT,
    animal_id TEXT,
    details TEXT NOT NULL DEFAULT '{{}}',
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{{}}',
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE TABLE inferences (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    source_id TEXT NOT NULL,
    animal_id TEXT,
    latency_ms REAL,
    outputs TEXT NOT NULL,
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE VIEW reading_values AS
SELECT r.device_id, r.record_id, r.sensor_id, r.firmware, r.animal_id,
       r.wall_ts, r.clock_synced, v.key AS metric, v.value AS value,
       json_extract(r.units, '$."' || v.key || '"') AS unit, r.received_at
FROM readings r, json_each(r."values") AS v;
""",
    ),
    (
        2,
        "identifications",
        f"""
CREATE TABLE identifications (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    status TEXT NOT NULL,
    tag_number TEXT,
    animal_id TEXT,
    station TEXT,
    rfid_eid TEXT,
    rfid_agrees INTEGER,
    confidence REAL NOT NULL,
    started_wall_ts REAL NOT NULL,
    ended_wall_ts REAL NOT NULL,
    flags TEXT NOT NULL DEFAULT '[]',
    evidence TEXT NOT NULL DEFAULT '{{}}',
    model_versions TEXT NOT NULL DEFAULT '{{}}',
    crop_jpeg BLOB,
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
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    animal_id TEXT,
    bcs REAL NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    quality REAL NOT NULL,
    frames INTEGER NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{{}}',
    {_STAMP_COLS}
    UNIQUE (device_id, record_id)
);
CREATE INDEX body_conditions_animal_time ON body_conditions (animal_id, wall_ts)
    WHERE animal_id IS NOT NULL;
CREATE INDEX body_conditions_camera_time ON body_conditions (device_id, camera_id, wall_ts);
CREATE TABLE milk_checks (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    animal_id TEXT,
    quarter TEXT,
    result TEXT NOT NULL,
    confidence REAL NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    scores TEXT NOT NULL DEFAULT '{{}}',
    details TEXT NOT NULL DEFAULT '{{}}',
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
    key_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at TEXT
);
CREATE INDEX gateway_keys_device ON gateway_keys (device_id);
ALTER TABLE batches ADD COLUMN content_sha256 TEXT;
""",
    ),
    (
        5,
        "versions each gateway runs, signed bundles published",
        """
CREATE TABLE gateway_versions (
    device_id TEXT PRIMARY KEY,
    record_id TEXT NOT NULL,
    models_bundle TEXT,
    config_bundle TEXT,
    models TEXT NOT NULL DEFAULT '{}',
    reported_wall_ts REAL NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TRIGGER events_versions AFTER INSERT ON events WHEN NEW.event = 'versions'
BEGIN
    INSERT INTO gateway_versions (device_id, record_id, models_bundle, config_bundle, models,
                                  reported_wall_ts)
    VALUES (NEW.device_id, NEW.record_id, json_extract(NEW.data, '$.models_bundle'),
            json_extract(NEW.data, '$.config_bundle'),
            COALESCE(json_extract(NEW.data, '$.models'), '{}'), NEW.wall_ts)
    ON CONFLICT (device_id) DO UPDATE SET record_id = excluded.record_id,
        models_bundle = excluded.models_bundle, config_bundle = excluded.config_bundle,
        models = excluded.models, reported_wall_ts = excluded.reported_wall_ts,
        received_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE excluded.reported_wall_ts >= gateway_versions.reported_wall_ts;
END;
CREATE TABLE bundles (
    sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT '',
    files TEXT NOT NULL DEFAULT '{}',
    added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (kind, version)
);
""",
    ),
]


class SqliteStore:
    """CentralStore on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._inserts = {kind: _insert_sql(kind) for kind in KINDS}

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
            conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            with self._lock:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at TEXT NOT NULL"
                    " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
                )
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for version, name, ddl in MIGRATIONS:
                    if version in done:
                        continue
                    for statement in _statements(ddl):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                        (version, name),
                    )
                conn.execute("COMMIT")
            self._conn = conn
        except sqlite3.Error as err:
            raise StoreUnavailable(f"SQLite {self._path}: {err}") from err

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def ping(self) -> None:
        await asyncio.to_thread(self._run, lambda conn: conn.execute("SELECT 1").fetchone())

    async def ingest(
        self,
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        rejected: int = 0,
        *,
        max_seq_advance: int | None = None,
    ) -> IngestResult:
        return await asyncio.to_thread(
            self._run, self._ingest, meta, records, rejected, max_seq_advance
        )

    async def key_rows(self, include_revoked: bool = False) -> list[KeyRow]:
        query = (
            "SELECT key_id, device_id, secret, created_at, revoked_at FROM gateway_keys"
            + ("" if include_revoked else " WHERE revoked_at IS NULL")
            + " ORDER BY created_at, key_id"
        )
        rows = await asyncio.to_thread(
            self._run, lambda conn: conn.execute(query).fetchall()
        )
        return [KeyRow(*row) for row in rows]

    async def add_key(self, device_id: str, key_id: str, secret: str,
                      *, rotate: bool = False) -> list[str]:
        result: list[str] = await asyncio.to_thread(
            self._run, self._add_key, device_id, key_id, secret, rotate
        )
        return result

    def _add_key(self, conn: sqlite3.Connection, device_id: str, key_id: str, secret: str,
                 rotate: bool) -> list[str]:
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("SELECT 1 FROM gateway_keys WHERE key_id = ?", (key_id,)).fetchone():
            raise KeyRuleError(f"key id {key_id} exists already; pick another")
        active = [row[0] for row in conn.execute(
            "SELECT key_id FROM gateway_keys WHERE device_id = ? AND revoked_at IS NULL"
            " ORDER BY created_at, key_id", (device_id,))]
        revoked = keys_to_revoke(device_id, active, rotate)
        for old in revoked:
            conn.execute(
                "UPDATE gateway_keys SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE key_id = ?", (old,))
        conn.execute("INSERT INTO gateway_keys (key_id, device_id, secret) VALUES (?, ?, ?)",
                     (key_id, device_id, secret))
        conn.execute("COMMIT")
        return revoked

    async def revoke_key(self, key_id: str) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE gateway_keys SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE key_id = ? AND revoked_at IS NULL", (key_id,))
            return cur.rowcount == 1

        done: bool = await asyncio.to_thread(self._run, revoke)
        return done

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._run, self._stats)

    async def gateway_versions(self) -> list[dict[str, Any]]:
        """The latest "versions" event of each gateway (kept by a trigger on events)."""
        def fetch(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT v.device_id, v.models_bundle, v.config_bundle, v.models,"
                " v.reported_wall_ts, v.received_at, g.last_seen FROM gateway_versions v"
                " LEFT JOIN gateways g USING (device_id) ORDER BY v.device_id").fetchall()
            return [{"device_id": r[0], "models_bundle": r[1], "config_bundle": r[2],
                     "models": json.loads(r[3]), "reported_wall_ts": r[4],
                     "received_at": r[5], "last_seen": r[6]} for r in rows]

        result: list[dict[str, Any]] = await asyncio.to_thread(self._run, fetch)
        return result

    async def add_bundle(self, sha256: str, kind: str, version: str, created: str,
                         files: dict[str, str]) -> bool:
        """Record a verified bundle; False when that kind and version (or file) is known."""
        def add(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO bundles (sha256, kind, version, created, files)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (sha256, kind, version, created, json.dumps(files, sort_keys=True)))
            return cur.rowcount == 1

        done: bool = await asyncio.to_thread(self._run, add)
        return done

    async def bundles(self) -> list[dict[str, Any]]:
        def fetch(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute("SELECT sha256, kind, version, created, added_at FROM bundles"
                                " ORDER BY kind, added_at, version").fetchall()
            return [dict(zip(("sha256", "kind", "version", "created", "added_at"), r,
                             strict=True)) for r in rows]

        result: list[dict[str, Any]] = await asyncio.to_thread(self._run, fetch)
        return result

    def _run(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._conn is None:
                raise StoreUnavailable("store closed")
            try:
                return fn(self._conn, *args)
            except sqlite3.Error as err:
                raise StoreUnavailable(f"SQLite: {err}") from err
            finally:
                # Whatever failed, never leave the one connection inside a transaction.
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.warning("SQLite rollback failed", exc_info=True)

    def _ingest(
        self,
        conn: sqlite3.Connection,
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        rejected: int,
        limit: int | None = None,
    ) -> IngestResult:
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock: the sequence check is atomic
        row = conn.execute(
            "SELECT highest_seq FROM sequences WHERE device_id = ? AND epoch = ?",
            (meta.device_id, meta.epoch),
        ).fetchone()
        highest = int(row[0]) if row else 0
        seen = conn.execute(
            "SELECT content_sha256 FROM batches WHERE device_id = ? AND batch_id = ?"
            " AND outcome IN (?, ?) ORDER BY id LIMIT 1",
            (meta.device_id, meta.batch_id, *STORED_OUTCOMES),
        ).fetchone()
        same = True
        if seen is not None:
            known = same_content(seen[0], meta.content_sha256)
            same = _all_stored(conn, meta.device_id, records) if known is None else known
        outcome = decide(seen is not None, meta.seq, highest, max_advance=limit,
                         same_content=same)
        statuses: list[tuple[RecordStatus, str | None]] = []
        if outcome in (SeqOutcome.NEW, SeqOutcome.RESEND):
            # Only a stored batch updates the gateway (last_key_id tells an operator that a
            # rotation took) and opens a sequence; a refused one is only logged in batches.
            conn.execute(
                "INSERT INTO gateways (device_id, last_key_id, last_batch_id, last_clock_synced)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " last_seen = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
                " last_key_id = excluded.last_key_id, last_batch_id = excluded.last_batch_id,"
                " last_clock_synced = excluded.last_clock_synced",
                (meta.device_id, meta.key_id, meta.batch_id, meta.clock_synced),
            )
            conn.execute(
                "INSERT INTO sequences (device_id, epoch) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (meta.device_id, meta.epoch),
            )
            for record in records:
                try:
                    cur = conn.execute(self._inserts[record.kind], _params(meta, record))
                except (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError) as err:
                    statuses.append((RecordStatus.REJECTED, f"store_refused: {type(err).__name__}"))
                    continue
                status = RecordStatus.ACCEPTED if cur.rowcount == 1 else RecordStatus.DUPLICATE
                statuses.append((status, None))
        if outcome is SeqOutcome.NEW:
            highest = meta.seq
            conn.execute(
                "UPDATE sequences SET highest_seq = ?,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE device_id = ? AND epoch = ?",
                (highest, meta.device_id, meta.epoch),
            )
        counts = dict.fromkeys(RecordStatus, 0)
        for status, _ in statuses:
            counts[status] += 1
        conn.execute(
            "INSERT INTO batches (device_id, epoch, seq, batch_id, key_id, outcome,"
            " record_count, accepted, duplicate, rejected, sent_wall_ts, clock_synced,"
            " body_bytes, content_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (meta.device_id, meta.epoch, meta.seq, meta.batch_id, meta.key_id, str(outcome),
             meta.record_count, counts[RecordStatus.ACCEPTED], counts[RecordStatus.DUPLICATE],
             counts[RecordStatus.REJECTED] + rejected, meta.sent_wall_ts, meta.clock_synced,
             meta.body_bytes, meta.content_sha256 or None),
        )
        conn.execute("COMMIT")
        return IngestResult(outcome, highest, statuses)

    def _stats(self, conn: sqlite3.Connection) -> dict[str, Any]:
        devices: dict[str, dict[str, int]] = {}
        for kind, spec in KINDS.items():
            # The table name comes from our own constant map, never from input.
            query = f"SELECT device_id, count(*) FROM {spec.table} GROUP BY device_id"
            for device_id, count in conn.execute(query):
                devices.setdefault(device_id, _zero())[str(kind)] = int(count)
        for device_id, outcome, count in conn.execute(
            "SELECT device_id, outcome, count(*) FROM batches GROUP BY device_id, outcome"
        ):
            devices.setdefault(device_id, _zero())[f"batches_{outcome}"] = int(count)
        return {"devices": devices}


def _zero() -> dict[str, int]:
    return {str(kind): 0 for kind in KINDS}


def _statements(script: str) -> list[str]:
    """The DDL's statements; a trigger's body (semicolons inside) stays whole."""
    out: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


def _insert_sql(kind: str) -> str:
    spec = KINDS[kind]
    columns = ("device_id", "batch_id", *spec.columns)
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    return (
        f"INSERT INTO {spec.table} ({names}) VALUES ({marks})"
        " ON CONFLICT (device_id, record_id) DO NOTHING"
    )


def _params(meta: BatchMeta, record: ValidRecord) -> list[Any]:
    spec = KINDS[record.kind]
    params: list[Any] = [meta.device_id, meta.batch_id]
    for column in spec.columns:
        value = record.row[column]
        if column in spec.json_columns:
            value = json.dumps(value, allow_nan=False, separators=(",", ":"))
        params.append(value)
    return params


def _all_stored(conn: sqlite3.Connection, device_id: str, records: Sequence[ValidRecord]) -> bool:
    """Whether every record is stored for ``device_id`` already (see store.same_content)."""
    by_table: dict[str, set[str]] = {}
    for record in records:
        by_table.setdefault(KINDS[record.kind].table, set()).add(record.record_id)
    for table, ids in by_table.items():
        todo = sorted(ids)
        for start in range(0, len(todo), 500):  # within SQLite's bound-variable limit
            chunk = todo[start : start + 500]
            row = conn.execute(  # the table name comes from KINDS, never from the batch
                f"SELECT count(*) FROM {table} WHERE device_id = ?"
                f" AND record_id IN ({', '.join('?' * len(chunk))})",
                (device_id, *chunk),
            ).fetchone()
            if row is None or int(row[0]) != len(chunk):
                return False
    return True
