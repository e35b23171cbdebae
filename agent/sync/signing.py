"""Building the signed request: gzip the batch JSON, sign the exact bytes sent."""

from __future__ import annotations

import gzip
import json
from typing import Any

from agent.records.protocol import (
    HEADER_BATCH_ID,
    HEADER_KEY_ID,
    HEADER_SIGNATURE,
    sign,
)


def encode_body(batch: dict[str, Any]) -> bytes:
    raw = json.dumps(batch, separators=(",", ":"), allow_nan=False).encode()
    # mtime=0: the same batch compresses to the same bytes (easier to debug).
    return gzip.compress(raw, compresslevel=6, mtime=0)


def headers_for(key_id: str, key: bytes, batch_id: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        HEADER_KEY_ID: key_id,
        HEADER_SIGNATURE: sign(key, body),
        HEADER_BATCH_ID: batch_id,
    }
