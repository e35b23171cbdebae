"""The receiver's keyring against a key table it cannot (yet) read, or reads slowly.

A fleet key may write only as gateways without keys of their own, so until the
key table was read once it is refused (503), never let through; a reload of a
key table that was read before never holds requests up.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

import aiohttp
from helpers_central import KEYS, batch_doc, central_config, post, reading, unique_device

from agent.central import CentralHandle, run_central
from agent.central.app import STATE
from agent.central.keys import REFRESH_S, KeyRow, new_secret
from agent.central.store import CentralStore
from agent.sync.signing import headers_for

pytest_plugins = ("helpers_central_fixtures",)


class KeyTable:
    """The real store, with a key table that can fail or hang (everything else as is)."""

    def __init__(self, store: CentralStore) -> None:
        self._store = store
        self.fail = False
        self.hang: asyncio.Event | None = None  # set: key_rows waits for it
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def key_rows(self, include_revoked: bool = False) -> list[KeyRow]:
        self.reads += 1
        if self.fail:
            raise ConnectionError("key table unreachable")
        if self.hang is not None:
            await self.hang.wait()
        return await self._store.key_rows(include_revoked)


def fleet_post(device: str, seq: int, *, legacy: bool = False) -> tuple[bytes, dict[str, str]]:
    doc = batch_doc(device, seq, [reading(seq)])
    body = gzip.compress(json.dumps(doc).encode())
    headers = headers_for("k1", KEYS["k1"], doc["batch_id"], body, device)
    if legacy:
        for name in ("X-Dairy-Auth", "X-Dairy-Gateway", "X-Dairy-Body-SHA256"):
            headers.pop(name)
    return body, headers


async def health(http: aiohttp.ClientSession, handle: CentralHandle) -> tuple[int, Any]:
    async with http.get(handle.base_url + "/healthz") as resp:
        return resp.status, await resp.json()


async def test_a_fleet_key_is_refused_until_the_key_table_was_read(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    owned = unique_device()  # a gateway with a key of its own: closed to the fleet key
    await store.add_key(owned, f"{owned}-k", new_secret())
    table = KeyTable(store)
    table.fail = True
    handle = await run_central(central_config(database_url), KEYS, store=table)  # type: ignore[arg-type]
    try:
        for legacy in (False, True):
            status, data, headers = await post(http, handle, *fleet_post(owned, 1,
                                                                         legacy=legacy))
            assert status == 503 and data["error"] == "keys_unavailable", (legacy, data)
            assert int(headers["Retry-After"]) > 0
        assert (await store.stats())["devices"].get(owned) is None
        status, body = await health(http, handle)
        assert status == 503 and body["keys"].startswith("not loaded")
        assert "key table unreachable" in body["keys"]

        table.fail = False
        await asyncio.sleep(1.1)  # an unloaded keyring retries at most once a second
        status, data, _ = await post(http, handle, *fleet_post(owned, 1))
        assert status == 403 and data["error"] == "wrong_gateway"
        fleet_gw = unique_device()
        status, _, _ = await post(http, handle, *fleet_post(fleet_gw, 1))
        assert status == 200
        status, body = await health(http, handle)
        assert status == 200 and body["keys"] == "ok"

        table.fail = True  # a later failure keeps the keys read: still judged, reported
        await handle.runner.app[STATE].keyring.refresh()
        status, data, _ = await post(http, handle, *fleet_post(owned, 1))
        assert status == 403
        status, body = await health(http, handle)
        assert status == 200 and body["keys"].startswith("stale")
    finally:
        await handle.stop()


async def test_a_key_reload_never_holds_requests_up(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    gw = unique_device()
    secret = new_secret()
    await store.add_key(gw, f"{gw}-k", secret)
    table = KeyTable(store)
    handle = await run_central(central_config(database_url), KEYS, store=table)  # type: ignore[arg-type]
    keyring = handle.runner.app[STATE].keyring
    try:
        assert keyring.loaded
        table.hang = asyncio.Event()  # the next reload waits (up to its 2 s timeout)
        keyring._loaded_mono = time.monotonic() - REFRESH_S - 1  # the keys are stale now
        reads = table.reads
        doc = batch_doc(gw, 1, [reading(1)])
        body = gzip.compress(json.dumps(doc).encode())
        started = time.monotonic()
        status, _, _ = await asyncio.wait_for(
            post(http, handle, body, headers_for(f"{gw}-k", secret.encode(), doc["batch_id"],
                                                 body, gw)),
            1.5,
        )
        assert status == 200 and time.monotonic() - started < 1.0
        assert table.reads == reads + 1  # the reload runs, in the background
        table.hang.set()
    finally:
        await handle.stop()
