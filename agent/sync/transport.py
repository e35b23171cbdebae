"""The HTTP boundary of sync: a thin protocol and its aiohttp implementation.

Network failures come out as ``TransientError`` so the uploader sees one
error type for "try again later"; HTTP statuses come back as responses.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from agent.config.model import SyncConfig
from agent.errors import TransientError


@dataclass(frozen=True, slots=True)
class TransportResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class SyncTransport(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> TransportResponse:
        ...

    async def close(self) -> None:
        ...


class AiohttpTransport:
    """POSTs with explicit timeouts (aiohttp's default total is 300 s)."""

    def __init__(self, config: SyncConfig, max_response_bytes: int = 16 * 1024 * 1024) -> None:
        # Every phase is bounded: connect, each socket read, and the whole request.
        self._timeout = aiohttp.ClientTimeout(
            total=config.request_timeout_s,
            connect=config.connect_timeout_s,
            sock_connect=config.connect_timeout_s,
            sock_read=config.request_timeout_s,
        )
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=str(config.ca_file)) if config.ca_file else None
        )
        self._max_response = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> TransportResponse:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, auto_decompress=True, raise_for_status=False
            )
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), ssl=self._ssl if self._ssl else True
            ) as resp:
                # read(n) returns what has arrived, up to n bytes (one chunk of a
                # large answer): read to the end, never past the cap.
                data = bytearray()
                while chunk := await resp.content.read(self._max_response + 1 - len(data)):
                    data += chunk
                    if len(data) > self._max_response:
                        raise TransientError(
                            f"response from {url} larger than {self._max_response}"
                        )
                return TransportResponse(resp.status, dict(resp.headers), bytes(data))
        except TimeoutError as err:
            raise TransientError(f"timeout posting to {url}") from err
        except aiohttp.ClientError as err:
            # Includes TLS failures: "certificate is not yet valid" before NTP
            # has set the clock is the normal state of a fresh gateway (T11).
            raise TransientError(f"{type(err).__name__} posting to {url}: {err}") from err
        except (ssl.SSLError, OSError) as err:
            raise TransientError(f"{type(err).__name__} posting to {url}: {err}") from err

    @property
    def timeout(self) -> aiohttp.ClientTimeout:
        return self._timeout

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # Let the connector close its sockets before the loop ends.
            await asyncio.sleep(0)
