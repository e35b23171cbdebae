"""The outbox: which records go in the next batch, and applying the answer.

Both functions take the writer's connection and run inside a transaction on
the writer thread (``StoreWriter.call``). The open batch (seq and record ids)
is persisted in ``sync_state`` before anything is sent, so after a crash the
SAME batch (same seq, same batch_id, same records) is resent; seq advances
only when a batch is closed by applying its answer (R3).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent import metrics
from agent.records.protocol import (
    ID_PATTERN,
    BatchRecord,
    BatchResponse,
    RecordStatus,
    batch_id_for,
    dump_record,
)
from agent.store.migrations import KIND_TABLE, SYNC_TABLES, SYNCED_DEAD

log = logging.getLogger(__name__)

_TABLE_KIND = {table: kind for kind, table in KIND_TABLE.items()}
OPEN_KEY = "open_batch"
SEQ_KEY = "seq"


@dataclass(slots=True)
class PreparedBatch:
    """A batch ready to send: ``wire`` holds each record's JSON text, in lane order."""

    seq: int
    batch_id: str
    created_mono_ns: int
    refs: list[tuple[str, str]]  # (table, record_id)
    wire: list[str]  # spliced into the batch body as they are (``wire_text``)
    resumed: bool  # True when this batch was open before (a resend)
    size: int = 0  # stored bytes of the records

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records as objects (for tests and tools; sync sends ``wire``)."""
        return [json.loads(text) for text in self.wire]


@dataclass(slots=True)
class ApplyResult:
    synced: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    retry: int = 0
    missing: int = 0  # records the answer did not mention (treated as retry)
    dead_ids: list[str] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)

    def count_metrics(self) -> None:
        """Update metrics; call only after the transaction committed."""
        for status, n in self.by_status.items():
            metrics.SYNC_RECORDS.labels(status=status).inc(n)
        if self.dead_lettered:
            metrics.DEAD_LETTERS.inc(self.dead_lettered)


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (SEQ_KEY,)).fetchone()
    return int(row[0]) if row else 0


def open_batch(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (OPEN_KEY,)).fetchone()
    return json.loads(row[0]) if row else None


def prepare(
    conn: sqlite3.Connection,
    device_id: str,
    epoch: str,
    max_records: int,
    max_bytes: int,
    mono_ns: int,
) -> PreparedBatch | None:
    """Resume the open batch, or select and persist a new one; None when idle."""
    state = open_batch(conn)
    if state is not None:
        refs = [(str(t), str(r)) for t, r in state["refs"]]
        records, size = _load(conn, refs)
        if records and len(records) == len(refs):
            return PreparedBatch(
                seq=int(state["seq"]),
                batch_id=str(state["batch_id"]),
                created_mono_ns=int(state["created_mono_ns"]),
                refs=refs,
                wire=records,
                resumed=True,
                size=size,
            )
        # Records of the open batch are gone (retention on a full disk): central
        # takes a batch id again only with the same content, so this one is
        # closed and what is left goes in a new batch (deduplicated by record id).
        _close(conn, int(state["seq"]))

    refs, records, size = _select(conn, max_records, max_bytes)
    if not refs:
        return None
    seq = last_seq(conn) + 1
    batch = PreparedBatch(
        seq=seq,
        batch_id=batch_id_for(device_id, epoch, seq),
        created_mono_ns=mono_ns,
        refs=refs,
        wire=records,
        resumed=False,
        size=size,
    )
    conn.execute(
        "INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)",
        (
            OPEN_KEY,
            json.dumps(
                {
                    "seq": seq,
                    "batch_id": batch.batch_id,
                    "created_mono_ns": mono_ns,
                    "refs": refs,
                }
            ),
        ),
    )
    return batch


def _select(
    conn: sqlite3.Connection, max_records: int, max_bytes: int
) -> tuple[list[tuple[str, str]], list[str], int]:
    refs: list[tuple[str, str]] = []
    records: list[str] = []
    used = 0
    # Priority lanes: alerts, events, identifications, milk checks, body conditions,
    # inferences, readings (migrations.SYNC_TABLES says why).
    for table in SYNC_TABLES:
        room = max_records - len(refs)
        if room <= 0:
            break
        for record_id, body, size in conn.execute(
            f"SELECT record_id, body, size FROM {table} WHERE synced = 0 ORDER BY id LIMIT ?",
            (room,),
        ):
            # Always take at least one record, even an oversized one, or it
            # would block the outbox forever.
            if refs and used + size > max_bytes:
                return refs, records, used
            refs.append((table, record_id))
            records.append(wire_text(body))
            used += size
    return refs, records, used


def _load(
    conn: sqlite3.Connection, refs: list[tuple[str, str]]
) -> tuple[list[str], int]:
    records = []
    size = 0
    for table, record_id in refs:
        if table not in _TABLE_KIND:
            continue  # never put a stored string into SQL as a name
        row = conn.execute(
            f"SELECT body FROM {table} WHERE record_id = ?", (record_id,)
        ).fetchone()
        if row is not None:
            records.append(wire_text(row[0]))
            size += len(row[0].encode())
    return records, size


# The batch encoder's settings (agent.sync.signing), which are also the store's
# (agent.store.inserts): compact, ASCII, no NaN.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_ID = re.compile(ID_PATTERN)
# A number whose exponent overflows a float (SQLite's JSON writes infinity as
# 9e999): it decodes to inf, which only the model's path turns into null. Only
# where a number can stand (after ':', ',' or '['): a hex record id such as
# "...5e712..." sent about a quarter of all records down the slow path.
_HUGE_NUMBER = re.compile(r"[:,\[]\s*-?\d+(?:\.\d+)?[eE]\+?\d{3}")
# Types a BatchRecord field must already have for its validation to change nothing.
_ENVELOPE = (("record_id", str), ("kind", str), ("wall_ts", float), ("mono_ns", int),
             ("boot_id", str), ("clock_synced", bool))


def wire_text(body: str) -> str:
    """A stored body as it goes into a batch: top-level nulls dropped
    (``dump_record``), everything else as stored.

    The stored text is spliced into the batch as it is when nothing would change
    it: no top-level null, envelope fields of their exact types, no NaN or
    infinity (nor a number that overflows to one). Decoding it costs a few microseconds in C; validating it with the
    pydantic model and encoding it again cost several times that for every
    record. A body with top-level nulls is re-encoded without them (the same
    encoder settings give the same text for the rest); anything odd takes the
    model's path (``BatchRecord`` validation and JSON-mode dump), as all records
    did before. Keys keep the stored order; the receiver reads JSON objects, and
    its resend check hashes them with sorted keys.
    """
    data = json.loads(body)
    if ("NaN" in body or "Infinity" in body or _HUGE_NUMBER.search(body)
            or not _plain_envelope(data)):
        return _encode(BatchRecord.model_validate(dump_record(data)).model_dump(mode="json"))
    if None in data.values():
        return _without_nulls(body, data)
    return body


def _without_nulls(body: str, data: dict[str, Any]) -> str:
    """``body`` less its top-level ``"key":null`` members, cut out of the text.

    A member is cut only where its text occurs once in the body (then it is the
    top-level one, which must be there): a nested object may hold the same key
    with a null too. Otherwise the body is encoded again without the nulls.
    """
    text = body
    for key, value in data.items():
        if value is not None:
            continue
        member = _encode(key) + ":null"
        at = text.find(member)
        if at <= 0 or text.find(member, at + 1) != -1:
            return _encode(dump_record(data))
        end = at + len(member)
        if text[at - 1] == ",":  # ...,"key":null -> ...
            text = text[:at - 1] + text[end:]
        elif text[at - 1] == "{" and text[end:end + 1] == ",":  # {"key":null,... -> {...
            text = text[:at] + text[end + 1:]
        elif text[at - 1] == "{":  # {"key":null} -> {}
            text = text[:at] + text[end:]
        else:
            return _encode(dump_record(data))
    return text


def _plain_envelope(data: Any) -> bool:
    if type(data) is not dict:
        return False
    for name, kind in _ENVELOPE:
        if type(data.get(name)) is not kind:
            return False
    return _ID.fullmatch(data["record_id"]) is not None


def apply(
    conn: sqlite3.Connection,
    batch: PreparedBatch,
    response: BatchResponse,
    max_attempts: int,
    wall_ts: float,
) -> ApplyResult:
    """Apply per-record results and close the batch, all in the caller's transaction."""
    result = ApplyResult()
    by_id: dict[str, list[str]] = {}
    for table, record_id in batch.refs:
        by_id.setdefault(record_id, []).append(table)
    answered: set[str] = set()
    for rr in response.results:
        tables = by_id.get(rr.record_id)
        if not tables:
            continue  # not ours: ignore rather than trust the peer
        answered.add(rr.record_id)
        for table in tables:
            _apply_one(conn, table, rr.record_id, rr.status, rr.reason, max_attempts, wall_ts,
                       result)
    result.missing = len(set(by_id) - answered)
    _close(conn, batch.seq)
    return result


