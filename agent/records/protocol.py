"""The sync protocol between a gateway and the central receiver (version 1).

A batch is gzip-compressed JSON, POSTed with an HMAC-SHA256 signature over the
exact bytes sent. See docs/sync-protocol.md for the whole contract.

Headers on every POST:
    Content-Type: application/json
    Content-Encoding: gzip
    Content-Length: <body bytes>
    X-Dairy-Gateway: <the gateway id, equal to device_id in the body>
    X-Dairy-Key-Id: <key id>
    X-Dairy-Body-SHA256: <hex SHA-256 of the body bytes>
    X-Dairy-Auth: dairy-hmac-v2 sha256=<hex HMAC of auth_message(...)>
    X-Dairy-Signature: sha256=<hex HMAC of the body bytes> (receivers before v2)
    X-Dairy-Batch-Id: <batch id, also inside the body>

The receiver checks X-Dairy-Auth, a signature over a small header, before it
reads the body, and the body against X-Dairy-Body-SHA256 while it reads it.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
BATCH_PATH = "/api/v1/batches"
HEADER_KEY_ID = "X-Dairy-Key-Id"
HEADER_SIGNATURE = "X-Dairy-Signature"
HEADER_BATCH_ID = "X-Dairy-Batch-Id"
HEADER_GATEWAY = "X-Dairy-Gateway"
HEADER_BODY_SHA256 = "X-Dairy-Body-SHA256"
HEADER_AUTH = "X-Dairy-Auth"
AUTH_SCHEME = "dairy-hmac-v2"
SIGNATURE_PREFIX = "sha256="
# Response headers from the central receiver (informational, for logs and diagnostics).
HEADER_SERVER_TIME = "X-Dairy-Server-Time"  # the receiver's wall clock, unix seconds
HEADER_BATCH_OUTCOME = "X-Dairy-Batch-Outcome"  # "new" or "resend"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class RecordStatus(StrEnum):
    ACCEPTED = "accepted"  # stored now
    DUPLICATE = "duplicate"  # stored before; success for the sender
    REJECTED = "rejected"  # will never be stored; count an attempt, dead-letter after N
    RETRY = "retry"  # could not be stored now; send again later


class BatchRecord(BaseModel):
    """One record inside a batch; kind-specific fields ride along in ``extra``."""

    model_config = ConfigDict(extra="allow")

    record_id: str = Field(pattern=ID_PATTERN)
    kind: str
    wall_ts: float
    mono_ns: int
    boot_id: str
    clock_synced: bool


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: int = PROTOCOL_VERSION
    device_id: str = Field(pattern=ID_PATTERN, description="The gateway id.")
    epoch: str = Field(
        pattern=ID_PATTERN,
        description="Random id of the gateway's buffer database; a new one restarts seq.",
    )
    seq: int = Field(ge=1, description="Per device and epoch, +1 for every new batch.")
    batch_id: str = Field(pattern=ID_PATTERN)
    created_mono_ns: int
    sent_wall_ts: float
    clock_synced: bool
    records: list[BatchRecord]


class RecordResult(BaseModel):
    record_id: str
    status: RecordStatus
    reason: str | None = None


class BatchResponse(BaseModel):
    batch_id: str
    results: list[RecordResult]


def sign(key: bytes, body: bytes) -> str:
    """The signature header value for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature header value."""
    return hmac.compare_digest(sign(key, body), signature)


def auth_message(
    gateway: str, key_id: str, length: int, encoding: str, body_sha256: str
) -> bytes:
    """What X-Dairy-Auth signs: who sends, with which key, and which body (by size and digest)."""
    return "\n".join(
        (AUTH_SCHEME, gateway, key_id, str(length), encoding, body_sha256)
    ).encode()


def sign_auth(
    key: bytes, gateway: str, key_id: str, length: int, encoding: str, body_sha256: str
) -> str:
    """The X-Dairy-Auth header value."""
    mac = hmac.new(key, auth_message(gateway, key_id, length, encoding, body_sha256),
                   hashlib.sha256).hexdigest()
    return f"{AUTH_SCHEME} {SIGNATURE_PREFIX}{mac}"


def verify_auth(
    key: bytes, value: str, gateway: str, key_id: str, length: int, encoding: str,
    body_sha256: str,
) -> bool:
    """Constant-time check of an X-Dairy-Auth header value."""
    expected = sign_auth(key, gateway, key_id, length, encoding, body_sha256)
    return value.isascii() and hmac.compare_digest(expected, value)


def batch_id_for(device_id: str, epoch: str, seq: int) -> str:
    """Batch ids are derived, so a resent batch keeps its id."""
    return f"{device_id}:{epoch}:{seq}"


def dump_record(data: dict[str, Any]) -> dict[str, Any]:
    """Drop Nones so batches stay small; the receiver treats missing as null."""
    return {k: v for k, v in data.items() if v is not None}
