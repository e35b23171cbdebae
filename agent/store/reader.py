"""Read-only views of the buffer for the status page and JSON API.

Each call opens its own read-only connection: WAL lets it read while the
writer commits, and a page request never holds a connection open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.store import db
from agent.store.migrations import SYNC_TABLES, SYNCED_DEAD


class StoreReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = db.connect(self.path, readonly=True)
        try:
            yield conn
        finally:
            conn.close()

    def counts(self) -> dict[str, Any]:
        """Rows per table, the unsynced backlog, quarantine by reason, dead letters."""
        out: dict[str, Any] = {"tables": {}, "unsynced": {}, "dead_lettered": {}}
        with self._conn() as conn:
            for table in SYNC_TABLES:
                total, unsynced, dead, unsynced_bytes = conn.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(synced = 0), 0), "
                    f"COALESCE(SUM(synced = {SYNCED_DEAD}), 0), "
                    f"COALESCE(SUM(CASE WHEN synced = 0 THEN size END), 0) FROM {table}"
                ).fetchone()
                out["tables"][table] = int(total)
                out[table] = int(total)  # flat too, for simple displays
                out["unsynced"][table] = int(unsynced)
                out["dead_lettered"][table] = int(dead)
                out.setdefault("unsynced_bytes", 0)
                out["unsynced_bytes"] += int(unsynced_bytes)
            out["backlog"] = sum(out["unsynced"].values())
            out["quarantine_by_reason"] = {
                str(reason): int(n)
                for reason, n in conn.execute(
                    "SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason"
                )
            }
            out["quarantine"] = sum(out["quarantine_by_reason"].values())
            out["dead_letter"] = int(conn.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])
        return out

    def status_counts(self) -> dict[str, int]:
        """What the status page shows each request, cheaply: the unsynced backlog
        (partial indexes), quarantined messages and dead letters (small tables).
        ``counts`` scans every buffered row: 0.2 s at a million readings."""
        with self._conn() as conn:
            backlog = sum(
                int(conn.execute(f"SELECT COUNT(*) FROM {t} WHERE synced = 0").fetchone()[0])
                for t in SYNC_TABLES
            )
            quarantine = int(conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])
            dead = int(conn.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])
        return {"backlog": backlog, "quarantine": quarantine, "dead_letter": dead}

    def series(self, firmwares: Collection[str], since_wall: float, until_wall: float,
               sensor_id: str | None = None
               ) -> Iterator[tuple[str, str, dict[str, float], float]]:
        """(sensor_id, firmware, values, wall_ts) of the readings of ``firmwares``
        (or of the one ``sensor_id``) made from ``since_wall`` to before
        ``until_wall``, oldest first: the status page's sparklines.

        Rows are in commit order, so wall time rises with the row id (but for clock
        corrections): a binary search on the id finds the start without a time index.
        """
        if not firmwares and sensor_id is None:
            return
        with self._conn() as conn:
            lo, hi = conn.execute("SELECT MIN(id), MAX(id) FROM readings").fetchone()
            if lo is None:
                return
            hi += 1
            while lo < hi:
                mid = (lo + hi) // 2
                row = conn.execute("SELECT wall_ts FROM readings WHERE id >= ? ORDER BY id "
                                   "LIMIT 1", (mid,)).fetchone()
                if row is None or row[0] >= since_wall:
                    hi = mid
                else:
                    lo = mid + 1
            args: tuple[str, ...]
            if sensor_id is not None:
                which, args = "json_extract(body, '$.sensor_id') = ?", (sensor_id,)
            else:
                marks = ",".join("?" * len(firmwares))
                which, args = f"json_extract(body, '$.firmware') IN ({marks})", tuple(firmwares)
            rows = conn.execute(
                "SELECT json_extract(body, '$.sensor_id'), json_extract(body, '$.firmware'), "
                "json_extract(body, '$.values'), wall_ts FROM readings "
                f"WHERE id >= ? AND wall_ts >= ? AND wall_ts < ? AND {which} ORDER BY id",
                (lo, since_wall, until_wall, *args))
            for sid, firmware, values, wall_ts in rows:
                yield str(sid), str(firmware), json.loads(values or "{}"), float(wall_ts)

    def backlog(self) -> int:
        """Unsynced records across every uploaded table (uses the partial indexes)."""
        with self._conn() as conn:
            return sum(
                int(conn.execute(f"SELECT COUNT(*) FROM {t} WHERE synced = 0").fetchone()[0])
                for t in SYNC_TABLES
            )

    def sensor_latest(
        self,
        now_wall: float | None = None,
        now_mono_ns: int | None = None,
        boot: str | None = None,
    ) -> list[dict[str, Any]]:
        """Latest values per sensor; ``age_s`` from the monotonic clock when the
        reading is from this ``boot``, else from the wall clock."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT sensor_id, record_id, firmware, topic, animal_id, values_json, wall_ts, "
                "mono_ns, clock_synced, count, boot_id FROM sensor_latest ORDER BY sensor_id"
            ).fetchall()
        return [
            {
                "sensor_id": r[0],
                "record_id": r[1],
                "firmware": r[2],
                "topic": r[3],
                "animal_id": r[4],
                "values": json.loads(r[5]),
                "wall_ts": r[6],
                "mono_ns": r[7],
                "clock_synced": bool(r[8]),
                "count": r[9],
                "age_s": _age(
                    r[6], r[7], now_wall, now_mono_ns if boot is None or r[10] == boot else None
                ),
            }
            for r in rows
        ]

    def recent_quarantine(self, n: int = 20) -> list[dict[str, Any]]:
        """Newest first; the payload is cut to 256 bytes and decoded for display."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT record_id, topic, substr(payload, 1, 256), reason, detail, wall_ts, "
                "mono_ns, clock_synced, size FROM quarantine ORDER BY id DESC LIMIT ?",
                (max(0, int(n)),),
            ).fetchall()
        return [
            {
                "record_id": r[0],
                "topic": r[1],
                "payload_head": bytes(r[2]).decode("utf-8", "replace"),
                "reason": r[3],
                "detail": r[4],
                "wall_ts": r[5],
                "mono_ns": r[6],
                "clock_synced": bool(r[7]),
                "size": r[8],
            }
            for r in rows
        ]

    def recent_alerts(self, n: int = 20) -> list[dict[str, Any]]:
        """Newest first, as stored (the same dict that is uploaded)."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT body, synced FROM alerts ORDER BY id DESC LIMIT ?", (max(0, int(n)),)
            ).fetchall()
        out = []
        for body, synced in rows:
            data = json.loads(body)
            data["synced"] = synced == 1
            out.append(data)
        return out

    def recent_identifications(
        self, limit: int = 20, *, include_crop: bool = False
    ) -> list[dict[str, Any]]:
        """Newest first (commit order), as stored, with ``synced`` added.

        A crop (``crop_jpeg_b64``, up to hundreds of KiB) is left out unless
        ``include_crop``; ``crop_bytes`` always gives its decoded size (None: no crop).
        """
        body = "body" if include_crop else "json_remove(body, '$.crop_jpeg_b64')"
        with self._conn() as conn:
            rows = conn.execute(
                f"""SELECT {body}, synced,
                       length(c) * 3 / 4 - (substr(c, -1) = '=') - (substr(c, -2) = '==')
                   FROM (SELECT id, body, synced,
                                json_extract(body, '$.crop_jpeg_b64') AS c
                         FROM identifications ORDER BY id DESC LIMIT ?)
                   ORDER BY id DESC""",
                (max(0, int(limit)),),
            ).fetchall()
        out = []
        for text, synced, crop_bytes in rows:
            data = json.loads(text)
            data["synced"] = synced == 1
            data["crop_bytes"] = None if crop_bytes is None else int(crop_bytes)
            out.append(data)
        return out

    def identification_counts(self, since_wall_ts: float | None = None) -> dict[str, int]:
        """Identifications by status (identified, flagged, review, always present),
        all of them or those stored with ``wall_ts >= since_wall_ts``."""
        out = {"identified": 0, "flagged": 0, "review": 0}
        where, params = ("", ()) if since_wall_ts is None else (
            "WHERE wall_ts >= ?", (float(since_wall_ts),))
        with self._conn() as conn:
            for status, n in conn.execute(
                f"SELECT status, COUNT(*) FROM identifications {where} GROUP BY status", params
            ):
                out[str(status)] = int(n)
        return out

    def recent_body_conditions(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first (commit order), as stored, with ``synced`` added."""
        return self._recent("body_conditions", limit)

    def recent_milk_checks(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first (commit order), as stored, with ``synced`` added."""
        return self._recent("milk_checks", limit)

    def body_condition_history(
        self, animal_id: str, since_wall_ts: float
    ) -> list[tuple[float, float, float, float, float]]:
        """One cow's scores stored with ``wall_ts >= since_wall_ts``, oldest first:
        ``(wall_ts, bcs, low, high, quality)`` (uses the (animal_id, wall_ts) index).

        ``wall_ts`` is the stored time: corrected once the clock fix knew the
        offset; a record made before clock sync and not corrected yet keeps the
        time the gateway had then. A record without an animal is nobody's history.
        """
        with self._conn() as conn:
            rows = conn.execute(
                """SELECT wall_ts, json_extract(body, '$.bcs'), json_extract(body, '$.low'),
                          json_extract(body, '$.high'), json_extract(body, '$.quality')
                   FROM body_conditions WHERE animal_id = ? AND wall_ts >= ?
                   ORDER BY wall_ts, id""",
                (str(animal_id), float(since_wall_ts)),
            ).fetchall()
        return [
            (float(ts), float(bcs), float(low), float(high), float(quality))
            for ts, bcs, low, high, quality in rows
        ]

    def _recent(self, table: str, limit: int) -> list[dict[str, Any]]:
        # ``table`` is one of this module's constant names, never input.
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT body, synced FROM {table} ORDER BY id DESC LIMIT ?",
                (max(0, int(limit)),),
            ).fetchall()
        out = []
        for body, synced in rows:
            data = json.loads(body)
            data["synced"] = synced == 1
            out.append(data)
        return out

    def recent_dead_letters(self, n: int = 20) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT kind, record_id, reason, attempts, wall_ts FROM dead_letter "
                "ORDER BY id DESC LIMIT ?",
                (max(0, int(n)),),
            ).fetchall()
        return [
            {"kind": r[0], "record_id": r[1], "reason": r[2], "attempts": r[3], "wall_ts": r[4]}
            for r in rows
        ]

    def db_size_bytes(self) -> int:
        """The database plus its WAL, as they take space on the card."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += self.path.with_name(self.path.name + suffix).stat().st_size
            except OSError:
                pass
        return total


def _age(
    wall_ts: float, mono_ns: int, now_wall: float | None, now_mono_ns: int | None
) -> float | None:
    if now_mono_ns is not None and 0 <= now_mono_ns - mono_ns:
        return (now_mono_ns - mono_ns) / 1e9
    if now_wall is not None:
        return max(0.0, now_wall - wall_ts)
    return None