def _apply_one(
    conn: sqlite3.Connection,
    table: str,
    record_id: str,
    status: RecordStatus,
    reason: str | None,
    max_attempts: int,
    wall_ts: float,
    result: ApplyResult,
) -> None:
    result.by_status[str(status)] = result.by_status.get(str(status), 0) + 1
    if status in (RecordStatus.ACCEPTED, RecordStatus.DUPLICATE):
        conn.execute(f"UPDATE {table} SET synced = 1 WHERE record_id = ?", (record_id,))
        result.synced += 1
        return
    if status == RecordStatus.RETRY:
        result.retry += 1
        return
    # Rejected: count an attempt; dead-letter after max_attempts (T7).
    result.rejected += 1
    why = (reason or "rejected")[:500]
    conn.execute(
        f"UPDATE {table} SET attempts = attempts + 1, last_error = ? "
        "WHERE record_id = ? AND synced = 0",
        (why, record_id),
    )
    row = conn.execute(
        f"SELECT attempts, body FROM {table} WHERE record_id = ? AND synced = 0", (record_id,)
    ).fetchone()
    if row is None or int(row[0]) < max_attempts:
        return
    # The row stays (marked dead) so a redelivery is still a dedup hit.
    conn.execute(f"UPDATE {table} SET synced = ? WHERE record_id = ?", (SYNCED_DEAD, record_id))
    conn.execute(
        "INSERT OR REPLACE INTO dead_letter (kind, record_id, body, reason, attempts, wall_ts) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (_TABLE_KIND[table], record_id, row[1], why, int(row[0]), wall_ts),
    )
    result.dead_lettered += 1
    result.dead_ids.append(record_id)
    log.warning("record %s (%s) dead-lettered after %d rejections: %s",
                record_id, table, row[0], why)


