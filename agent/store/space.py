"""The byte budget of the buffer: measuring it, freeing space, retention.

Every function runs inside the writer's transaction. "Used bytes" are the
database pages holding data, ``(page_count - freelist_count) * page_size``:
indexes and row overhead included, and it falls as soon as rows are deleted
(freed pages are reused; the file itself does not shrink).

Order in which space is freed (docs/reliability-store.md):

1. synced rows (already confirmed by the central store; not a loss),
   oldest first, readings -> inferences -> body conditions -> milk checks ->
   identifications -> events -> alerts;
2. only after the buffer stayed full for ``full_drop_after_s``: unsynced data,
   oldest first, quarantine -> dead letters -> readings -> inferences ->
   body conditions -> milk checks -> identifications -> events -> alerts
   (alerts only to make room for newer alerts).

Identifications go after readings and inferences: one per visit of a cow, a
few hundred a day, each the end product of many frames that cannot be read
again, while readings come by the thousand and the next one says much the same.
Body conditions and milk checks are such end products too, but each is worth
less lost than an identification: a body condition score moves over weeks (the
cow's next visit says much the same), and a milk check, which cannot be taken
again once the milk is in the tank, goes after it, just before identifications.
This is the outbox's lane order (migrations.SYNC_TABLES) reversed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from agent import metrics
from agent.store.migrations import KIND_TABLE, SYNC_TABLES

_TABLE_KIND = {table: kind for kind, table in KIND_TABLE.items()}
# Cheapest to lose first. Alerts come last and only for newer alerts.
SYNCED_EVICT_ORDER = ("readings", "inferences", "body_conditions", "milk_checks",
                      "identifications", "events", "alerts")
UNSYNCED_DROP_ORDER = ("readings", "inferences", "body_conditions", "milk_checks",
                       "identifications", "events")
CHUNK = 256  # rows deleted per step before the size is measured again


def used_bytes(conn: sqlite3.Connection) -> int:
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page_size


@dataclass(slots=True)
class DropEntry:
    reason: str
    kind: str
    count: int = 0
    bytes: int = 0
    first_record_id: str | None = None
    last_record_id: str | None = None


@dataclass(slots=True)
class DropTally:
    """Drops made in one transaction; recorded in it, counted after its COMMIT."""

    entries: dict[tuple[str, str], DropEntry] = field(default_factory=dict)

    def add(self, reason: str, kind: str, ids: list[str], size: int) -> None:
        if not ids:
            return
        e = self.entries.setdefault((reason, kind), DropEntry(reason, kind))
        e.count += len(ids)
        e.bytes += size
        e.first_record_id = e.first_record_id or ids[0]
        e.last_record_id = ids[-1]

    def total(self, reasons: tuple[str, ...] | None = None) -> int:
        return sum(e.count for e in self.entries.values() if reasons is None or e.reason in reasons)

    def record(self, conn: sqlite3.Connection, wall_ts: float, mono_ns: int, boot: str) -> None:
        """Write one ``drops`` row per (reason, kind) in the caller's transaction."""
        for e in self.entries.values():
            conn.execute(
                "INSERT INTO drops (reason, kind, count, bytes, first_record_id, "
                "last_record_id, wall_ts, mono_ns, boot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.reason, e.kind, e.count, e.bytes, e.first_record_id, e.last_record_id,
                 wall_ts, mono_ns, boot),
            )
        # The log of drops is itself bounded.
        conn.execute(
            "DELETE FROM drops WHERE id <= (SELECT MAX(id) FROM drops) - 10000"
        )

    def count_metrics(self) -> None:
        for e in self.entries.values():
            metrics.DROPPED.labels(reason=e.reason, kind=e.kind).inc(e.count)


def _delete_chunk(
    conn: sqlite3.Connection, table: str, where: str, params: tuple[object, ...] = ()
) -> tuple[list[str], int]:
    """Delete up to CHUNK oldest rows of ``table`` matching ``where`` (a constant)."""
    rows = conn.execute(
        f"SELECT id, record_id, size FROM {table} WHERE {where} ORDER BY id LIMIT {CHUNK}",
        params,
    ).fetchall()
    if not rows:
        return [], 0
    conn.execute(
        f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(rows))})",
        tuple(r[0] for r in rows),
    )
    return [str(r[1]) for r in rows], sum(int(r[2]) for r in rows)


