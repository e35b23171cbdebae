"""Starting and stopping the central receiver (the CLI and the demo call these)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.central.app import make_app
from agent.central.cache import Cache
from agent.central.keys import GatewayKey, parse_keys
from agent.central.store import CentralStore, open_store
from agent.config.model import CentralConfig
from agent.config.secrets import read_secret
from agent.errors import ConfigError
from agent.records.protocol import BATCH_PATH

log = logging.getLogger(__name__)


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
    tls: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

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


def tls_context(config: CentralConfig) -> ssl.SSLContext | None:
    """The server's TLS context from central.tls_cert/tls_key (and tls_client_ca), or None."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
        if config.tls_client_ca is not None:
            context.load_verify_locations(cafile=str(config.tls_client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(
            f"central TLS: cannot load {config.tls_cert} / {config.tls_key}"
            f"{' / ' + str(config.tls_client_ca) if config.tls_client_ca else ''}: {err}"
        ) from err
    return context


async def serve_app(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Listen on host:port (0 picks a free port); returns the runner and the bound port.

    Request auto-decompression is off: the signature covers the gzip bytes, and
    the handler applies its own cap to what they inflate to.
    """
    runner = web.AppRunner(app, auto_decompress=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


async def run_central(
    config: CentralConfig,
    keys: Mapping[str, bytes | GatewayKey],
    *,
    store: CentralStore | None = None,
    cache: Cache | None = None,
) -> CentralHandle:
    """Open the store (unless given), the Redis cache (when configured) and listen.

    A store or cache passed in is used as is (already started) and not closed by
    ``stop``; anything opened here is. ``keys`` come from secrets or code; the
    gateway keys in the database are used as well (agent.central.keys).
    """
    context = tls_context(config)  # a bad certificate is a config error before anything opens
    owns_store = store is None
    owns_cache = cache is None
    if store is None:
        store = open_store(config.database_url, read_secret("db_password"))
        await store.start()
    if not keys and not await _has_database_keys(store):
        if owns_store:
            await store.close()
        raise ConfigError(
            "central: no keys. Add one per gateway with `dairy-edge central keys add "
            "GATEWAY_ID`, or set DAIRY_EDGE_CENTRAL_KEYS / DAIRY_EDGE_HMAC_KEY"
        )
    if cache is None and config.redis_url:
        cache = Cache(
            config.redis_url,
            timeout_s=config.redis_timeout_s,
            prefix=config.redis_prefix,
            stream_maxlen=config.redis_stream_maxlen,
        )
    try:
        runner, port = await serve_app(make_app(config, keys, store, cache), config.host,
                                       config.port, context)
    except BaseException:
        if cache is not None and owns_cache:
            await cache.close()
        if owns_store:
            await store.close()
        raise
    log.info("central receiver listening on %s://%s:%d", "https" if context else "http",
             config.host, port)
    return CentralHandle(config.host, port, runner, store, cache, owns_store, owns_cache,
                         tls=context is not None)


async def _has_database_keys(store: CentralStore) -> bool:
    try:
        return bool(await store.key_rows())
    except Exception:  # noqa: BLE001 - an unreachable database is reported on ingest
        return False


def load_keys(default_key_id: str = "default") -> dict[str, bytes | GatewayKey]:
    """The receiver's keys from secrets (never the config file).

    ``central_keys``: ``<key id>=<key>`` (a fleet key, any gateway without a key of
    its own) or ``<gateway id>/<key id>=<key>`` (that gateway only) items, one per
    line or comma-separated; else ``hmac_key`` as a fleet key under
    ``default_key_id``. Fleet keys come back as bytes, bound keys as GatewayKey.
    """
    keys: dict[str, bytes | GatewayKey] = {}
    many = read_secret("central_keys")
    if many:
        for key_id, key in parse_keys(many).items():
            keys[key_id] = key if key.device_id is not None else key.secret
        return keys
    single = read_secret("hmac_key")
    if single:
        keys[default_key_id] = single.encode()
    return keys
