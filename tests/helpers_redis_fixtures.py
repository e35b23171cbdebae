"""Redis fixtures for the central tests (a plugin:
pytest_plugins = ("helpers_redis_fixtures",)): a client, a key prefix of the
test's own, and a central receiver that caches into Redis.

Kept apart from helpers_gateway so pytest can load this module itself before
any test module imports it (as helpers_central_fixtures is).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from helpers_central import KEYS, REDIS_URL, central_config

from agent.central import Cache, CentralHandle, run_central
from agent.central.store import CentralStore


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except Exception:  # noqa: BLE001
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of our own, deleted afterwards."""
    name = f"dairytest-{uuid.uuid4().hex[:10]}"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=f"{name}:*")]
    if keys:
        await redis_client.delete(*keys)


@pytest_asyncio.fixture
async def cached_central(
    store: CentralStore, database_url: str, prefix: str
) -> AsyncIterator[CentralHandle]:
    cache = Cache(REDIS_URL, prefix=prefix, timeout_s=1.0)
    handle = await run_central(central_config(database_url), KEYS, store=store, cache=cache)
    try:
        yield handle
    finally:
        await handle.stop()
        await cache.close()
