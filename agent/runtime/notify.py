"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1), without libsystemd.

A no-op when $NOTIFY_SOCKET is not set (not under systemd, most tests).
"""

from __future__ import annotations

import os
import socket

SEND_TIMEOUT_S = 1.0


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if self._address and self._address.startswith("@"):
            # An abstract-namespace socket: the name starts with a NUL byte.
            self._address = "\0" + self._address[1:]
        usec = os.environ.get("WATCHDOG_USEC")
        # Ping at half the deadline systemd gave us; None when it gave none.
        self.watchdog_interval_s: float | None = int(usec) / 2e6 if usec else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # A receiver that does not read (its queue holds about ten datagrams)
                # must not block the event loop: give up on the message instead.
                sock.settimeout(SEND_TIMEOUT_S)
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError:  # TimeoutError included
            # systemd went away or the socket is wrong: never crash the agent for it.
            pass

    def ready(self) -> None:
        self.send("READY=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more to become ready (systemd >= 236): starting is
        slow but alive, e.g. waiting for the broker."""
        self.send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1e6)}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text[:200]}")
