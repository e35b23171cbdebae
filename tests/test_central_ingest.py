"""The central receiver end to end over HTTP, on real PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

import aiohttp
import pytest
from helpers_central import (
    KEY,
    KEYS,
    batch_doc,
    central_config,
    closed_port,
    post,
    reading,
    signed,
    statuses,
    unique_device,
)

from agent.central import CentralHandle, run_central
from agent.central.keys import GatewayKey
from agent.central.store import CentralStore, open_store
from agent.central.store_postgres import PostgresStore
from agent.records.protocol import (
    BATCH_PATH,
    HEADER_BATCH_ID,
    HEADER_BATCH_OUTCOME,
    HEADER_KEY_ID,
    HEADER_SERVER_TIME,
    HEADER_SIGNATURE,
    BatchResponse,
    sign,
)

pytest_plugins = ("helpers_central_fixtures",)  # the fixtures: pg_url, store, central, http

async def device_counts(store: CentralStore, device: str) -> dict[str, int]:
    return dict((await store.stats())["devices"].get(device, {}))


async def test_new_batch_accepted_and_resend_is_duplicate(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    device = unique_device()
    body, headers = signed(batch_doc(device, 1, [reading(i) for i in range(20)]))
    status, data, resp_headers = await post(http, central, body, headers)
    assert status == 200
    parsed = BatchResponse.model_validate(data)  # the gateway's own parser accepts it
    assert [r.record_id for r in parsed.results] == [f"r{i:06d}" for i in range(20)]
    assert statuses(data) == ["accepted"] * 20
    assert resp_headers[HEADER_BATCH_OUTCOME] == "new"
    assert abs(float(resp_headers[HEADER_SERVER_TIME]) - time.time()) < 60

    # The response was lost; the gateway sends the very same batch again.
    status, data, resp_headers = await post(http, central, body, headers)
    assert status == 200
    assert statuses(data) == ["duplicate"] * 20
    assert resp_headers[HEADER_BATCH_OUTCOME] == "resend"

    # A resend rebuilt with a new send time (new bytes, same batch id) is still a resend.
    doc = batch_doc(device, 1, [reading(i) for i in range(20)])
    doc["sent_wall_ts"] += 30
    status, data, _ = await post(http, central, *signed(doc))
    assert status == 200 and statuses(data) == ["duplicate"] * 20

    counts = await device_counts(store, device)
    assert counts["reading"] == 20
    assert counts["batches_new"] == 1 and counts["batches_resend"] == 2


async def test_uncompressed_body_is_accepted(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    body, headers = signed(batch_doc(unique_device(), 1, [reading(1)]), compress=False)
    status, data, _ = await post(http, central, body, headers)
    assert status == 200 and statuses(data) == ["accepted"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h, b: h.pop(HEADER_SIGNATURE), id="signature-missing"),
        pytest.param(lambda h, b: h.update({HEADER_SIGNATURE: sign(b"wrong", b)}), id="wrong-key"),
        pytest.param(lambda h, b: h.update({HEADER_SIGNATURE: "sha256=00"}), id="garbage"),
        pytest.param(lambda h, b: h.update({HEADER_SIGNATURE: "sha256=é"}), id="non-ascii"),
        pytest.param(lambda h, b: h.pop(HEADER_KEY_ID), id="key-id-missing"),
        pytest.param(lambda h, b: h.update({HEADER_KEY_ID: "nope"}), id="key-id-unknown"),
    ],
)
async def test_bad_or_missing_signature_is_401_and_stores_nothing(
    central: CentralHandle,
    http: aiohttp.ClientSession,
    store: CentralStore,
    mutate: Any,
) -> None:
    device = unique_device()
    body, headers = signed(batch_doc(device, 1, [reading(1)]))
    mutate(headers, body)
    status, data, _ = await post(http, central, body, headers)
    assert status == 401
    assert data["error"] in {"unknown_key", "bad_signature"}
    assert await device_counts(store, device) == {}


async def test_body_changed_after_signing_is_401(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    body, headers = signed(batch_doc(unique_device(), 1, [reading(1)]))
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    status, data, _ = await post(http, central, tampered, headers)
    assert status == 401 and data["error"] == "bad_signature"


async def test_replay_of_old_seq_is_409_and_new_epoch_restarts(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    device = unique_device()
    for seq in (1, 2, 5):  # gaps are fine: seq only has to grow
        status, _, _ = await post(http, central, *signed(batch_doc(device, seq, [reading(seq)])))
        assert status == 200
    for seq in (5, 3, 1):  # new batch ids with a seq at or below the highest
        doc = batch_doc(device, seq, [reading(100 + seq)], batch_id=f"forged-{seq}")
        status, data, _ = await post(http, central, *signed(doc))
        assert status == 409
        assert data["error"] == "replay" and data["highest_seq"] == 5
    # The replayed records were not stored.
    assert (await device_counts(store, device))["reading"] == 3
    # A new epoch (the gateway's buffer was recreated) starts again at 1.
    status, data, _ = await post(
        http, central, *signed(batch_doc(device, 1, [reading(200)], epoch="e2"))
    )
    assert status == 200 and statuses(data) == ["accepted"]
    # The old epoch still refuses its old seqs, and takes the next one.
    status, _, _ = await post(http, central, *signed(batch_doc(device, 4, [reading(4)])))
    assert status == 409
    status, _, _ = await post(http, central, *signed(batch_doc(device, 6, [reading(6)])))
    assert status == 200
    counts = await device_counts(store, device)
    assert counts["batches_replay"] == 4 and counts["reading"] == 5


async def test_partial_rejection_keeps_the_good_records(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    device = unique_device()
    stamp = {"wall_ts": 1_750_000_000.0, "mono_ns": 5, "boot_id": "b", "clock_synced": False}
    records: list[dict[str, Any]] = [
        reading(1),
        reading(2, values={"temp_c": "hot"}),  # not a number
        reading(3, values={"temp_c": float("nan")}),  # NaN in JSON
        reading(4, topic="a\u0000b"),  # PostgreSQL cannot store NUL
        reading(5, firmware="\ud800"),  # a lone surrogate from a \\ud800 escape
        reading(6, mono_ns=2**70),  # outside BIGINT
        {"record_id": "a1", "kind": "alert", "rule": "fever", "severity": "warning",
         "state": "raised", "message": "38.9 C", "animal_id": "cow-7", **stamp},
        {"record_id": "a2", "kind": "alert", "rule": "fever", "severity": "apocalyptic",
         "state": "raised", "message": "?", **stamp},
        {"record_id": "e1", "kind": "event", "event": "session_gap", "detail": "x",
         "data": {"n": 1}, **stamp},
        {"record_id": "i1", "kind": "inference", "model": "bcs", "model_version": "3",
         "source_id": "cam-1", "outputs": {"score": 3.25}, "latency_ms": 12.5, **stamp},
        {"record_id": "x1", "kind": "telepathy", **stamp},
        {"record_id": "r-missing", "kind": "reading", **stamp},  # no sensor_id, values
        reading(7, future_field={"kept": True}),  # unknown fields are kept, not refused
    ]
    status, data, _ = await post(http, central, *signed(batch_doc(device, 1, records)))
    assert status == 200
    got = {r["record_id"]: (r["status"], r["reason"]) for r in data["results"]}
    assert [r["record_id"] for r in data["results"]] == [r["record_id"] for r in records]
    accepted = {k for k, (s, _) in got.items() if s == "accepted"}
    assert accepted == {"r000001", "a1", "e1", "i1", "r000007"}
    assert all(s == "rejected" and reason for k, (s, reason) in got.items() if k not in accepted)
    assert got["r000003"][1] == "non_finite_number"
    assert got["r000004"][1] == "nul_character"
    assert got["r000005"][1] == "invalid_unicode"
    assert got["r000006"][1] == "number_out_of_range"
    assert got["x1"][1].startswith("unknown_kind")
    assert "severity" in got["a2"][1]
    counts = await device_counts(store, device)
    assert (counts["reading"], counts["alert"], counts["event"], counts["inference"]) == (
        2, 1, 1, 1,
    )


async def test_same_record_twice_in_one_batch(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    device = unique_device()
    status, data, _ = await post(
        http, central, *signed(batch_doc(device, 1, [reading(1), reading(1), reading(2)]))
    )
    assert status == 200
    assert statuses(data) == ["accepted", "duplicate", "accepted"]
    # And a later, new batch carrying an already stored record (the gateway rebuilt it).
    status, data, _ = await post(
        http, central, *signed(batch_doc(device, 2, [reading(2), reading(3)]))
    )
    assert status == 200 and statuses(data) == ["duplicate", "accepted"]


async def test_concurrent_identical_posts_store_exactly_once(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    device = unique_device()
    n_records, n_posts = 200, 12
    # Seq 1 first, so the race is on an existing (device, epoch) row, not on its creation.
    status, _, _ = await post(http, central, *signed(batch_doc(device, 1, [reading(-1)])))
    assert status == 200
    body, headers = signed(batch_doc(device, 2, [reading(i) for i in range(n_records)]))
    replies = await asyncio.gather(*(post(http, central, body, headers) for _ in range(n_posts)))
    assert [r[0] for r in replies] == [200] * n_posts
    per_record: dict[str, list[str]] = {}
    for _, data, _ in replies:
        for result in data["results"]:
            per_record.setdefault(result["record_id"], []).append(result["status"])
    assert len(per_record) == n_records
    for record_id, seen in per_record.items():
        assert sorted(seen) == ["accepted"] + ["duplicate"] * (n_posts - 1), record_id
    outcomes = sorted(r[2][HEADER_BATCH_OUTCOME] for r in replies)
    assert outcomes == ["new"] + ["resend"] * (n_posts - 1)
    assert (await device_counts(store, device))["reading"] == n_records + 1


async def test_concurrent_overlapping_batches_store_each_record_once(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    # Different devices race on different sequence rows; the same device on one.
    device = unique_device()
    docs = [batch_doc(device, 1, [reading(i) for i in range(60)], epoch=f"ep{k}")
            for k in range(6)]
    replies = await asyncio.gather(*(post(http, central, *signed(d)) for d in docs))
    assert all(r[0] == 200 for r in replies)
    accepted = sum(statuses(r[1]).count("accepted") for r in replies)
    assert accepted == 60
    assert (await device_counts(store, device))["reading"] == 60


async def test_oversized_body_is_413(
    store: CentralStore,
    database_url: str,
    http: aiohttp.ClientSession,
) -> None:
    config = central_config(database_url, max_body_bytes=4096)
    handle = await run_central(config, KEYS, store=store)
    try:
        device = unique_device()
        big = [reading(i, attributes={"pad": f"{i:x}" * 400}) for i in range(200)]
        body, headers = signed(batch_doc(device, 1, big), compress=False)
        assert len(body) > 4096
        status, data, _ = await post(http, handle, body, headers)
        assert status == 413 and data["error"] == "body_too_large"

        # Chunked, without Content-Length: counted while reading, still refused.
        async def chunks() -> Any:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        async with http.post(handle.url, data=chunks(), headers=headers) as resp:
            assert resp.status == 413
        # A batch under the limit still goes through.
        status, _, _ = await post(http, handle, *signed(batch_doc(device, 1, [reading(1)])))
        assert status == 200
    finally:
        await handle.stop()


async def test_gzip_bomb_is_refused_fast(
    store: CentralStore,
    database_url: str,
    http: aiohttp.ClientSession,
) -> None:
    config = central_config(database_url, max_decompressed_bytes=1024 * 1024)
    handle = await run_central(config, KEYS, store=store)
    try:
        # 200 MiB of JSON whitespace compresses to about 200 KiB.
        bomb = gzip.compress(b" " * (200 * 1024 * 1024), compresslevel=9)
        assert len(bomb) < config.max_body_bytes
        headers = {"Content-Encoding": "gzip", HEADER_KEY_ID: "k1",
                   HEADER_SIGNATURE: sign(KEY, bomb)}
        started = time.perf_counter()
        status, data, _ = await post(http, handle, bomb, headers)
        elapsed = time.perf_counter() - started
        assert status == 413 and data["error"] == "decompressed_too_large"
        assert elapsed < 2.0, f"bomb took {elapsed:.2f} s"

        for bad in (b"not gzip at all", gzip.compress(b'{"a": 1}')[:-6],
                    gzip.compress(b"{}") + b"trailing"):
            headers[HEADER_SIGNATURE] = sign(KEY, bad)
            status, data, _ = await post(http, handle, bad, headers)
            assert status == 400 and data["error"] == "bad_gzip", bad
    finally:
        await handle.stop()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_batch"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        (json.dumps({"device_id": "gw", "records": []}).encode(), "bad_batch"),
        (json.dumps({**batch_doc("gw", 1, []), "seq": 0}).encode(), "bad_batch"),
        (json.dumps({**batch_doc("gw", 1, []), "device_id": "a/b"}).encode(), "bad_batch"),
        (json.dumps({**batch_doc("gw", 1, []), "protocol": 2}).encode(), "unsupported_protocol"),
        (json.dumps({**batch_doc("gw", 1, []), "extra": 1}).encode(), "bad_batch"),
        (json.dumps(batch_doc("gw", 1, [{"kind": "reading"}])).encode(), "bad_batch"),
        (json.dumps(batch_doc("gw", 1, ["x"])).encode(), "bad_batch"),  # type: ignore[list-item]
    ],
)
async def test_malformed_batches_are_400(
    central: CentralHandle,
    http: aiohttp.ClientSession,
    raw: bytes,
    error: str,
) -> None:
    status, data, _ = await post(http, central, *signed(raw))
    assert status == 400, data
    assert data["error"] == error and data["detail"]


async def test_batch_id_header_must_match_body(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    body, headers = signed(batch_doc(unique_device(), 1, [reading(1)]))
    headers[HEADER_BATCH_ID] = "something-else"
    status, data, _ = await post(http, central, body, headers)
    assert status == 400 and data["error"] == "batch_id_mismatch"


async def test_too_many_records_is_413(
    store: CentralStore,
    database_url: str,
    http: aiohttp.ClientSession,
) -> None:
    handle = await run_central(central_config(database_url, max_records=5), KEYS, store=store)
    try:
        doc = batch_doc(unique_device(), 1, [reading(i) for i in range(6)])
        status, data, _ = await post(http, handle, *signed(doc))
        assert status == 413 and data["error"] == "too_many_records"
    finally:
        await handle.stop()


async def test_storage_failure_is_503_with_retry_after(
    database_url: str, http: aiohttp.ClientSession
) -> None:
    broken = open_store(database_url)
    await broken.start()
    await broken.close()  # every later call fails like a lost database
    device = unique_device()
    bound = GatewayKey("bound", b"bound-secret-0123456789", device)
    handle = await run_central(central_config(database_url), {**KEYS, "bound": bound},
                               store=broken)
    try:
        status, data, headers = await post(
            http, handle, *signed(batch_doc(device, 1, [reading(1)]), key=bound.secret,
                                  key_id="bound")
        )
        assert status == 503 and data["error"] == "store_unavailable"
        assert int(headers["Retry-After"]) > 0
        # A fleet key is not judged without the key table (in the same database): 503 too.
        status, data, headers = await post(
            http, handle, *signed(batch_doc(unique_device(), 1, [reading(1)]))
        )
        assert status == 503 and data["error"] == "keys_unavailable"
        assert int(headers["Retry-After"]) > 0
        async with http.get(handle.base_url + "/healthz") as resp:
            assert resp.status == 503
        async with http.get(handle.base_url + "/api/v1/stats") as resp:
            assert resp.status == 503
    finally:
        await handle.stop()


async def test_postgres_unreachable_is_503_then_recovers(
    pg_url: str, http: aiohttp.ClientSession
) -> None:
    # A database that is not there (yet): 503, and nothing is counted as seen.
    gone = PostgresStore(f"postgresql://postgres@127.0.0.1:{closed_port()}/x")
    handle = await run_central(central_config(pg_url), KEYS, store=gone)
    device = unique_device()
    body, headers = signed(batch_doc(device, 1, [reading(1)]))
    try:
        status, data, headers_back = await post(http, handle, body, headers)
        assert status == 503 and "Retry-After" in headers_back
    finally:
        await handle.stop()
        await gone.close()
    # The gateway retries later against a working database: the batch is new there.
    live = open_store(pg_url)
    await live.start()
    handle = await run_central(central_config(pg_url), KEYS, store=live)
    try:
        status, data, _ = await post(http, handle, body, headers)
        assert status == 200 and statuses(data) == ["accepted"]
    finally:
        await handle.stop()
        await live.close()


async def test_health_and_stats(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    device = unique_device()
    await post(http, central, *signed(batch_doc(device, 1, [reading(1), reading(2)])))
    async with http.get(central.base_url + "/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    async with http.get(central.base_url + "/api/v1/stats") as resp:
        stats = await resp.json()
    assert stats["devices"][device]["reading"] == 2
    assert stats["cache"] == "off"


async def test_run_central_opens_its_own_store(
    tmp_path: Any, http: aiohttp.ClientSession
) -> None:
    config = central_config(f"sqlite:///{tmp_path / 'own.db'}")
    handle = await run_central(config, KEYS)
    try:
        assert handle.port > 0
        status, _, _ = await post(http, handle, *signed(batch_doc(unique_device(), 1,
                                                                   [reading(1)])))
        assert status == 200
    finally:
        await handle.stop()
        await handle.stop()  # idempotent
    assert (tmp_path / "own.db").exists()


async def test_service_entry_points_used_by_cli_and_demo(
    tmp_path: Any, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.central import serve_forever, start_central

    config = central_config(f"sqlite:///{tmp_path / 'svc.db'}")
    handle = await start_central(config, keys=KEYS)
    try:
        assert handle.url.endswith(BATCH_PATH)  # usable as a gateway's sync.url
        device = unique_device()
        await post(http, handle, *signed(batch_doc(device, 1, [reading(1), reading(2)])))
        stats = await handle.stats()
        assert stats["records"] == 2 and stats["devices"][device]["reading"] == 2
    finally:
        await handle.stop()

    # serve_forever reads keys from secrets, runs until stop is set, then returns 0.
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "from-env")
    monkeypatch.delenv("DAIRY_EDGE_CENTRAL_KEYS", raising=False)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever(config, stop))
    await asyncio.sleep(0.3)
    assert not task.done()
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
