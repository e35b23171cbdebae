"""A tiny batch receiver for sync tests, speaking agent.records.protocol.

Modes: ``ok``, ``500``, ``503`` (with Retry-After), ``hang``, ``400``; and
``reject_ids``: records answered ``rejected`` in every batch that holds them.
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field

from aiohttp import web

from agent.records.protocol import (
    BATCH_PATH,
    HEADER_BATCH_ID,
    HEADER_SIGNATURE,
    Batch,
    BatchResponse,
    RecordResult,
    RecordStatus,
    verify,
)

KEY = b"test-key-0123456789"


@dataclass
class Receiver:
    key: bytes = KEY
    mode: str = "ok"
    retry_after: str = "1"
    reject_ids: set[str] = field(default_factory=set)
    batches: list[Batch] = field(default_factory=list)  # every well-formed batch seen
    request_times: list[float] = field(default_factory=list)  # loop.time() per request
    stored: set[str] = field(default_factory=set)
    bad_signatures: int = 0
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(BATCH_PATH, self._handle)
        # auto_decompress=False: the HMAC covers the gzip bytes as sent.
        self.runner = web.AppRunner(app, shutdown_timeout=0.1, auto_decompress=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{BATCH_PATH}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.request_times.append(asyncio.get_running_loop().time())
        # Read the raw bytes: the signature covers exactly what was sent.
        body = await request.content.read()
        if not verify(self.key, body, request.headers.get(HEADER_SIGNATURE, "")):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        batch = Batch.model_validate_json(gzip.decompress(body))
        assert request.headers[HEADER_BATCH_ID] == batch.batch_id
        self.batches.append(batch)
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        if self.mode == "503":
            return web.Response(status=503, headers={"Retry-After": self.retry_after})
        if self.mode == "400":
            return web.Response(status=400, text="bad batch")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        results = []
        for rec in batch.records:
            if rec.record_id in self.reject_ids:
                results.append(RecordResult(record_id=rec.record_id,
                                            status=RecordStatus.REJECTED, reason="poison"))
            elif rec.record_id in self.stored:
                results.append(RecordResult(record_id=rec.record_id,
                                            status=RecordStatus.DUPLICATE))
            else:
                self.stored.add(rec.record_id)
                results.append(RecordResult(record_id=rec.record_id,
                                            status=RecordStatus.ACCEPTED))
        resp = BatchResponse(batch_id=batch.batch_id, results=results)
        return web.json_response(resp.model_dump(mode="json"))
