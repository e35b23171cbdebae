"""The central receiver's HTTP API: POST /api/v1/batches, GET /healthz, GET /api/v1/stats.

A batch goes through these checks, in order, each refusing before any costlier
work (docs/sync-protocol.md has the whole contract):

1. body size, counted on the raw bytes as they arrive           -> 413
2. key id known                                                 -> 401
3. HMAC-SHA256 over the exact body bytes, constant time         -> 401
4. gunzip with a cap on the decompressed size                   -> 400 / 413
5. JSON -> batch envelope                                       -> 400
6. sequence: resend (id seen) / replay (new id, old seq)        -> 200 / 409
7. every record on its own: accepted / duplicate / rejected     -> 200
   the database cannot take it                                  -> 503 + Retry-After

The server must run with aiohttp's request auto-decompression OFF (see
``serve_app``): the signature covers the compressed bytes, and a gzip bomb must
meet our cap, not aiohttp's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError

from agent.central.cache import Cache
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
    HEADER_BATCH_ID,
    HEADER_BATCH_OUTCOME,
    HEADER_KEY_ID,
    HEADER_SERVER_TIME,
    HEADER_SIGNATURE,
    PROTOCOL_VERSION,
    Batch,
    BatchResponse,
    RecordResult,
    RecordStatus,
    verify,
)

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
STATS_PATH = "/api/v1/stats"
RETRY_AFTER_S = 5  # what a 503 asks the gateway to wait
STORE_TIMEOUT_S = 30.0  # a hung database answers 503 rather than holding the request
_THREAD_OVER_BYTES = 16 * 1024  # decode bigger bodies (and their gunzip) off the event loop
_READ_CHUNK = 64 * 1024


class Refused(Exception):
    """A request answered with an error status before anything was stored."""

    def __init__(self, status: int, error: str, detail: str = "", **extra: Any) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra


@dataclass(slots=True)
class _State:
    config: CentralConfig
    keys: dict[str, bytes]
    store: CentralStore
    cache: Cache | None


STATE = web.AppKey("dairy_central", _State)


def make_app(
    config: CentralConfig,
    keys: dict[str, bytes],
    store: CentralStore,
    cache: Cache | None,
) -> web.Application:
    """The receiver application. ``store`` must be started; the caller owns it and ``cache``."""
    app = web.Application(client_max_size=config.max_body_bytes)
    app[STATE] = _State(config, dict(keys), store, cache)
    app.router.add_post(BATCH_PATH, _post_batch)
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get(STATS_PATH, _stats)
    app.router.add_get("/metrics", _metrics)
    return app


async def _post_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        return await _handle_batch(request, state)
    except Refused as err:
        CENTRAL_BATCHES.labels(outcome="refused").inc()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if err.status == 503 else None
        if err.status >= 500:
            log.warning("batch not stored: %s", err)
        else:
            log.info("batch refused: %s %s", err.status, err.error)
        return web.json_response(
            {"error": err.error, "detail": err.detail, **err.extra},
            status=err.status,
            headers=headers,
        )


async def _handle_batch(request: web.Request, state: _State) -> web.StreamResponse:
    config = state.config
    body = await _read_body(request, config.max_body_bytes)

    key_id = request.headers.get(HEADER_KEY_ID, "")
    key = state.keys.get(key_id)
    if key is None:
        raise Refused(401, "unknown_key", f"{HEADER_KEY_ID} is missing or not a known key id")
    signature = request.headers.get(HEADER_SIGNATURE, "")
    if not signature.isascii() or not verify(key, body, signature):
        raise Refused(401, "bad_signature", f"{HEADER_SIGNATURE} does not match the body")

    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity"):
        raise Refused(415, "unsupported_encoding", "send gzip (or identity)")
    if len(body) > _THREAD_OVER_BYTES:
        data = await asyncio.to_thread(_decode, body, encoding, config.max_decompressed_bytes)
    else:
        data = _decode(body, encoding, config.max_decompressed_bytes)
    batch, raw_records = _envelope(data)
    header_batch_id = request.headers.get(HEADER_BATCH_ID)
    if header_batch_id is not None and header_batch_id != batch.batch_id:
        raise Refused(400, "batch_id_mismatch", f"{HEADER_BATCH_ID} differs from the body")
    if len(raw_records) > config.max_records:
        raise Refused(413, "too_many_records", f"at most {config.max_records} records a batch")

    checked = _check_records(raw_records)
    valid = [c for c in checked if isinstance(c, ValidRecord)]
    meta = BatchMeta(
        device_id=batch.device_id,
        epoch=batch.epoch,
        seq=batch.seq,
        batch_id=batch.batch_id,
        key_id=key_id,
        record_count=len(raw_records),
        sent_wall_ts=batch.sent_wall_ts,
        clock_synced=batch.clock_synced,
        body_bytes=len(body),
    )
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            result = await state.store.ingest(meta, valid, rejected=len(checked) - len(valid))
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

    results, accepted = _results(checked, valid, result.statuses)
    response = web.Response(
        body=BatchResponse(batch_id=batch.batch_id, results=results).model_dump_json(),
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


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise Refused(413, "body_too_large", f"at most {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise Refused(413, "body_too_large", f"at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, encoding: str, limit: int) -> Any:
    """gunzip (never past ``limit`` bytes of output) and parse JSON."""
    raw = body
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(body, limit + 1)
        except zlib.error as err:
            raise Refused(400, "bad_gzip", str(err)) from err
        if len(raw) > limit or inflater.unconsumed_tail:
            raise Refused(413, "decompressed_too_large", f"at most {limit} bytes after gunzip")
        if not inflater.eof or inflater.unused_data:
            raise Refused(400, "bad_gzip", "truncated gzip stream or trailing data")
    elif len(raw) > limit:
        raise Refused(413, "decompressed_too_large", f"at most {limit} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise Refused(400, "bad_json", str(err)[:200]) from err


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
    checked: list[ValidRecord | InvalidRecord],
    valid: list[ValidRecord],
    statuses: list[tuple[RecordStatus, str | None]],
) -> tuple[list[RecordResult], list[ValidRecord]]:
    """Per-record results in batch order, and the records stored just now."""
    by_index = {record.index: statuses[pos] for pos, record in enumerate(valid)}
    results: list[RecordResult] = []
    accepted: list[ValidRecord] = []
    valid_by_index = {record.index: record for record in valid}
    for item in checked:
        if isinstance(item, InvalidRecord):
            results.append(RecordResult(record_id=item.record_id, status=RecordStatus.REJECTED,
                                        reason=item.reason))
            CENTRAL_RECORDS.labels(status="rejected", kind="invalid").inc()
            continue
        status, reason = by_index[item.index]
        results.append(RecordResult(record_id=item.record_id, status=status, reason=reason))
        CENTRAL_RECORDS.labels(status=str(status), kind=item.kind).inc()
        if status is RecordStatus.ACCEPTED:
            accepted.append(valid_by_index[item.index])
    return results, accepted


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cache = "off" if state.cache is None else state.cache.state
    try:
        async with asyncio.timeout(2.0):
            await state.store.ping()
    except Exception as err:  # noqa: BLE001 - any failure means "not healthy", never a crash
        return web.json_response(
            {"status": "unavailable", "store": str(err)[:200], "cache": cache}, status=503
        )
    return web.json_response({"status": "ok", "store": "ok", "cache": cache})


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
