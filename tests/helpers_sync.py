"""A tiny batch receiver for sync tests, speaking agent.records.protocol.

Modes: ``ok``, ``500``, ``503`` (with Retry-After), ``hang``, ``400``; and
``reject_ids``: records answered ``rejected`` in every batch that holds them;
``max_records`` / ``too_large_ids``: 413 for batches over the limit or holding
one of those ids; ``chooser``: picks the mode per request (fault tests).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import ssl
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from helpers_store import make_writer, query

from agent.clock import SystemClock
from agent.config.model import SyncConfig
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
from agent.store.writer import StoreWriter
from agent.sync import AiohttpTransport, Uploader

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
    max_records: int | None = None
    too_large_ids: set[str] = field(default_factory=set)
    chooser: Callable[[Batch], str] | None = None
    hang_s: float = 3600.0
    close_connections: bool = False  # no keep-alive: every request on a new connection
    # (arrival loop.time(), batch_id, mode answered, answer loop.time())
    log: list[tuple[float, str, str, float]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # store count per record id
    seen: Counter[str] = field(default_factory=Counter)  # deliveries per record id

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(BATCH_PATH, self._handle)
        # auto_decompress=False: the HMAC covers the gzip bytes as sent.
        self.runner = web.AppRunner(app, shutdown_timeout=0.1, auto_decompress=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{port}{BATCH_PATH}"
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
        mode = self.chooser(batch) if self.chooser else self.mode
        arrived = self.request_times[-1]
        resp = await self._answer(batch, mode)
        if self.close_connections:
            resp.force_close()
        self.log.append((arrived, batch.batch_id, mode, asyncio.get_running_loop().time()))
        return resp

    async def _answer(self, batch: Batch, mode: str) -> web.Response:
        too_many = self.max_records is not None and len(batch.records) > self.max_records
        if too_many or any(r.record_id in self.too_large_ids for r in batch.records):
            return web.Response(status=413, text="too large")
        if mode == "500":
            return web.Response(status=500, text="boom")
        if mode == "503":
            return web.Response(status=503, headers={"Retry-After": self.retry_after})
        if mode == "400":
            return web.Response(status=400, text="bad batch")
        if mode == "409":
            return web.Response(status=409, text="seq already used")
        if mode == "hang":
            await asyncio.sleep(self.hang_s)
            return web.Response(status=500, text="hung")
        results = []
        for rec in batch.records:
            self.seen[rec.record_id] += 1
            if rec.record_id in self.reject_ids:
                results.append(RecordResult(record_id=rec.record_id,
                                            status=RecordStatus.REJECTED, reason="poison"))
            elif rec.record_id in self.stored:
                results.append(RecordResult(record_id=rec.record_id,
                                            status=RecordStatus.DUPLICATE))
            else:
                self.stored.add(rec.record_id)
                self.accepted[rec.record_id] += 1
                results.append(RecordResult(record_id=rec.record_id,
                                            status=RecordStatus.ACCEPTED))
        resp = BatchResponse(batch_id=batch.batch_id, results=results)
        return web.json_response(resp.model_dump(mode="json"))


def future_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed cert for 127.0.0.1 valid only from 2030: "not yet valid" today,
    like every certificate on a gateway that booted in 1970 (openssl CLI)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, csr, cert = folder / "key.pem", folder / "req.csr", folder / "cert.pem"
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    (folder / "new").mkdir(exist_ok=True)
    conf = folder / "ca.cnf"
    conf.write_text(
        "[ca]\ndefault_ca = d\n[d]\n"
        f"dir = {folder}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/new\n"
        "serial = $dir/serial\ndefault_md = sha256\npolicy = p\n"
        "copy_extensions = copy\nunique_subject = no\n"
        "[p]\ncommonName = supplied\n"
        "[ext]\nsubjectAltName = IP:127.0.0.1\nbasicConstraints = critical,CA:true\n"
        "keyUsage = digitalSignature,keyCertSign\n"
    )
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(csr), "-subj", "/CN=127.0.0.1"])
    run(["openssl", "ca", "-batch", "-selfsign", "-config", str(conf), "-keyfile", str(key),
         "-in", str(csr), "-out", str(cert), "-extensions", "ext",
         "-startdate", "300101000000Z", "-enddate", "310101000000Z"])
    return cert, key


class Rig:
    """A writer, an uploader and its transport on one database."""

    def __init__(self, db: Path, url: str, **sync: Any) -> None:
        self.db = db
        defaults: dict[str, Any] = {
            "backoff_base_s": 0.01, "backoff_max_s": 0.05, "interval_s": 0.05,
            "request_timeout_s": 2.0, "connect_timeout_s": 1.0,
        }
        self.config = SyncConfig(url=url, **{**defaults, **sync})
        self.writer: StoreWriter = make_writer(db, commit_interval_ms=5)
        self.transport = AiohttpTransport(self.config)
        self.up = Uploader(self.config, "gw-01", KEY, self.writer, db, self.transport,
                           SystemClock())

    def fill(self, items: list[Any]) -> None:
        for item in items:
            self.writer.submit(item)
        self.writer.call(lambda c: None).result(5)  # everything before it is committed

    async def close(self) -> None:
        await self.transport.close()
        self.writer.close()


def unsynced(db: Path) -> int:
    return sum(query(db, f"SELECT COUNT(*) FROM {t} WHERE synced = 0")[0][0]
               for t in ("alerts", "events", "inferences", "readings"))
