"""Buffer schema migrations: named, registered functions, each run once.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with
the row that records it, so a crash leaves it either fully applied or not at
all (the sqlite-utils migrations pattern).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []

# The tables that are uploaded, in priority order (the outbox's lanes, alerts first).
# Identifications come after alerts and events (what staff and the agent must hear
# of first) and before inferences and readings: one record per visit of a cow, a
# few hundred a day, small unless a review crop rides along, and the product the
# ERP waits for, so a backlog of readings after an outage must not hold them back.
# Milk checks and body conditions follow identifications for the same reasons (one
# record per sample or visit, a few hundred bytes, the ERP's product), milk checks
# first: a check that found blood, colostrum or clots is about milk that must not
# reach the tank, and the dairy acts on it within the milking, while a body
# condition score is a trend over weeks that loses nothing by waiting a few batches.
SYNC_TABLES: tuple[str, ...] = ("alerts", "events", "identifications", "milk_checks",
                                "body_conditions", "inferences", "readings")
KIND_TABLE = {"alert": "alerts", "event": "events", "identification": "identifications",
              "milk_check": "milk_checks", "body_condition": "body_conditions",
              "inference": "inferences", "reading": "readings"}
# The tables 0001 and 0002 created: shipped migrations must never change what they do.
_V1_TABLES: tuple[str, ...] = ("alerts", "events", "inferences", "readings")

# synced: 0 waiting, 1 answered accepted/duplicate, -1 moved to dead_letter.
SYNCED_DEAD = -1


def migration(name: str) -> Callable[[Migration], Migration]:
    """Register ``fn`` under ``name``; names are permanent once shipped."""

    def register(fn: Migration) -> Migration:
        if any(n == name for n, _ in MIGRATIONS):
            raise ValueError(f"duplicate migration {name}")
        MIGRATIONS.append((name, fn))
        return fn

    return register


@migration("0001_initial")
def _initial(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,)
    )
    for table in _V1_TABLES:
        # Table names come from the constant above, never from input.
        conn.execute(
            f"""CREATE TABLE {table} (
                id INTEGER PRIMARY KEY,
                record_id TEXT NOT NULL UNIQUE,
                wall_ts REAL NOT NULL,
                mono_ns INTEGER NOT NULL,
                body TEXT NOT NULL,
                size INTEGER NOT NULL,
                synced INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT
            )"""
        )
        # Partial index: the outbox query stays cheap however many synced rows
        # are kept for retention.
        conn.execute(f"CREATE INDEX {table}_unsynced ON {table} (id) WHERE synced = 0")
    conn.execute(
        """CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            wall_ts REAL NOT NULL,
            mono_ns INTEGER NOT NULL,
            boot_id TEXT NOT NULL,
            clock_synced INTEGER NOT NULL,
            size INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX quarantine_reason ON quarantine (reason)")
    conn.execute(
        """CREATE TABLE dead_letter (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            record_id TEXT NOT NULL,
            body TEXT NOT NULL,
            reason TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            wall_ts REAL NOT NULL,
            UNIQUE (kind, record_id)
        )"""
    )
    conn.execute("CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE sensor_latest (
            sensor_id TEXT PRIMARY KEY,
            record_id TEXT NOT NULL,
            firmware TEXT NOT NULL,
            topic TEXT NOT NULL,
            animal_id TEXT,
            values_json TEXT NOT NULL,
            wall_ts REAL NOT NULL,
            mono_ns INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL,
            count INTEGER NOT NULL DEFAULT 1
        )"""
    )


@migration("0002_time_and_space")
def _time_and_space(conn: sqlite3.Connection) -> None:
    # Clock columns (R6) so time correction and retention can use them in SQL,
    # backfilled from the stored bodies.
    for table in _V1_TABLES:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''")
        conn.execute(f"ALTER TABLE {table} ADD COLUMN clock_synced INTEGER NOT NULL DEFAULT 1")
        conn.execute(f"ALTER TABLE {table} ADD COLUMN wall_corrected INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            f"""UPDATE {table} SET
                boot_id = COALESCE(json_extract(body, '$.boot_id'), ''),
                clock_synced = COALESCE(json_extract(body, '$.clock_synced'), 1)"""
        )
        # Eviction walks synced rows oldest first; retention sums their size.
        conn.execute(f"CREATE INDEX {table}_done ON {table} (id, size) WHERE synced != 0")
        conn.execute(
            f"CREATE INDEX {table}_clock ON {table} (boot_id) "
            "WHERE clock_synced = 0 AND wall_corrected = 0"
        )
    conn.execute(
        "ALTER TABLE quarantine ADD COLUMN wall_corrected INTEGER NOT NULL DEFAULT 0"
    )
    # One row per drop action (not per record): what was dropped and why.
    conn.execute(
        """CREATE TABLE drops (
            id INTEGER PRIMARY KEY,
            reason TEXT NOT NULL,
            kind TEXT NOT NULL,
            count INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            first_record_id TEXT,
            last_record_id TEXT,
            wall_ts REAL NOT NULL,
            mono_ns INTEGER NOT NULL,
            boot_id TEXT NOT NULL
        )"""
    )


@migration("0003_detector_state")
def _detector_state(conn: sqlite3.Connection) -> None:
    # Learnt baselines (anomaly detectors per stream, rule and alert state), so a
    # restart resumes instead of relearning for days. Not synced; not counted
    # against the buffer cap beyond its pages.
    conn.execute(
        """CREATE TABLE detector_state (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            saved_mono_ns INTEGER NOT NULL,
            boot_id TEXT NOT NULL
        )"""
    )


@migration("0004_latest_boot")
def _latest_boot(conn: sqlite3.Connection) -> None:
    # Monotonic time restarts at boot: "newer" and "age" need the boot id too.
    conn.execute("ALTER TABLE sensor_latest ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''")


@migration("0005_identifications")
def _identifications(conn: sqlite3.Connection) -> None:
    # Which cow walked past a camera (agent.records.Identification): shaped like the
    # other uploaded tables, so the writer, outbox, clock fix, retention and space
    # code treat it the same way. ``status`` is derived from the body (STORED: set
    # once at insert) for the status page's count by status.
    conn.execute(
        """CREATE TABLE identifications (
            id INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE,
            wall_ts REAL NOT NULL,
            mono_ns INTEGER NOT NULL,
            body TEXT NOT NULL,
            size INTEGER NOT NULL,
            synced INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            boot_id TEXT NOT NULL DEFAULT '',
            clock_synced INTEGER NOT NULL DEFAULT 1,
            wall_corrected INTEGER NOT NULL DEFAULT 0,
            status TEXT GENERATED ALWAYS AS (json_extract(body, '$.status')) STORED
        )"""
    )
    conn.execute(
        "CREATE INDEX identifications_unsynced ON identifications (id) WHERE synced = 0"
    )
    conn.execute(
        "CREATE INDEX identifications_done ON identifications (id, size) WHERE synced != 0"
    )
    conn.execute(
        "CREATE INDEX identifications_clock ON identifications (boot_id) "
        "WHERE clock_synced = 0 AND wall_corrected = 0"
    )
    conn.execute("CREATE INDEX identifications_status ON identifications (status)")


@migration("0006_body_conditions_milk_checks")
def _body_conditions_milk_checks(conn: sqlite3.Connection) -> None:
    # A cow's body condition score per visit (agent.records.BodyCondition) and the
    # colour of one milk sample (agent.records.MilkCheck): shaped like the other
    # uploaded tables, so the writer, outbox, clock fix, retention and space code
    # treat them the same way. ``animal_id`` of a body condition is derived from the
    # body (STORED: set once at insert, and again if the clock fix rewrites the body)
    # and indexed with the time for StoreReader.body_condition_history (a cow's
    # scores; the live trend is kept in the rules' saved state); ``result`` of a
    # milk check, for a count by result.
    for table, derived in (
        ("body_conditions",
         "animal_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.animal_id')) STORED"),
        ("milk_checks",
         "result TEXT GENERATED ALWAYS AS (json_extract(body, '$.result')) STORED"),
    ):
        # Table names come from this constant list, never from input.
        conn.execute(
            f"""CREATE TABLE {table} (
                id INTEGER PRIMARY KEY,
                record_id TEXT NOT NULL UNIQUE,
                wall_ts REAL NOT NULL,
                mono_ns INTEGER NOT NULL,
                body TEXT NOT NULL,
                size INTEGER NOT NULL,
                synced INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                boot_id TEXT NOT NULL DEFAULT '',
                clock_synced INTEGER NOT NULL DEFAULT 1,
                wall_corrected INTEGER NOT NULL DEFAULT 0,
                {derived}
            )"""
        )
        conn.execute(f"CREATE INDEX {table}_unsynced ON {table} (id) WHERE synced = 0")
        conn.execute(f"CREATE INDEX {table}_done ON {table} (id, size) WHERE synced != 0")
        conn.execute(
            f"CREATE INDEX {table}_clock ON {table} (boot_id) "
            "WHERE clock_synced = 0 AND wall_corrected = 0"
        )
    conn.execute(
        "CREATE INDEX body_conditions_animal_time ON body_conditions (animal_id, wall_ts) "
        "WHERE animal_id IS NOT NULL"
    )


def applied(conn: sqlite3.Connection) -> list[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_wall_ts REAL)"
    )
    return [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY rowid")]


def migrate(conn: sqlite3.Connection, wall_ts: float) -> list[str]:
    """Apply every registered migration not yet recorded; return their names."""
    done = set(applied(conn))
    ran: list[str] = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute(
                "INSERT INTO migrations (name, applied_wall_ts) VALUES (?, ?)", (name, wall_ts)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran


def epoch_of(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    if row is None:
        raise RuntimeError("buffer has no epoch; migrations did not run")
    return str(row[0])
