"""The Redis cache: latest state per sensor and animal, and never in ingest's way (T23)."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from helpers_central import (
    KEYS,
    REDIS_URL,
    TcpProxy,
    batch_doc,
    central_config,
    closed_port,
    post,
    reading,
    signed,
    statuses,
    unique_device,
)

from agent.central import Cache, CentralHandle, run_central
from agent.central.store import CentralStore, open_store

# The fixtures: pg_url, store, central, http; redis_client and a key prefix of our own.
pytest_plugins = ("helpers_central_fixtures", "helpers_redis_fixtures")

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[CentralStore]:
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    await store.start()
    yield store
    await store.close()


async def start(store: CentralStore, cache: Cache | None) -> CentralHandle:
    return await run_central(central_config("sqlite:///unused.db"), KEYS, store=store,
                             cache=cache)


async def test_latest_state_per_sensor_and_animal(
    sqlite_store: CentralStore,
    http: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
    prefix: str,
) -> None:
    cache = Cache(REDIS_URL, prefix=prefix, timeout_s=1.0)
    handle = await start(sqlite_store, cache)
    device = unique_device()
    try:
        records = [reading(i) for i in range(1, 6)] + [reading(9, sensor="odd:id", animal=None)]
        status, data, _ = await post(http, handle, *signed(batch_doc(device, 1, records)))
        assert status == 200 and statuses(data) == ["accepted"] * 6
        await cache.drain()
        sensor = await redis_client.hgetall(f"{prefix}:sensor:{device}:collar-1")
        assert sensor["record_id"] == "r000005"
        assert sensor["animal_id"] == "cow-7" and sensor["clock_synced"] == "1"
        assert '"temp_c":38.55' in sensor["values"]
        animal = await redis_client.hgetall(f"{prefix}:animal:{device}:cow-7")
        assert animal["record_id"] == "r000005" and animal["sensor_id"] == "collar-1"
        assert await redis_client.xlen(f"{prefix}:readings") == 6
        # An id with ':' never becomes part of a key.
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*")]
        assert not any("odd" in k for k in keys), keys

        # An older reading arriving late (a backlog) does not overwrite newer state.
        status, _, _ = await post(http, handle, *signed(batch_doc(device, 2, [reading(0)])))
        assert status == 200
        await cache.drain()
        latest = await redis_client.hget(f"{prefix}:sensor:{device}:collar-1", "record_id")
        assert latest == "r000005"
        assert await redis_client.xlen(f"{prefix}:readings") == 7
        assert cache.state == "up"
    finally:
        await handle.stop()
        await cache.close()


async def _latencies(http: aiohttp.ClientSession, handle: CentralHandle,
                     n: int) -> list[float]:
    device = unique_device()
    out = []
    for seq in range(1, n + 1):
        body, headers = signed(batch_doc(device, seq, [reading(seq * 100 + i) for i in range(20)]))
        started = time.perf_counter()
        status, data, _ = await post(http, handle, body, headers)
        out.append(time.perf_counter() - started)
        assert status == 200 and statuses(data) == ["accepted"] * 20
    return out


async def test_a_batch_out_of_order_leaves_its_newest_reading_and_streams_them_all(
    sqlite_store: CentralStore,
    http: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
    prefix: str,
) -> None:
    """One script call per batch: the hash holds the newest reading by wall_ts (not the
    last sent), the stream every reading oldest first, text kept as sent."""
    cache = Cache(REDIS_URL, prefix=prefix, timeout_s=1.0)
    handle = await start(sqlite_store, cache)
    device = unique_device()
    try:
        order = [3, 7, 1, 5, 2]
        records = [reading(n, animal="cow-\u00e9") for n in order]
        records.append(reading(8, sensor="collar-2", animal=None))
        status, data, _ = await post(http, handle, *signed(batch_doc(device, 1, records)))
        assert status == 200 and statuses(data) == ["accepted"] * 6
        await cache.drain()
        sensor = await redis_client.hgetall(f"{prefix}:sensor:{device}:collar-1")
        assert sensor["record_id"] == "r000007" and sensor["wall_ts"] == repr(1_750_000_007.0)
        assert sensor["animal_id"] == "cow-\u00e9" and sensor["units"] == (
            '{"temp_c":"degC","activity":"steps"}')
        other = await redis_client.hgetall(f"{prefix}:sensor:{device}:collar-2")
        assert other["record_id"] == "r000008" and other["animal_id"] == ""
        entries = await redis_client.xrange(f"{prefix}:readings")
        assert [e[1]["record_id"] for e in entries] == [
            "r000001", "r000002", "r000003", "r000005", "r000007", "r000008"]
        assert entries[0][1]["animal_id"] == "cow-\u00e9"
        assert entries[0][1]["values"] == '{"temp_c":38.51,"activity":1.0}'
        # A later batch with an older reading of the same sensor changes no hash.
        status, _, _ = await post(http, handle, *signed(batch_doc(device, 2, [reading(4)])))
        assert status == 200
        await cache.drain()
        assert await redis_client.hget(f"{prefix}:sensor:{device}:collar-1",
                                       "record_id") == "r000007"
        assert await redis_client.xlen(f"{prefix}:readings") == 7
    finally:
        await handle.stop()
        await cache.close()


@pytest.mark.parametrize("failure", ["closed-port", "hanging"])
async def test_redis_down_or_hanging_never_slows_ingest(
    sqlite_store: CentralStore,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    baseline_handle = await start(sqlite_store, None)
    try:
        baseline = await _latencies(http, baseline_handle, 15)
    finally:
        await baseline_handle.stop()

    proxy = TcpProxy(6379)
    if failure == "closed-port":
        url = f"redis://127.0.0.1:{closed_port()}/0"
    else:
        await proxy.start()
        proxy.cut("hang")  # accepts the connection, never answers
        url = f"redis://127.0.0.1:{proxy.port}/0"
    # A breaker of 0 s makes every batch try Redis: the worst case for ingest.
    cache = Cache(url, prefix="dairytest-down", timeout_s=0.25, breaker_s=0.0)
    handle = await start(sqlite_store, cache)
    caplog.set_level(logging.INFO, logger="agent.central.cache")
    try:
        with_dead_cache = await _latencies(http, handle, 15)
        await cache.drain()
        assert cache.state == "down"
        async with http.get(handle.base_url + "/api/v1/stats") as resp:
            assert (await resp.json())["cache"] == "down"
    finally:
        await handle.stop()
        await cache.close()
        await proxy.stop()
    base_p50, dead_p50 = statistics.median(baseline), statistics.median(with_dead_cache)
    print(f"ingest p50 {base_p50 * 1000:.1f} ms without cache, {dead_p50 * 1000:.1f} ms "
          f"with Redis {failure}; max {max(with_dead_cache) * 1000:.1f} ms")
    # The response never waits for Redis: waiting would cost the 250 ms timeout per batch
    # when Redis hangs. Medians stay near the no-cache baseline.
    assert max(with_dead_cache) < 0.25
    assert dead_p50 < base_p50 + 0.05
    down_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(down_logs) == 1  # logged once, not once per batch


async def test_breaker_skips_redis_then_reconnects_and_logs_once_each_way(
    sqlite_store: CentralStore,
    http: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.central.cache")
    proxy = TcpProxy(6379)
    await proxy.start()
    clock = FakeClock()
    cache = Cache(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, timeout_s=0.5,
                  breaker_s=30.0, clock=clock)
    handle = await start(sqlite_store, cache)
    device = unique_device()
    key = f"{prefix}:sensor:{device}:collar-1"
    try:
        await post(http, handle, *signed(batch_doc(device, 1, [reading(1)])))
        await cache.drain()
        assert await redis_client.hget(key, "record_id") == "r000001"

        proxy.cut("refuse")
        await post(http, handle, *signed(batch_doc(device, 2, [reading(2)])))
        await cache.drain()
        assert cache.state == "down"
        # While the breaker is open nothing is even attempted.
        for seq in (3, 4):
            status, _, _ = await post(http, handle, *signed(batch_doc(device, seq,
                                                                      [reading(seq)])))
            assert status == 200
        assert not cache.submit(device, [])  # nothing to cache, nothing scheduled

        proxy.mode = "forward"  # Redis is back ...
        clock.now += 31  # ... and the breaker's pause is over
        await post(http, handle, *signed(batch_doc(device, 5, [reading(5)])))
        await cache.drain()
        assert cache.state == "up"
        assert await redis_client.hget(key, "record_id") == "r000005"
    finally:
        await handle.stop()
        await cache.close()
        await proxy.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


async def test_cache_skips_updates_while_breaker_open(redis_client: aioredis.Redis) -> None:
    clock = FakeClock()
    cache = Cache(f"redis://127.0.0.1:{closed_port()}/0", prefix="dairytest-x",
                  breaker_s=10.0, clock=clock)
    try:
        from agent.central.validate import ValidRecord, validate_record

        record: Any = validate_record(0, reading(1))
        assert isinstance(record, ValidRecord)
        assert cache.submit("gw-1", [record]) is True
        await cache.drain()
        assert cache.state == "down"
        assert cache.submit("gw-1", [record]) is False  # skipped: breaker open
        clock.now += 11
        assert cache.submit("gw-1", [record]) is True  # half-open: one more try
        await cache.drain()
        assert cache.submit("gw-1", [record]) is False
        assert cache.submit("bad:device", [record]) is False  # never a key from a bad id
    finally:
        await cache.close()
    await asyncio.sleep(0)
