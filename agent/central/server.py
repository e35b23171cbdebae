"""Starting and stopping the central receiver (the CLI and the demo call these)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.central.app import make_app
from agent.central.cache import Cache
from agent.central.store import CentralStore, open_store
from agent.config.model import CentralConfig
from agent.config.secrets import read_secret
from agent.errors import ConfigError
from agent.records.protocol import BATCH_PATH

log = logging.getLogger(__name__)

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(slots=True)
class CentralHandle:
    """A running receiver: where it listens, and how to stop it."""

    host: str
    port: int
    runner: web.AppRunner
    store: CentralStore
    cache: Cache | None
    owns_store: bool = True
    owns_cache: bool = True
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The batch URL: what a gateway's ``sync.url`` should be."""
        return self.base_url + BATCH_PATH

    async def stats(self) -> dict[str, Any]:
        """The store's counts, plus ``records``: the total over devices and kinds."""
        stats = await self.store.stats()
        stats["records"] = sum(
            count
            for per_device in stats["devices"].values()
            for name, count in per_device.items()
            if not name.startswith("batches_")
        )
        return stats

    async def stop(self) -> None:
        """Stop listening, then close the cache and (if we opened it) the store; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.runner.cleanup()
        if self.cache is not None and self.owns_cache:
            await self.cache.close()
        if self.owns_store:
            await self.store.close()


async def serve_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listen on host:port (0 picks a free port); returns the runner and the bound port.

    Request auto-decompression is off: the signature covers the gzip bytes, and
    the handler applies its own cap to what they inflate to.
    """
    runner = web.AppRunner(app, auto_decompress=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


async def run_central(
    config: CentralConfig,
    keys: dict[str, bytes],
    *,
    store: CentralStore | None = None,
    cache: Cache | None = None,
) -> CentralHandle:
    """Open the store (unless given), the Redis cache (when configured) and listen.

    A store or cache passed in is used as is (already started) and not closed by
    ``stop``; anything opened here is.
    """
    if not keys:
        raise ConfigError("central: no HMAC keys (set DAIRY_EDGE_HMAC_KEY or central_keys)")
    owns_store = store is None
    owns_cache = cache is None
    if store is None:
        store = open_store(config.database_url, read_secret("db_password"))
        await store.start()
    if cache is None and config.redis_url:
        cache = Cache(
            config.redis_url,
            timeout_s=config.redis_timeout_s,
            prefix=config.redis_prefix,
            stream_maxlen=config.redis_stream_maxlen,
        )
    try:
        runner, port = await serve_app(make_app(config, keys, store, cache), config.host,
                                       config.port)
    except BaseException:
        if cache is not None and owns_cache:
            await cache.close()
        if owns_store:
            await store.close()
        raise
    log.info("central receiver listening on %s:%d", config.host, port)
    return CentralHandle(config.host, port, runner, store, cache, owns_store, owns_cache)


def load_keys(default_key_id: str = "default") -> dict[str, bytes]:
    """The receiver's HMAC keys, from secrets (never the config file).

    ``central_keys``: ``<key id>=<key>`` pairs, one per line or comma-separated
    (several keys allow rotation); else ``hmac_key`` under ``default_key_id``.
    """
    keys: dict[str, bytes] = {}
    many = read_secret("central_keys")
    if many:
        for item in re.split(r"[,\n]", many):
            item = item.strip()
            if not item:
                continue
            key_id, sep, key = item.partition("=")
            key_id = key_id.strip()
            if not sep or not key.strip() or not _KEY_ID.match(key_id):
                raise ConfigError("central_keys: expected <key id>=<key> pairs")
            keys[key_id] = key.strip().encode()
        return keys
    single = read_secret("hmac_key")
    if single:
        keys[default_key_id] = single.encode()
    return keys
