"""A small asyncio TCP fault proxy for tests (reliability.md section 3.2).

Modes, switchable at runtime (``proxy.set(Fault(...))``) or chosen per new
connection (``proxy.chooser``):

    pass        forward both ways
    delay       hold each chunk ``delay_s`` +- ``jitter_s``
    bandwidth   at most ``bytes_per_s`` each way
    blackhole   accept, read and discard, forward nothing (a stall)
    close       close the client connection at once (FIN)
    reset       abort with SO_LINGER 0, so the peer gets an RST
    cut         forward ``cut_after`` bytes client->server, then reset

Live connections follow ``set`` on their next chunk; a ``chooser`` fault
stays with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    mode: str = "pass"
    delay_s: float = 0.0
    jitter_s: float = 0.0
    bytes_per_s: float = 0.0
    cut_after: int = 0


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.fault = Fault()
        self.chooser: Callable[[random.Random], Fault] | None = None
        self.rng = random.Random(seed)
        self.port = 0
        self.connections = 0
        self.by_mode: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def set(self, fault: Fault) -> None:
        self.fault = fault

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(cr, cw)
        finally:
            self._tasks.discard(task)

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        fixed = self.chooser(self.rng) if self.chooser else None
        first = fixed or self.fault
        self.by_mode[first.mode] = self.by_mode.get(first.mode, 0) + 1
        if first.mode == "close":
            cw.close()
            return
        if first.mode == "reset":
            _rst(cw)
            return
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            _rst(cw)
            return
        sent = [0]

        def current() -> Fault:
            return fixed or self.fault

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, up: bool) -> None:
            while True:
                data = await r.read(4096)
                if not data:
                    break
                f = current()
                if f.mode == "blackhole":
                    continue
                if f.mode in ("reset", "close"):
                    raise ConnectionResetError
                if f.mode == "delay":
                    await asyncio.sleep(max(0.0, f.delay_s + self.rng.uniform(-1, 1) * f.jitter_s))
                elif f.mode == "bandwidth" and f.bytes_per_s > 0:
                    await asyncio.sleep(len(data) / f.bytes_per_s)
                elif f.mode == "cut" and up:
                    room = f.cut_after - sent[0]
                    if room <= len(data):
                        w.write(data[: max(0, room)])
                        await w.drain()
                        raise ConnectionResetError
                sent[0] += len(data) if up else 0
                w.write(data)
                await w.drain()
            if w.can_write_eof():
                with contextlib.suppress(OSError):
                    w.write_eof()

        up = asyncio.ensure_future(pump(cr, sw, True))
        down = asyncio.ensure_future(pump(sr, cw, False))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
            failed = any(t.exception() for t in done if not t.cancelled())
            if not failed:
                await asyncio.wait({up, down})
                failed = any(t.exception() for t in (up, down) if not t.cancelled())
        except asyncio.CancelledError:
            failed = True
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
        if failed:
            _rst(cw)
            _rst(sw)
        else:
            cw.close()
            sw.close()
