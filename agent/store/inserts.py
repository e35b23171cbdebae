"""How each item the writer accepts becomes rows (run inside the writer's transaction)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.records import (
    Alert,
    BodyCondition,
    Event,
    Identification,
    Inference,
    MilkCheck,
    Quarantined,
    Reading,
)
from agent.store.migrations import KIND_TABLE

Item = (Reading | Alert | Event | Inference | Identification | BodyCondition | MilkCheck
        | Quarantined)


# Built once: json.dumps with any non-default option builds a new encoder per call.
# default=str: an odd attribute value must not make a record unstorable.
_dumps = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode
_dumps_nan = json.JSONEncoder(separators=(",", ":"), default=str).encode


def encode_body(
    record: Reading | Alert | Event | Inference | Identification | BodyCondition | MilkCheck,
) -> str:
    return _dumps(record.to_dict())


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


# Per-row cost beyond the body (rowid, columns, the record_id index entry):
# used only to estimate whether a group fits the byte cap.
ROW_OVERHEAD = 96


@dataclass(slots=True)
class Encoded:
    """An item ready to insert: its body and the times it will be stored with."""

    body: str | None  # None for quarantined items (their payload is the body)
    size: int
    wall_ts: float
    corrected: bool  # wall_ts was rebuilt from mono_ns and a sync-time offset

    @property
    def estimate(self) -> int:
        return self.size + ROW_OVERHEAD


def encode(item: Item, offsets: Mapping[str, float] | None = None) -> Encoded:
    """Encode ``item``; a record made before clock sync gets its wall time corrected
    when the offset (wall - mono) of its boot is already known."""
    st = item.stamp
    corrected = bool(offsets) and not st.clock_synced and st.boot_id in (offsets or {})
    wall_ts = st.mono_ns / 1e9 + offsets[st.boot_id] if corrected and offsets else st.wall_ts
    if isinstance(item, Quarantined):
        return Encoded(None, len(item.payload), wall_ts, corrected)
    data = item.to_dict()
    if corrected:
        data["wall_ts"] = wall_ts
        data["wall_corrected"] = True
    try:
        body = _dumps(data)
    except ValueError:
        # NaN/inf slipped past validation; store it as text rather than lose it.
        body = _dumps_nan(data)
    return Encoded(body, _utf8_len(body), wall_ts, corrected)


@dataclass(slots=True)
class GroupStats:
    """What a group did; applied to metrics only after its COMMIT."""

    stored_by_firmware: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    dedup_hits: int = 0


def table_of(item: Item) -> str:
    return "quarantine" if isinstance(item, Quarantined) else KIND_TABLE[str(item.kind)]


def exists(conn: sqlite3.Connection, item: Item) -> bool:
    """Whether ``item``'s record_id is already stored (a redelivery)."""
    table = table_of(item)  # a constant name, never input
    row = conn.execute(f"SELECT 1 FROM {table} WHERE record_id = ?", (item.record_id,))
    return row.fetchone() is not None


def insert(
    conn: sqlite3.Connection, item: Item, stats: GroupStats, enc: Encoded | None = None
) -> None:
    """INSERT OR IGNORE one item; a repeat of a stored record_id is a dedup hit."""
    # OR IGNORE would also swallow a NULL id as if it were a duplicate.
    if not isinstance(item.record_id, str) or not item.record_id:
        raise ValueError(f"record without a record_id: {type(item).__name__}")
    enc = enc or encode(item)
    if isinstance(item, Quarantined):
        _insert_quarantined(conn, item, stats, enc)
        return
    table = KIND_TABLE[str(item.kind)]
    st = item.stamp
    cur = conn.execute(
        f"INSERT OR IGNORE INTO {table} (record_id, wall_ts, mono_ns, body, size, boot_id, "
        "clock_synced, wall_corrected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (item.record_id, enc.wall_ts, st.mono_ns, enc.body, enc.size, st.boot_id,
         int(st.clock_synced), int(enc.corrected)),
    )
    if cur.rowcount == 0:
        stats.dedup_hits += 1
        return
    if isinstance(item, Reading):
        stats.stored_by_firmware[item.firmware] = stats.stored_by_firmware.get(item.firmware, 0) + 1
        _update_latest(conn, item)


def _update_latest(conn: sqlite3.Connection, r: Reading) -> None:
    # Only move forward: a late redelivery must not hide a newer value. Monotonic
    # time restarts at boot, so a reading from another boot always counts as newer
    # (readings are stamped on arrival: the newest boot is now).
    conn.execute(
        """INSERT INTO sensor_latest (sensor_id, record_id, firmware, topic, animal_id,
               values_json, wall_ts, mono_ns, clock_synced, boot_id, count)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
           ON CONFLICT (sensor_id) DO UPDATE SET
               count = count + 1,
               record_id = excluded.record_id,
               firmware = excluded.firmware,
               topic = excluded.topic,
               animal_id = excluded.animal_id,
               values_json = excluded.values_json,
               wall_ts = excluded.wall_ts,
               clock_synced = excluded.clock_synced,
               mono_ns = excluded.mono_ns,
               boot_id = excluded.boot_id
           WHERE excluded.boot_id != sensor_latest.boot_id
              OR excluded.mono_ns >= sensor_latest.mono_ns""",
        (
            r.sensor_id,
            r.record_id,
            r.firmware,
            r.topic,
            r.animal_id,
            _dumps_nan(r.values),
            r.stamp.wall_ts,
            r.stamp.mono_ns,
            int(r.stamp.clock_synced),
            r.stamp.boot_id,
        ),
    )


def _insert_quarantined(
    conn: sqlite3.Connection, q: Quarantined, stats: GroupStats, enc: Encoded
) -> None:
    cur = conn.execute(
        """INSERT OR IGNORE INTO quarantine (record_id, topic, payload, reason, detail,
               wall_ts, mono_ns, boot_id, clock_synced, size, wall_corrected)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            q.record_id,
            q.topic,
            bytes(q.payload),
            q.reason,
            q.detail,
            enc.wall_ts,
            q.stamp.mono_ns,
            q.stamp.boot_id,
            int(q.stamp.clock_synced),
            len(q.payload),
            int(enc.corrected),
        ),
    )
    if cur.rowcount == 0:
        stats.dedup_hits += 1
    else:
        stats.rejected_by_reason[q.reason] = stats.rejected_by_reason.get(q.reason, 0) + 1
