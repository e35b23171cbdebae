"""Reading a batch body at bounded cost: streamed, hashed, inflated and counted as it comes.

Nothing here trusts the sender's numbers: the body is cut at its declared (and
signed) length, gunzip never writes past ``max_decompressed_bytes``, and the JSON
is refused before parsing when it holds more values than ``max_json_values``
(an upper bound counted from commas, colons and brackets, which costs a few
``bytes.count`` calls, so ``[{},{},...]`` cannot become millions of objects).
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

READ_CHUNK = 64 * 1024
_STRUCTURE = (b",", b":", b"[", b"{")


class BodyRefused(Exception):
    """The body breaks a limit or is malformed: answer ``status`` with ``error``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class ByteStream(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


@dataclass(slots=True)
class Inflater:
    """Turns body chunks into the JSON bytes, gunzipping when asked, within the caps."""

    encoding: str  # "gzip" or "identity"
    max_bytes: int
    max_values: int
    out: bytearray = field(default_factory=bytearray)
    values: int = 0
    _z: Any = None

    def __post_init__(self) -> None:
        if self.encoding == "gzip":
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._z is None:
            self._take(chunk)
            return
        data: bytes | bytearray | memoryview = chunk
        while data:
            if self._z.eof:
                raise BodyRefused(400, "bad_gzip", "trailing data after the gzip stream")
            room = self.max_bytes - len(self.out) + 1
            try:
                piece = self._z.decompress(data, room)
            except zlib.error as err:
                raise BodyRefused(400, "bad_gzip", str(err)) from err
            self._take(piece)
            data = self._z.unconsumed_tail or self._z.unused_data
            if self._z.eof and self._z.unused_data:
                raise BodyRefused(400, "bad_gzip", "trailing data after the gzip stream")

    def finish(self) -> bytearray:
        if self._z is not None and not self._z.eof:
            # Output still held back inside zlib counts against the cap too.
            try:
                self._take(self._z.flush())
            except zlib.error as err:
                raise BodyRefused(400, "bad_gzip", str(err)) from err
            if not self._z.eof:
                raise BodyRefused(400, "bad_gzip", "truncated gzip stream")
        out, self.out = self.out, bytearray()
        return out  # not copied: json.loads takes a bytearray

    def _take(self, piece: bytes | bytearray | memoryview) -> None:
        if len(piece) + len(self.out) > self.max_bytes:
            raise BodyRefused(
                413, "decompressed_too_large", f"at most {self.max_bytes} bytes after gunzip"
            )
        start = len(self.out)
        self.out += piece
        # Count on the copy just made (a memoryview has no count()).
        self.values += sum(self.out.count(c, start) for c in _STRUCTURE)
        if self.values > self.max_values:
            raise BodyRefused(
                413, "too_many_values",
                f"at most {self.max_values} JSON values a batch; send smaller batches",
            )


async def read_capped(stream: ByteStream, limit: int, length: int | None = None) -> bytearray:
    """The whole raw body (for body-signed batches), refused as soon as it passes ``limit``.

    With a declared ``length`` (at most ``limit``) the buffer is made once at that
    size: growing it would hold the old and the new copy at once.
    """
    if length is None:
        body = bytearray()
        while True:
            chunk = await stream.read(READ_CHUNK)
            if not chunk:
                return body
            if len(body) + len(chunk) > limit:
                raise BodyRefused(413, "body_too_large", f"at most {limit} bytes")
            body += chunk
    body = bytearray(length)
    pos = 0
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            break
        if pos + len(chunk) > length:
            raise BodyRefused(400, "length_mismatch", "body longer than its Content-Length")
        body[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos != length:
        raise BodyRefused(400, "length_mismatch", f"body of {pos} bytes, declared {length}")
    return body


async def read_signed(
    stream: ByteStream, length: int, sha256_hex: str, inflater: Inflater
) -> bytearray:
    """Stream exactly ``length`` bytes through the hash and ``inflater``; the JSON bytes.

    The raw body is never held whole: only the inflated JSON (capped) is kept.
    A body that is longer, shorter or hashes otherwise than its signed header
    says is refused (400 / 401) before anything is parsed.
    """
    digest = hashlib.sha256()
    seen = 0
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            break
        seen += len(chunk)
        if seen > length:
            raise BodyRefused(400, "length_mismatch", "body longer than its signed length")
        digest.update(chunk)
        inflater.feed(chunk)
    if seen != length:
        raise BodyRefused(400, "length_mismatch", f"body of {seen} bytes, signed {length}")
    if not hmac.compare_digest(digest.hexdigest(), sha256_hex):
        raise BodyRefused(401, "bad_body_digest", "the body does not hash to its signed digest")
    return inflater.finish()


class Slots:
    """Concurrency limits: batches in progress, over all gateways and per gateway.

    Never waits: a request over a limit is answered at once (429 / 503 with
    Retry-After), so a flood holds no memory while it queues.
    """

    def __init__(self, total: int, per_gateway: int) -> None:
        self.total = total
        self.per_gateway = per_gateway
        self.busy = 0
        self._by_gateway: dict[str, int] = {}

    def acquire(self, gateway: str) -> None:
        """Take a slot for ``gateway`` or raise BodyRefused (429 / 503); never waits."""
        if self._by_gateway.get(gateway, 0) >= self.per_gateway:
            raise BodyRefused(
                429, "too_many_requests",
                f"{self.per_gateway} batches of this gateway are in progress already",
            )
        if self.busy >= self.total:
            raise BodyRefused(503, "busy", f"{self.total} batches in progress; try again later")
        self.busy += 1
        self._by_gateway[gateway] = self._by_gateway.get(gateway, 0) + 1

    def release(self, gateway: str) -> None:
        self.busy -= 1
        left = self._by_gateway[gateway] - 1
        if left:
            self._by_gateway[gateway] = left
        else:
            del self._by_gateway[gateway]
