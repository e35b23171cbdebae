"""The entry points the CLI (`dairy-edge central`) and the demo call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from agent.central.keys import GatewayKey
from agent.central.server import CentralHandle, load_keys, run_central
from agent.config.model import CentralConfig

log = logging.getLogger(__name__)


async def start_central(
    config: CentralConfig, keys: Mapping[str, bytes | GatewayKey] | None = None
) -> CentralHandle:
    """Start the receiver; keys from secrets (``load_keys``) when not given.

    The handle's ``url`` is the batch URL (a gateway's ``sync.url``), ``port``
    the bound port (config port 0 picks one); ``await handle.stats()``,
    ``await handle.stop()``.
    """
    return await run_central(config, keys if keys is not None else load_keys())


async def serve_forever(config: CentralConfig, stop: asyncio.Event) -> int:
    """Run the receiver until ``stop`` is set (SIGINT/SIGTERM in the CLI)."""
    handle = await start_central(config)
    log.info("central receiver ready: POST %s", handle.url)
    try:
        await stop.wait()
    finally:
        await handle.stop()
    return 0