def start_new_epoch(conn: sqlite3.Connection) -> str:
    """Begin a new sequence under a fresh epoch: the receiver has seen our seq
    numbers before (this buffer was restored from an old copy, or its state was
    lost). Unsynced records are re-batched; the receiver deduplicates by record id."""
    epoch = uuid.uuid4().hex
    conn.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (epoch,))
    conn.execute("DELETE FROM sync_state WHERE key IN (?, ?)", (SEQ_KEY, OPEN_KEY))
    return epoch


def _close(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)", (SEQ_KEY, str(seq))
    )
    conn.execute("DELETE FROM sync_state WHERE key = ?", (OPEN_KEY,))


def backlog(conn: sqlite3.Connection) -> int:
    return sum(
        int(conn.execute(f"SELECT COUNT(*) FROM {t} WHERE synced = 0").fetchone()[0])
        for t in SYNC_TABLES
    )


@dataclass(slots=True)
class ShrinkResult:
    kept: int  # records left in the open batch
    released: int  # records handed back to the outbox for later batches
    dead_lettered: int = 0
    dead_ids: list[str] = field(default_factory=list)


def shrink_open(
    conn: sqlite3.Connection, reason: str, max_attempts: int, wall_ts: float
) -> ShrinkResult:
    """The receiver refused the open batch as too large (413): keep its first half.

    The batch keeps its seq and batch_id (a resend of the same id stays a
    resend); the other records simply wait for a later batch, with their own
    record ids unchanged. A single record that is still too large counts a
    rejection and is dead-lettered after ``max_attempts``, like a poison record.
    """
    state = open_batch(conn)
    if state is None:
        return ShrinkResult(0, 0)
    refs = [(str(t), str(r)) for t, r in state["refs"]]
    if len(refs) > 1:
        keep = len(refs) // 2
        state["refs"] = refs[:keep]
        conn.execute(
            "UPDATE sync_state SET value = ? WHERE key = ?", (json.dumps(state), OPEN_KEY)
        )
        return ShrinkResult(keep, len(refs) - keep)
    result = ApplyResult()
    for table, record_id in refs:
        if table in _TABLE_KIND:
            _apply_one(conn, table, record_id, RecordStatus.REJECTED, reason, max_attempts,
                       wall_ts, result)
    if result.dead_lettered:
        # Nothing left to send under this seq: close it (seq only ever grows).
        _close(conn, int(state["seq"]))
    return ShrinkResult(len(refs) - result.dead_lettered, 0, result.dead_lettered,
                        result.dead_ids)
