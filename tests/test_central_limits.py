"""Bounded cost before and after authentication at the central receiver.

A request with the signed header is judged on its headers alone: a wrong key or
signature is answered before one byte of the body is read. A signed body is
streamed through its hash and gunzip with caps; JSON is counted before parsing;
slots per gateway and overall answer 429 / 503 with Retry-After instead of queueing.
(scripts/attack_central.py measures the memory this saves.)
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
from typing import Any

import aiohttp
import pytest
from helpers_central import KEY, KEY_ID, batch_doc, central_config, post, reading, unique_device

from agent.central import CentralHandle, run_central
from agent.central import app as central_app
from agent.central.store import CentralStore
from agent.records.protocol import BATCH_PATH, sign, sign_auth
from agent.sync.signing import headers_for

pytest_plugins = ("helpers_central_fixtures",)


def signed_headers(gateway: str, body: bytes, encoding: str = "gzip",
                   key: bytes = KEY, key_id: str = KEY_ID) -> dict[str, str]:
    digest = hashlib.sha256(body).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Dairy-Key-Id": key_id,
        "X-Dairy-Gateway": gateway,
        "X-Dairy-Body-SHA256": digest,
        "X-Dairy-Auth": sign_auth(key, gateway, key_id, len(body), encoding, digest),
    }
    if encoding == "gzip":
        headers["Content-Encoding"] = "gzip"
    return headers


async def raw_request(port: int, headers: dict[str, str], length: int, send: bytes = b"",
                      timeout: float = 5.0) -> tuple[int, bytes, asyncio.StreamWriter]:
    """Send the headers (and ``send`` of the body) and read the status line and head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {BATCH_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + send)
    await writer.drain()
    data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(data.split(b" ", 2)[1])
    return status, data, writer


async def test_a_bad_header_is_refused_before_the_body_is_sent(
    central: CentralHandle,
) -> None:
    gateway = unique_device()
    big = 15 * 1024 * 1024
    fake_digest = "0" * 64
    cases: list[tuple[dict[str, str], int]] = [
        ({**signed_headers(gateway, b"x"), "X-Dairy-Key-Id": "nobody"}, 401),
        ({**signed_headers(gateway, b"x"), "X-Dairy-Body-SHA256": fake_digest}, 401),
        (signed_headers(gateway, b"x", key=b"wrong-key"), 401),
        ({**signed_headers(gateway, b"x"), "X-Dairy-Body-SHA256": "zz"}, 400),
    ]
    for headers, expected in cases:
        started = time.perf_counter()
        # 15 MiB announced, none of it sent: the answer must not wait for it.
        status, head, writer = await raw_request(central.port, headers, big)
        assert status == expected, head
        assert b"Connection: close" in head  # and the rest is never read
        assert time.perf_counter() - started < 2.0
        writer.close()


