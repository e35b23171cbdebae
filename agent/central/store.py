"""The central store interface, shared by the PostgreSQL and SQLite stores.

``ingest`` does the whole batch in ONE transaction: lock the (device, epoch)
sequence row, decide new / resend / replay, insert every record with
``ON CONFLICT DO NOTHING`` (inserted -> accepted, not inserted -> duplicate),
log the attempt in ``batches`` and advance the sequence. Holding the sequence
row lock while inserting is what makes two concurrent identical posts give one
``accepted`` and one ``duplicate`` per record, never two ``accepted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from agent.central.keys import KeyRow
from agent.central.validate import ValidRecord
from agent.errors import TransientError
from agent.records.protocol import RecordStatus


class StoreUnavailable(TransientError):
    """The database cannot take the batch now; answer 503 with Retry-After."""


class SeqOutcome(StrEnum):
    NEW = "new"  # a batch id never seen, seq above the highest: stored
    RESEND = "resend"  # a batch id seen before: processed again, idempotently
    REPLAY = "replay"  # a new batch id with seq <= highest: refused (409)
    CONFLICT = "conflict"  # a stored batch id with other content: refused (409)
    TOO_FAR = "too_far"  # seq more than max_seq_advance above the highest: refused (409)


# The outcomes that stored a batch; a batch id is "seen" only through one of these.
STORED_OUTCOMES = (SeqOutcome.NEW.value, SeqOutcome.RESEND.value)


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """The envelope of a verified batch, as logged in ``batches``."""

    device_id: str
    epoch: str
    seq: int
    batch_id: str
    key_id: str
    record_count: int
    sent_wall_ts: float
    clock_synced: bool
    body_bytes: int
    # SHA-256 of the batch content (epoch, seq, records); a stored batch id is
    # accepted again only with the same digest. Empty: not checked.
    content_sha256: str = ""


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: SeqOutcome
    highest_seq: int  # for (device, epoch), after this batch
    # One (status, reason) per record passed in, same order; empty for a replay.
    statuses: list[tuple[RecordStatus, str | None]]


class CentralStore(Protocol):
    """What the receiver needs from a database."""

    async def start(self) -> None:
        """Connect and create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the database cannot be reached."""
        ...

    async def ingest(
        self,
        meta: BatchMeta,
        records: Sequence[ValidRecord],
        rejected: int = 0,
        *,
        max_seq_advance: int | None = None,
    ) -> IngestResult:
        """Store a batch (see the module docstring); raise StoreUnavailable on failure.

        ``rejected`` counts records that failed validation, for the batch log;
        ``max_seq_advance`` bounds how far one batch may move the sequence.
        """
        ...

    async def key_rows(self, include_revoked: bool = False) -> list[KeyRow]:
        """The gateway keys (secrets included), oldest first."""
        ...

    async def add_key(self, device_id: str, key_id: str, secret: str,
                      *, rotate: bool = False) -> list[str]:
        """Store a key for ``device_id``; at most MAX_ACTIVE_PER_GATEWAY active.

        With ``rotate``, the oldest active key is revoked when the gateway is at
        the limit; returns the key ids revoked. Raises KeyRuleError otherwise.
        """
        ...

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke an active key; False when there is no such active key."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Record counts per device and kind, and batch counts per device."""
        ...


def open_store(database_url: str, password: str | None = None) -> CentralStore:
    """The store for ``database_url``: postgresql://... or sqlite:///path."""
    from agent.errors import ConfigError

    if database_url.startswith(("postgresql://", "postgres://")):
        try:
            from agent.central.store_postgres import PostgresStore
        except ImportError as err:  # a gateway's install leaves the PostgreSQL driver out
            raise ConfigError(
                f"central.database_url is PostgreSQL but its driver is missing ({err}): "
                "pip install 'dairy-edge[central]'"
            ) from err

        return PostgresStore(database_url, password)
    if database_url.startswith("sqlite:///"):
        from agent.central.store_sqlite import SqliteStore

        return SqliteStore(database_url.removeprefix("sqlite:///"))
    raise ConfigError(
        "central.database_url: expected postgresql://user@host/db or sqlite:///path"
    )


def decide(
    seen: bool,
    seq: int,
    highest: int,
    *,
    max_advance: int | None = None,
    same_content: bool = True,
) -> SeqOutcome:
    """The replay rule, independent of any clock.

    A batch id seen before is a resend when its content is the same, else a
    conflict; a new id with an old seq is a replay; a seq more than
    ``max_advance`` above the highest is too far (a forged or corrupt seq must
    not push a gateway's sequence out of reach).
    """
    if seen:
        return SeqOutcome.RESEND if same_content else SeqOutcome.CONFLICT
    if seq <= highest:
        return SeqOutcome.REPLAY
    if max_advance is not None and max_advance > 0 and seq - highest > max_advance:
        return SeqOutcome.TOO_FAR
    return SeqOutcome.NEW


def same_content(stored_digest: str | None, digest: str) -> bool | None:
    """Whether a resend carries the stored content; None when a digest is missing.

    A batch stored before digests (schema 4) has none (NULL). Then the stores
    accept the resend only if every record in it is stored for the device
    already (it would store nothing new), else it is a conflict: never "assumed
    the same", or such a batch id could carry new records.
    """
    if not stored_digest or not digest:
        return None
    return stored_digest == digest