def evict_synced(conn: sqlite3.Connection, target: int, tally: DropTally,
                 reason: str = "evicted_synced") -> int:
    """Delete synced (and dead-lettered) rows, oldest first, until used <= target."""
    used = used_bytes(conn)
    for table in SYNCED_EVICT_ORDER:
        while used > target:
            ids, size = _delete_chunk(conn, table, "synced != 0")
            if not ids:
                break
            tally.add(reason, _TABLE_KIND[table], ids, size)
            used = used_bytes(conn)
    return used


def drop_unsynced(conn: sqlite3.Connection, target: int, tally: DropTally,
                  include_alerts: bool) -> int:
    """Data loss, last resort: drop oldest unsynced data by priority until used <= target."""
    used = used_bytes(conn)
    steps: list[tuple[str, str, str]] = [
        ("quarantine", "quarantine", "1"),
        ("dead_letter", "dead_letter", "1"),
    ]
    steps += [(t, _TABLE_KIND[t], "synced = 0") for t in UNSYNCED_DROP_ORDER]
    if include_alerts:
        steps.append(("alerts", "alert", "synced = 0"))
    for table, kind, where in steps:
        while used > target:
            if table == "dead_letter":
                rows = conn.execute(
                    f"SELECT id, record_id, length(body) FROM dead_letter ORDER BY id "
                    f"LIMIT {CHUNK}"
                ).fetchall()
                if not rows:
                    break
                conn.execute(
                    f"DELETE FROM dead_letter WHERE id IN ({','.join('?' * len(rows))})",
                    tuple(r[0] for r in rows),
                )
                ids, size = [str(r[1]) for r in rows], sum(int(r[2]) for r in rows)
            else:
                ids, size = _delete_chunk(conn, table, where)
            if not ids:
                break
            tally.add("buffer_full", kind, ids, size)
            used = used_bytes(conn)
    return used


def retention(
    conn: sqlite3.Connection,
    tally: DropTally,
    *,
    max_age_s: float,
    max_synced_bytes: int,
    boot: str,
    now_mono_ns: int,
    started_mono_ns: int,
) -> None:
    """Delete synced rows that are too old or over the synced-bytes cap.

    Only rows the central store confirmed are touched, and age never comes
    from the wall clock, so a clock step deletes nothing: a row of this boot
    is as old as its monotonic stamp says; a row of an earlier boot counts as
    made when this boot's writer started (``started_mono_ns``), so it lives
    at least ``max_age_s`` of this boot's uptime. (Where the gateway reboots
    more often than that, earlier boots' rows go by size instead.)
    """
    if max_age_s > 0:
        age_ns = int(max_age_s * 1e9)
        old_boots_expired = int(now_mono_ns - started_mono_ns > age_ns)
        for table in SYNC_TABLES:
            while True:
                ids, size = _delete_chunk(
                    conn,
                    table,
                    "synced != 0 AND ((boot_id = ? AND ? - mono_ns > ?) OR "
                    "(boot_id != ? AND ?))",
                    (boot, now_mono_ns, age_ns, boot, old_boots_expired),
                )
                if not ids:
                    break
                tally.add("retention_age", _TABLE_KIND[table], ids, size)
    if max_synced_bytes > 0:
        synced = sum(
            int(conn.execute(
                f"SELECT COALESCE(SUM(size), 0) FROM {t} WHERE synced != 0"
            ).fetchone()[0])
            for t in SYNC_TABLES
        )
        for table in SYNCED_EVICT_ORDER:
            while synced > max_synced_bytes:
                ids, size = _delete_oldest_bytes(conn, table, synced - max_synced_bytes)
                if not ids:
                    break
                tally.add("retention_size", _TABLE_KIND[table], ids, size)
                synced -= size


def _delete_oldest_bytes(
    conn: sqlite3.Connection, table: str, excess: int
) -> tuple[list[str], int]:
    """Delete the oldest synced rows of ``table`` adding up to at least ``excess`` bytes."""
    picked: list[tuple[int, str]] = []
    total = 0
    for row_id, record_id, size in conn.execute(
        f"SELECT id, record_id, size FROM {table} WHERE synced != 0 ORDER BY id LIMIT {CHUNK}"
    ):
        picked.append((int(row_id), str(record_id)))
        total += int(size)
        if total >= excess:
            break
    if picked:
        conn.execute(
            f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(picked))})",
            tuple(i for i, _ in picked),
        )
    return [r for _, r in picked], total