async def test_signed_header_needs_a_length(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    gateway = unique_device()
    doc = batch_doc(gateway, 1, [reading(1)])
    body = gzip.compress(json.dumps(doc).encode())
    headers = signed_headers(gateway, body)

    async def chunks() -> Any:
        yield body

    async with http.post(central.url, data=chunks(), headers=headers) as resp:
        assert resp.status == 411
    status, data, _ = await post(http, central, body, headers)
    assert status == 200, data


async def test_a_body_that_does_not_hash_to_its_header_is_refused(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    gateway = unique_device()
    good = gzip.compress(json.dumps(batch_doc(gateway, 1, [reading(1)])).encode())
    forged = gzip.compress(json.dumps(batch_doc(gateway, 1, [reading(2)])).encode())
    forged = forged[: len(good)].ljust(len(good), b"\0")
    status, data, _ = await post(http, central, forged, signed_headers(gateway, good))
    assert status == 401 and data["error"] == "bad_body_digest"
    assert gateway not in (await store.stats())["devices"]


async def test_signed_bombs_are_refused_within_the_caps(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    config = central_config(database_url, max_decompressed_bytes=1024 * 1024,
                            max_json_values=10_000)
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    try:
        gateway = unique_device()
        # 60 MiB of JSON list from about 60 KiB of gzip.
        bomb = gzip.compress(b"[" + b"0," * (30 * 1024 * 1024) + b"0]", compresslevel=9)
        started = time.perf_counter()
        status, data, _ = await post(http, handle, bomb, signed_headers(gateway, bomb))
        assert status == 413 and data["error"] in ("too_many_values", "decompressed_too_large")
        assert time.perf_counter() - started < 2.0
        # Small but many values: refused by the count, before parsing.
        many = json.dumps([{}] * 20_000).encode()
        status, data, _ = await post(http, handle, many, signed_headers(gateway, many,
                                                                         "identity"))
        assert status == 413 and data["error"] == "too_many_values"
        # Deep nesting: a 400, never a crash.
        deep = gzip.compress(b"[" * 5000 + b"]" * 5000)
        status, data, _ = await post(http, handle, deep, signed_headers(gateway, deep))
        assert status == 400 and data["error"] == "bad_json"
        # Trailing data after the gzip stream.
        tail = gzip.compress(json.dumps(batch_doc(gateway, 1, [reading(1)])).encode()) + b"x"
        status, data, _ = await post(http, handle, tail, signed_headers(gateway, tail))
        assert status == 400 and data["error"] == "bad_gzip"
        # A normal batch still goes through.
        doc = batch_doc(gateway, 1, [reading(i) for i in range(50)])
        body = gzip.compress(json.dumps(doc).encode())
        status, data, _ = await post(http, handle, body, signed_headers(gateway, body))
        assert status == 200, data
    finally:
        await handle.stop()


async def test_slots_per_gateway_and_overall_answer_at_once_with_retry_after(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    config = central_config(database_url, max_concurrent_per_gateway=1,
                            max_concurrent_batches=2)
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    held: list[asyncio.StreamWriter] = []
    try:
        a, b, c = unique_device(), unique_device(), unique_device()
        body_a = gzip.compress(json.dumps(batch_doc(a, 1, [reading(1)])).encode())
        body_b = gzip.compress(json.dumps(batch_doc(b, 1, [reading(1)])).encode())
        # Gateway a: a batch whose body is still on its way holds a's only slot.
        reader, writer = await asyncio.open_connection("127.0.0.1", handle.port)
        head = f"POST {BATCH_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body_a)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in signed_headers(a, body_a).items())
        writer.write(head.encode() + b"\r\n" + body_a[:10])
        await writer.drain()
        held.append(writer)
        await asyncio.sleep(0.2)
        status, data, headers = await post(http, handle, body_a, signed_headers(a, body_a))
        assert status == 429 and int(headers["Retry-After"]) >= 1, data
        # Another gateway takes the second slot the same way; a third finds none: 503.
        _reader_b, writer_b = await asyncio.open_connection("127.0.0.1", handle.port)
        head_b = f"POST {BATCH_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body_b)}\r\n"
        head_b += "".join(f"{k}: {v}\r\n" for k, v in signed_headers(b, body_b).items())
        writer_b.write(head_b.encode() + b"\r\n" + body_b[:10])
        await writer_b.drain()
        held.append(writer_b)
        await asyncio.sleep(0.2)
        body_c = gzip.compress(json.dumps(batch_doc(c, 1, [reading(1)])).encode())
        status, data, headers = await post(http, handle, body_c, signed_headers(c, body_c))
        assert status == 503 and int(headers["Retry-After"]) >= 1, data
        # The held batch completes once its body arrives, and frees the slot.
        writer.write(body_a[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        status, data, _ = await post(http, handle, body_c, signed_headers(c, body_c))
        assert status == 200, data
    finally:
        for w in held:
            w.close()
        await handle.stop()


def legacy_headers(body: bytes) -> dict[str, str]:
    """A gateway from before X-Dairy-Auth: the body signature only."""
    return {"Content-Type": "application/json", "Content-Encoding": "gzip",
            "X-Dairy-Key-Id": KEY_ID, "X-Dairy-Signature": sign(KEY, body)}


async def test_a_body_signed_batch_holds_a_slot_and_a_trickle_is_cut_off(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(central_app, "LEGACY_READ_S", 0.5)
    config = central_config(database_url, max_concurrent_batches=1)
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    held: list[asyncio.StreamWriter] = []
    try:
        a, b = unique_device(), unique_device()
        body_a = gzip.compress(json.dumps(batch_doc(a, 1, [reading(1)])).encode())
        body_b = gzip.compress(json.dumps(batch_doc(b, 1, [reading(1)])).encode())
        # A signed-header batch whose body is still coming holds the only slot ...
        _, writer = await asyncio.open_connection("127.0.0.1", handle.port)
        head = f"POST {BATCH_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body_a)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in signed_headers(a, body_a).items())
        writer.write(head.encode() + b"\r\n" + body_a[:10])
        await writer.drain()
        held.append(writer)
        await asyncio.sleep(0.2)
        # ... so a body-signed batch, once verified, finds none either: 503, not stored.
        status, data, headers = await post(http, handle, body_b, legacy_headers(body_b))
        assert status == 503 and data["error"] == "busy", data
        assert int(headers["Retry-After"]) >= 1
        assert (await store.stats())["devices"].get(b) is None
        writer.close()
        held.clear()
        await asyncio.sleep(0.2)

        # A body-signed batch that trickles is cut off after LEGACY_READ_S: 408, closed.
        started = time.monotonic()
        status, _, trickle = await raw_request(handle.port, legacy_headers(body_b),
                                               len(body_b), body_b[:10], timeout=5)
        trickle.close()  # (else aiohttp reads and drops the rest for up to 10 s)
        assert status == 408 and time.monotonic() - started < 3
        # Its reader and slot are free again: the whole batch is stored.
        status, data, _ = await post(http, handle, body_b, legacy_headers(body_b))
        assert status == 200, data
    finally:
        for w in held:
            w.close()
        await handle.stop()


async def test_the_gateway_headers_are_what_central_checks(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    gateway = unique_device()
    doc = batch_doc(gateway, 1, [reading(1)])
    body = gzip.compress(json.dumps(doc).encode())
    headers = headers_for(KEY_ID, KEY, doc["batch_id"], body, gateway)
    assert headers["X-Dairy-Auth"] == signed_headers(gateway, body)["X-Dairy-Auth"]
    status, _, _ = await post(http, central, body, headers)
    assert status == 200


def test_the_limits_and_key_commands_are_documented() -> None:
    from pathlib import Path

    from agent.config.model import CentralConfig

    docs = Path(__file__).resolve().parents[1] / "docs"
    keys_doc = (docs / "central-keys.md").read_text(encoding="utf-8")
    protocol_doc = (docs / "sync-protocol.md").read_text(encoding="utf-8")
    for name in ("max_body_bytes", "max_decompressed_bytes", "max_json_values",
                 "max_concurrent_per_gateway", "max_concurrent_batches", "max_seq_advance",
                 "accept_body_signature"):
        assert name in CentralConfig.model_fields
        assert f"central.{name}" in keys_doc and f"central.{name}" in protocol_doc, name
    for action in ("add", "rotate", "revoke", "list"):
        assert f"dairy-edge central keys {action}" in keys_doc, action
    for header in ("X-Dairy-Auth", "X-Dairy-Gateway", "X-Dairy-Body-SHA256"):
        assert header in protocol_doc, header
    for error in ("wrong_gateway", "batch_conflict", "seq_too_far", "too_many_values",
                  "too_many_requests", "length_required", "bad_body_digest"):
        assert f"`{error}`" in protocol_doc, error


async def test_the_gateway_honours_a_429_retry_after(
    store: CentralStore, database_url: str, tmp_path: Any
) -> None:
    from helpers_store import reading as gateway_reading
    from helpers_sync import KEY as RIG_KEY
    from helpers_sync import Rig

    from agent.clock import SystemClock
    from agent.errors import RetryAfter
    from agent.sync import Uploader

    config = central_config(database_url, max_concurrent_per_gateway=1)
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    gw = unique_device()
    await store.add_key(gw, f"{gw}-k", RIG_KEY.decode())
    rig = Rig(tmp_path / "buf.db", handle.url, key_id=f"{gw}-k")
    rig.up = Uploader(rig.config, gw, RIG_KEY, rig.writer, rig.db, rig.transport, SystemClock())
    writer = None
    try:
        # Another upload of this gateway holds its only slot (its body still coming).
        body = gzip.compress(json.dumps(batch_doc(gw, 99, [reading(1)])).encode())
        headers = headers_for(f"{gw}-k", RIG_KEY, f"{gw}:e1:99", body, gw)
        _, writer = await asyncio.open_connection("127.0.0.1", handle.port)
        head = f"POST {BATCH_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + body[:5])
        await writer.drain()
        await asyncio.sleep(0.2)
        rig.fill([gateway_reading(i) for i in range(3)])
        try:
            await rig.up.sync_once()
            raise AssertionError("expected a 429")
        except RetryAfter as err:
            assert err.seconds == 2.0
        delay = await rig.up._one_round()  # what the run loop would sleep
        assert delay == 2.0 and rig.up.refusal is None  # busy is not a refusal
    finally:
        if writer is not None:
            writer.close()
        await rig.close()
        await handle.stop()
