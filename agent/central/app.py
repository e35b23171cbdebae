"""The central receiver's HTTP API: POST /api/v1/batches, GET /healthz, GET /api/v1/stats.

A batch goes through these checks, in order, each refusing before any costlier
work (docs/sync-protocol.md has the whole contract):

Signed header (X-Dairy-Auth, every gateway since per-gateway keys):
1. Content-Length present and within max_body_bytes             -> 411 / 413
2. key id known, and the key belongs to X-Dairy-Gateway          -> 401 / 403
3. HMAC over (gateway, key id, length, encoding, body SHA-256)   -> 401
   -- nothing of the body has been read so far --
4. a free slot for this gateway and overall                     -> 429 / 503 + Retry-After
5. body streamed: hashed, gunzipped and counted as it comes,
   never past max_decompressed_bytes / max_json_values          -> 400 / 413
6. body length and SHA-256 as signed                             -> 400 / 401
Body signature only (X-Dairy-Signature; accept_body_signature):
1. body size (Content-Length, then counted)                      -> 413
2. key id known                                                  -> 401
3. read at most LEGACY_READERS bodies at once, each within
   LEGACY_READ_S; HMAC over the body                             -> 503 / 408 / 401
4. a free slot, held to the answer (overall; per gateway for a
   key bound to one)                                             -> 429 / 503 + Retry-After
5. gunzip and count as above                                     -> 400 / 413
Then, for both:
7. JSON -> batch envelope; device_id is the key's gateway        -> 400 / 403
8. sequence: resend (id seen, same content) / replay / conflict
   (id seen, other content) / too far (seq jump)                 -> 200 / 409
9. every record on its own: accepted / duplicate / rejected      -> 200
   the database cannot take it                                   -> 503 + Retry-After

The server must run with aiohttp's request auto-decompression OFF (see
``serve_app``): the signature covers the compressed bytes, and a gzip bomb must
meet our cap, not aiohttp's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError

from agent.central.cache import Cache
from agent.central.intake import (
    READ_CHUNK,
    BodyRefused,
    Inflater,
    Slots,
    read_capped,
    read_signed,
)
from agent.central.keys import GatewayKey, Keyring, KeysUnavailable
from agent.central.store import BatchMeta, CentralStore, SeqOutcome, StoreUnavailable
from agent.central.validate import (
    BadEnvelope,
    InvalidRecord,
    ValidRecord,
    json_problem,
    validate_record,
)
from agent.config.model import CentralConfig
from agent.metrics import CENTRAL_BATCHES, CENTRAL_RECORDS
from agent.records.protocol import (
    BATCH_PATH,
    HEADER_AUTH,
    HEADER_BATCH_ID,
    HEADER_BATCH_OUTCOME,
    HEADER_BODY_SHA256,
    HEADER_GATEWAY,
    HEADER_KEY_ID,
    HEADER_SERVER_TIME,
    HEADER_SIGNATURE,
    PROTOCOL_VERSION,
    Batch,
    RecordStatus,
    verify,
    verify_auth,
)

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
STATS_PATH = "/api/v1/stats"
RETRY_AFTER_S = 5  # what a 503 asks the gateway to wait
BUSY_RETRY_AFTER_S = 2  # what a 429 (this gateway's slots taken) asks it to wait
STORE_TIMEOUT_S = 30.0  # a hung database answers 503 rather than holding the request
LEGACY_READERS = 2  # body-signed batches read (unauthenticated) at once
LEGACY_WAIT_S = 30.0  # ...and how long one waits for its turn before a 503
LEGACY_READ_S = 30.0  # ...and how long its body may take to arrive before a 408
_FLEET_SLOT = "\x00fleet-key:"  # slot names of body-signed fleet-key batches (no gateway id)
_THREAD_OVER_BYTES = 16 * 1024  # parse bigger bodies off the event loop
_SHA256_HEX = frozenset("0123456789abcdef")
# The answer's JSON, made once (json.dumps with options makes an encoder per call);
# ASCII, so any record id a gateway sent comes back escaped, never unencodable.
_RESPONSE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


class Refused(Exception):
    """A request answered with an error status before anything was stored."""

    def __init__(self, status: int, error: str, detail: str = "", **extra: Any) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra

    @classmethod
    def from_body(cls, err: BodyRefused) -> Refused:
        return cls(err.status, err.error, err.detail)


@dataclass(slots=True)
class _State:
    config: CentralConfig
    keyring: Keyring
    store: CentralStore
    cache: Cache | None
    slots: Slots
    legacy: asyncio.Semaphore


STATE = web.AppKey("dairy_central", _State)


def make_app(
    config: CentralConfig,
    keys: Mapping[str, bytes | GatewayKey],
    store: CentralStore,
    cache: Cache | None,
) -> web.Application:
    """The receiver application. ``store`` must be started; the caller owns it and ``cache``.

    ``keys``: keys from secrets or code (bytes: a fleet key, see agent.central.keys);
    the gateway keys in the store's database are added to them.
    """
    app = web.Application(client_max_size=config.max_body_bytes)
    app[STATE] = _State(
        config,
        Keyring(keys, store),
        store,
        cache,
        Slots(config.max_concurrent_batches, config.max_concurrent_per_gateway),
        asyncio.Semaphore(LEGACY_READERS),
    )
    app.on_startup.append(_load_keys)
    app.on_cleanup.append(_close_keys)
    app.router.add_post(BATCH_PATH, _post_batch)
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get(STATS_PATH, _stats)
    app.router.add_get("/metrics", _metrics)
    return app


async def _load_keys(app: web.Application) -> None:
    # The first load, before the first request; a failure is retried by requests.
    await app[STATE].keyring.refresh()


async def _close_keys(app: web.Application) -> None:
    await app[STATE].keyring.close()


async def _post_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        try:
            return await _handle_batch(request, state)
        except KeysUnavailable as err:
            # Fail closed: a key is not judged without the key table (fleet keys).
            raise Refused(503, "keys_unavailable", str(err)) from err
    except Refused as err:
        CENTRAL_BATCHES.labels(outcome="refused").inc()
        headers = {}
        if err.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_S)
        elif err.status == 429:
            headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
        if err.status >= 500:
            log.warning("batch not stored: %s", err)
        else:
            log.info("batch refused: %s %s", err.status, err.error)
        response = web.json_response(
            {"error": err.error, "detail": err.detail, **err.extra},
            status=err.status,
            headers=headers or None,
        )
        if not request.content.at_eof():
            # Do not read (nor wait for) a body we refused unread: close the connection.
            response.force_close()
        return response


async def _handle_batch(request: web.Request, state: _State) -> web.StreamResponse:
    if HEADER_AUTH in request.headers:
        key, gateway = await _authenticate_header(request, state)
        try:
            state.slots.acquire(gateway)
        except BodyRefused as err:
            raise Refused.from_body(err) from err
        # The slot is held to the end: reading, parsing, validation and the database.
        try:
            try:
                raw = await _read_signed(request, state)
            except BodyRefused as err:
                raise Refused.from_body(err) from err
            stored = _store_batch(request, state, key, gateway, raw, request.content_length or 0)
            del raw  # held by _store_batch alone, which lets go of it once decoded
            return await stored
        finally:
            state.slots.release(gateway)
    if state.config.accept_body_signature:
        return await _handle_body_signed(request, state)
    raise Refused(401, "auth_required",
                  f"sign the header ({HEADER_AUTH}); body-only signatures are off here")


async def _store_batch(
    request: web.Request,
    state: _State,
    key: GatewayKey,
    gateway: str | None,
    raw: bytearray,
    body_bytes: int,
) -> web.StreamResponse:
    config = state.config
    header_batch_id = request.headers.get(HEADER_BATCH_ID)
    if len(raw) > _THREAD_OVER_BYTES:
        # Decoding, the envelope, the content digest and every record's check in one
        # go on a worker thread: the event loop goes on with other requests (health,
        # other gateways' headers and bodies, their database round trips) meanwhile.
        decoded = asyncio.to_thread(_decode, raw, state, key, gateway, header_batch_id)
        del raw
        batch, raw_records, digest, checked = await decoded
        del decoded
    else:
        batch, raw_records, digest, checked = _decode(raw, state, key, gateway,
                                                      header_batch_id)
        del raw
    valid = [c for c in checked if isinstance(c, ValidRecord)]
    meta = BatchMeta(
        device_id=batch.device_id,
        epoch=batch.epoch,
        seq=batch.seq,
        batch_id=batch.batch_id,
        key_id=key.key_id,
        record_count=len(raw_records),
        sent_wall_ts=batch.sent_wall_ts,
        clock_synced=batch.clock_synced,
        body_bytes=body_bytes,
        content_sha256=digest,
    )
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            result = await state.store.ingest(
                meta, valid, rejected=len(checked) - len(valid),
                max_seq_advance=config.max_seq_advance,
            )
    except (StoreUnavailable, TimeoutError) as err:
        raise Refused(503, "store_unavailable", str(err) or "database timeout") from err
    except Exception as err:  # an unexpected store bug: still a retryable answer
        log.exception("central store failed on a batch")
        raise Refused(503, "store_error", type(err).__name__) from err

    CENTRAL_BATCHES.labels(outcome=str(result.outcome)).inc()
    if result.outcome is SeqOutcome.REPLAY:
        raise Refused(
            409,
            "replay",
            f"seq {batch.seq} is not above {result.highest_seq} for this device and epoch, "
            "and the batch id was never stored; start a new epoch if the buffer was reset",
            highest_seq=result.highest_seq,
        )
    if result.outcome is SeqOutcome.CONFLICT:
        raise Refused(
            409,
            "batch_conflict",
            f"batch {batch.batch_id} was stored with other content; a batch id is "
            "accepted again only with the same records (start a new epoch)",
            highest_seq=result.highest_seq,
        )
    if result.outcome is SeqOutcome.TOO_FAR:
        raise Refused(
            409,
            "seq_too_far",
            f"seq {batch.seq} is more than {config.max_seq_advance} above "
            f"{result.highest_seq} for this device and epoch; start a new epoch",
            highest_seq=result.highest_seq,
        )

    body, accepted = _results(batch.batch_id, checked, valid, result.statuses)
    response = web.Response(
        body=body,
        content_type="application/json",
        headers={
            HEADER_SERVER_TIME: f"{time.time():.3f}",
            HEADER_BATCH_OUTCOME: str(result.outcome),
        },
    )
    # The answer goes out first; only then is Redis touched (fire-and-forget).
    await response.prepare(request)
    await response.write_eof()
    if state.cache is not None and accepted:
        state.cache.submit(batch.device_id, accepted)
    return response


async def _authenticate_header(request: web.Request, state: _State) -> tuple[GatewayKey, str]:
    """Check the signed header; nothing of the body is read here."""
    config = state.config
    headers = request.headers
    length = request.content_length
    if length is None:
        raise Refused(411, "length_required", "send Content-Length (no chunked bodies)")
    if length > config.max_body_bytes:
        raise Refused(413, "body_too_large", f"at most {config.max_body_bytes} bytes")
    gateway = headers.get(HEADER_GATEWAY, "")
    key_id = headers.get(HEADER_KEY_ID, "")
    digest = headers.get(HEADER_BODY_SHA256, "")
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity"):
        raise Refused(415, "unsupported_encoding", "send gzip (or identity)")
    if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
        raise Refused(400, "bad_body_digest", f"{HEADER_BODY_SHA256}: 64 lowercase hex digits")
    key = await state.keyring.lookup(key_id)
    if key is None:
        raise Refused(401, "unknown_key", f"{HEADER_KEY_ID} is missing or not a known key id")
    if not state.keyring.may_write(key, gateway):
        raise Refused(403, "wrong_gateway",
                      f"key {key.key_id} may not write as gateway {gateway!r}")
    if not verify_auth(key.secret, headers.get(HEADER_AUTH, ""), gateway, key_id, length,
                       encoding, digest):
        raise Refused(401, "bad_signature", f"{HEADER_AUTH} does not match the header")
    return key, gateway


async def _read_signed(request: web.Request, state: _State) -> bytearray:
    config = state.config
    inflater = Inflater(
        request.headers.get("Content-Encoding", "identity").strip().lower(),
        config.max_decompressed_bytes,
        config.max_json_values,
    )
    return await read_signed(
        request.content, request.content_length or 0,
        request.headers[HEADER_BODY_SHA256], inflater,
    )


async def _handle_body_signed(request: web.Request, state: _State) -> web.StreamResponse:
    """Batches signed over the body only: read (a few at a time, within a deadline),
    verify, then hold a slot (like a signed header) while decoding and storing."""
    config = state.config
    length = request.content_length
    if length is not None and length > config.max_body_bytes:
        raise Refused(413, "body_too_large", f"at most {config.max_body_bytes} bytes")
    key_id = request.headers.get(HEADER_KEY_ID, "")
    key = await state.keyring.lookup(key_id)
    if key is None:
        raise Refused(401, "unknown_key", f"{HEADER_KEY_ID} is missing or not a known key id")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    try:
        async with asyncio.timeout(LEGACY_WAIT_S):
            await state.legacy.acquire()
    except TimeoutError as err:
        raise Refused(503, "busy", "too many body-signed batches at once") from err
    slot: str | None = None
    try:
        try:
            try:
                # A trickling body may not hold one of the LEGACY_READERS for long.
                async with asyncio.timeout(LEGACY_READ_S):
                    body = await read_capped(request.content, config.max_body_bytes, length)
            except TimeoutError as err:
                raise Refused(408, "body_timeout",
                              f"the body did not arrive within {LEGACY_READ_S:g} s") from err
            signature = request.headers.get(HEADER_SIGNATURE, "")
            # No copies of the body: hmac and zlib read the bytearray as it is.
            if not signature.isascii() or not verify(key.secret, body, signature):  # type: ignore[arg-type]
                raise Refused(401, "bad_signature",
                              f"{HEADER_SIGNATURE} does not match the body")
            if encoding not in ("gzip", "identity"):
                raise Refused(415, "unsupported_encoding", "send gzip (or identity)")
            # From here on a batch in progress, like a signed-header one: it counts against
            # max_concurrent_batches (and, for a key bound to a gateway, its gateway's
            # slots; a fleet key's gateway is known only after parsing) until the answer.
            name = key.device_id if key.device_id is not None else f"{_FLEET_SLOT}{id(request)}"
            state.slots.acquire(name)
            slot = name
            inflater = Inflater(encoding, config.max_decompressed_bytes, config.max_json_values)
            size = len(body)
            if size > _THREAD_OVER_BYTES:
                await asyncio.to_thread(_feed_in_chunks, inflater, body)
            else:
                inflater.feed(body)
            del body
            raw = inflater.finish()
        finally:
            state.legacy.release()
        stored = _store_batch(request, state, key, None, raw, size)
        del raw  # held by _store_batch alone, which lets go of it once decoded
        return await stored
    except BodyRefused as err:
        raise Refused.from_body(err) from err
    finally:
        if slot is not None:
            state.slots.release(slot)


def _feed_in_chunks(inflater: Inflater, body: bytearray) -> None:
    """Feed a whole body in read-sized slices (zlib copies what it has not consumed)."""
    view = memoryview(body)
    try:
        for start in range(0, len(view), READ_CHUNK):
            inflater.feed(view[start : start + READ_CHUNK])
    finally:
        view.release()


def _decode(
    raw: bytearray, state: _State, key: GatewayKey, gateway: str | None,
    header_batch_id: str | None,
) -> tuple[Batch, list[Any], str, list[ValidRecord | InvalidRecord]]:
    """The batch, its raw records, its content digest and each record checked.

    The refusals come in the order of the module docstring: JSON, envelope, gateway,
    batch id, size; only then the digest and the records.
    """
    try:
        data = _loads(raw)
    except BodyRefused as err:
        raise Refused.from_body(err) from err
    batch, raw_records = _envelope(data)
    if gateway is not None and batch.device_id != gateway:
        raise Refused(403, "wrong_gateway",
                      f"the body's device_id is not {HEADER_GATEWAY} {gateway!r}")
    if not state.keyring.may_write(key, batch.device_id):
        raise Refused(403, "wrong_gateway",
                      f"key {key.key_id} may not write as gateway {batch.device_id}")
    if header_batch_id is not None and header_batch_id != batch.batch_id:
        raise Refused(400, "batch_id_mismatch", f"{HEADER_BATCH_ID} differs from the body")
    if len(raw_records) > state.config.max_records:
        raise Refused(413, "too_many_records",
                      f"at most {state.config.max_records} records a batch")
    return batch, raw_records, _content_digest(batch, raw_records), _check_records(raw_records)


def _loads(raw: bytearray) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BodyRefused(400, "bad_json", str(err)[:200]) from err


def _content_digest(batch: Batch, raw_records: list[Any]) -> str:
    """SHA-256 of what a resend must repeat: epoch, seq and the records, canonical JSON."""
    text = json.dumps([batch.epoch, batch.seq, raw_records], sort_keys=True,
                      separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _envelope(data: Any) -> tuple[Batch, list[Any]]:
    if not isinstance(data, dict):
        raise Refused(400, "bad_batch", "the body must be a JSON object")
    records = data.get("records")
    if not isinstance(records, list):
        raise Refused(400, "bad_batch", "records must be a list")
    if data.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise Refused(400, "unsupported_protocol", f"this receiver speaks {PROTOCOL_VERSION}")
    envelope = {k: v for k, v in data.items() if k != "records"}
    problem = json_problem(envelope)
    if problem:
        raise Refused(400, "bad_batch", problem)
    try:
        # Records are checked one by one later, so one bad record fails only itself.
        batch = Batch.model_validate({**envelope, "records": []})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "batch"
        raise Refused(400, "bad_batch", f"{where}: {first['msg']}") from err
    return batch, records


def _check_records(raw_records: list[Any]) -> list[ValidRecord | InvalidRecord]:
    try:
        return [validate_record(i, item) for i, item in enumerate(raw_records)]
    except BadEnvelope as err:
        raise Refused(400, "bad_batch", str(err)) from err


def _results(
    batch_id: str,
    checked: list[ValidRecord | InvalidRecord],
    valid: list[ValidRecord],
    statuses: list[tuple[RecordStatus, str | None]],
) -> tuple[bytes, list[ValidRecord]]:
    """The answer (a BatchResponse as JSON, results in batch order) and the records
    stored just now.

    Encoded directly, and the metrics counted once per batch: a RecordResult model
    and a labelled-counter lookup per record cost more than storing the record.
    """
    by_index = {record.index: statuses[pos] for pos, record in enumerate(valid)}
    results: list[dict[str, Any]] = []
    accepted: list[ValidRecord] = []
    counts: Counter[tuple[str, str]] = Counter()
    for item in checked:
        if isinstance(item, InvalidRecord):
            results.append({"record_id": item.record_id, "status": RecordStatus.REJECTED.value,
                            "reason": item.reason})
            counts["rejected", "invalid"] += 1
            continue
        status, reason = by_index[item.index]
        results.append({"record_id": item.record_id, "status": status.value, "reason": reason})
        counts[status.value, item.kind] += 1
        if status is RecordStatus.ACCEPTED:
            accepted.append(item)
    for (status_label, kind), n in counts.items():
        CENTRAL_RECORDS.labels(status=status_label, kind=kind).inc(n)
    body = _RESPONSE_ENCODER.encode({"batch_id": batch_id, "results": results})
    return body.encode("ascii"), accepted


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cache = "off" if state.cache is None else state.cache.state
    # "ok", or why the key table is not (or no longer) read: see Keyring.health.
    keys = state.keyring.health()
    try:
        async with asyncio.timeout(2.0):
            await state.store.ping()
    except Exception as err:  # noqa: BLE001 - any failure means "not healthy", never a crash
        return web.json_response(
            {"status": "unavailable", "store": str(err)[:200], "cache": cache, "keys": keys},
            status=503,
        )
    if not state.keyring.loaded:
        return web.json_response(
            {"status": "unavailable", "store": "ok", "cache": cache, "keys": keys}, status=503
        )
    return web.json_response({"status": "ok", "store": "ok", "cache": cache, "keys": keys})


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            stats = await state.store.stats()
    except Exception as err:  # noqa: BLE001 - the dashboard gets a 503, ingest goes on
        return web.json_response(
            {"error": "store_unavailable", "detail": str(err)[:200]},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    stats["cache"] = "off" if state.cache is None else state.cache.state
    return web.json_response(stats)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text: the dairy_edge_central_* counters of this process."""
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
