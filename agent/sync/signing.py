"""Building the signed request: gzip the batch JSON, sign the exact bytes sent."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

from agent.records.protocol import (
    HEADER_AUTH,
    HEADER_BATCH_ID,
    HEADER_BODY_SHA256,
    HEADER_GATEWAY,
    HEADER_KEY_ID,
    HEADER_SIGNATURE,
    sign,
    sign_auth,
)

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_body(batch: dict[str, Any]) -> bytes:
    return _gzip(_encode(batch).encode())


def splice_body(envelope: dict[str, Any], records: list[str]) -> bytes:
    """The batch body with each record's JSON text spliced in as it is.

    ``envelope`` is the batch without its records (``records`` last and empty);
    ``records`` are JSON objects already in the batch's encoding (compact, ASCII,
    no NaN: ``agent.store.outbox.wire_text``), so they need not be decoded and
    encoded again.
    """
    head = _encode(envelope)
    if not head.endswith('"records":[]}'):
        raise ValueError("the envelope must end with an empty records list")
    raw = "".join((head[:-3], "[", ",".join(records), "]}"))
    return _gzip(raw.encode())


def _gzip(raw: bytes) -> bytes:
    # mtime=0: the same batch compresses to the same bytes (easier to debug).
    return gzip.compress(raw, compresslevel=6, mtime=0)


def headers_for(
    key_id: str, key: bytes, batch_id: str, body: bytes, device_id: str | None = None
) -> dict[str, str]:
    """The request headers; with ``device_id``, also the signed header central checks first."""
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        HEADER_KEY_ID: key_id,
        HEADER_SIGNATURE: sign(key, body),
        HEADER_BATCH_ID: batch_id,
    }
    if device_id is not None:
        digest = hashlib.sha256(body).hexdigest()
        headers[HEADER_GATEWAY] = device_id
        headers[HEADER_BODY_SHA256] = digest
        headers[HEADER_AUTH] = sign_auth(key, device_id, key_id, len(body), "gzip", digest)
    return headers
