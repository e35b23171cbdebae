"""A gateway (real writer, outbox and uploader) syncing to a real central.

Shared by the identification and the body condition / milk check tests; the
Redis fixtures beside it live in helpers_redis_fixtures.py (a plugin).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from helpers_central import KEY, KEY_ID, unique_device
from helpers_store import make_writer

from agent.clock import SystemClock
from agent.config.model import SyncConfig
from agent.errors import TransientError
from agent.store.writer import StoreWriter
from agent.sync import AiohttpTransport, Uploader
from agent.sync.transport import TransportResponse


class LosingTransport(AiohttpTransport):
    """The real transport; it keeps what it sent and can lose the next answer
    (the request reached central, the reply never reached the gateway)."""

    def __init__(self, config: SyncConfig) -> None:
        super().__init__(config)
        self.lose_next = False
        self.sent: list[tuple[bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> TransportResponse:
        response = await super().post(url, body, headers)
        self.sent.append((body, dict(headers)))
        if self.lose_next:
            self.lose_next = False
            raise TransientError("answer lost on the way back")
        return response


class Gateway:
    """A gateway's writer and uploader syncing to a real central."""

    def __init__(self, db: Path, url: str, **sync: Any) -> None:
        self.db = db
        self.device = unique_device()
        self.config = SyncConfig(url=url, key_id=KEY_ID, backoff_base_s=0.01,
                                 backoff_max_s=0.05, request_timeout_s=5.0, **sync)
        self.writer: StoreWriter = make_writer(db, commit_interval_ms=5)
        self.transport = LosingTransport(self.config)
        self.up = Uploader(self.config, self.device, KEY, self.writer, db, self.transport,
                           SystemClock())

    def store(self, *items: Any) -> None:
        for item in items:
            assert self.writer.submit(item)
        self.writer.call(lambda c: None).result(5)  # everything before it is committed

    async def close(self) -> None:
        await self.transport.close()
        self.writer.close()
