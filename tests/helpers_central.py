"""Shared pieces for the central receiver tests: signed batches, records, a TCP
proxy to cut Redis. The fixtures live in helpers_central_fixtures.py."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import uuid
from typing import Any

import aiohttp
import psycopg

from agent.central import CentralHandle
from agent.config.model import CentralConfig
from agent.records.protocol import (
    HEADER_BATCH_ID,
    HEADER_KEY_ID,
    HEADER_SIGNATURE,
    batch_id_for,
    sign,
)

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
KEY_ID = "k1"
KEY = b"test-secret-key-0123456789"
KEYS = {KEY_ID: KEY}


def pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def central_config(database_url: str, **overrides: Any) -> CentralConfig:
    return CentralConfig.model_validate(
        {"host": "127.0.0.1", "port": 0, "database_url": database_url, **overrides}
    )


def unique_device() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


def reading(n: int, *, sensor: str = "collar-1", animal: str | None = "cow-7",
            **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": f"r{n:06d}",
        "kind": "reading",
        "sensor_id": sensor,
        "firmware": "collar-v2",
        "topic": f"barn/1/{sensor}",
        "values": {"temp_c": 38.5 + n / 100, "activity": float(n)},
        "raw": {"temp_c": 38.4 + n / 100, "activity": float(n)},
        "units": {"temp_c": "degC", "activity": "steps"},
        "wall_ts": 1_750_000_000.0 + n,
        "mono_ns": 1_000_000 * n,
        "boot_id": "boot-1",
        "clock_synced": True,
    }
    if animal:
        record["animal_id"] = animal
    record.update(extra)
    return record


def batch_doc(device: str, seq: int, records: list[dict[str, Any]], *, epoch: str = "e1",
              batch_id: str | None = None) -> dict[str, Any]:
    return {
        "protocol": 1,
        "device_id": device,
        "epoch": epoch,
        "seq": seq,
        "batch_id": batch_id or batch_id_for(device, epoch, seq),
        "created_mono_ns": 123,
        "sent_wall_ts": 1_750_000_100.0,
        "clock_synced": True,
        "records": records,
    }


def signed(doc: dict[str, Any] | bytes, *, key: bytes = KEY, key_id: str = KEY_ID,
           compress: bool = True) -> tuple[bytes, dict[str, str]]:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    body = gzip.compress(raw) if compress else raw
    headers = {
        "Content-Type": "application/json",
        HEADER_KEY_ID: key_id,
        HEADER_SIGNATURE: sign(key, body),
    }
    if compress:
        headers["Content-Encoding"] = "gzip"
    if isinstance(doc, dict) and isinstance(doc.get("batch_id"), str):
        headers[HEADER_BATCH_ID] = doc["batch_id"]
    return body, headers


async def post(http: aiohttp.ClientSession, handle: CentralHandle, body: bytes,
               headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(handle.url, data=body, headers=headers) as resp:
        data = await resp.json(content_type=None)
        return resp.status, data, dict(resp.headers)


def statuses(response: dict[str, Any]) -> list[str]:
    return [r["status"] for r in response["results"]]


def closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """A local TCP proxy in front of a real server, to cut or stall it (never the server)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "forward"  # "forward" | "refuse" (close at once) | "hang" (never answer)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def cut(self, mode: str = "refuse") -> None:
        """Switch mode and drop every open connection."""
        self.mode = mode
        for writer in list(self._writers):
            writer.close()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.mode == "refuse":
                return
            if self.mode == "hang":
                await reader.read()  # swallow until the client gives up
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
