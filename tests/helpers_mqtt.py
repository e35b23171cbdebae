"""Shared pieces for the MQTT tests: unique names, a recording handler, a plain
paho publisher/observer, and a private Mosquitto that a test may kill."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import SystemClock
from agent.config.model import MqttConfig
from agent.sources.mqtt import MqttSource

HOST = "127.0.0.1"
SHARED_PORT = 1883


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorder:
    """A MessageHandler that records messages; acks at once unless told not to."""

    auto_ack: bool = True
    raise_on: bytes | None = None
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    acks: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        if self.raise_on is not None and payload == self.raise_on:
            raise RuntimeError("handler exploded")
        with self.lock:
            self.messages.append((topic, payload))
            self.acks.append(ack)
        if self.auto_ack:
            ack()

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [p for _, p in self.messages]


def make_source(
    handler: Recorder,
    *,
    topic_root: str,
    client_id: str | None = None,
    port: int = SHARED_PORT,
    gateway_id: str = "gw-test",
    status_prefix: str | None = None,
    protocol: str = "auto",
    on_session_gap: Callable[[], None] | None = None,
    session_expiry_s: int = 300,
) -> MqttSource:
    config = MqttConfig(
        host=HOST,
        port=port,
        topics=[f"{topic_root}/#"],
        protocol=protocol,  # type: ignore[arg-type]
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        keepalive_s=5,
        session_expiry_s=session_expiry_s,
        status_prefix=status_prefix or unique("st"),
    )
    return MqttSource(
        config,
        client_id or unique("src"),
        gateway_id,
        handler,
        SystemClock(),
        None,
        on_session_gap=on_session_gap,
    )


class Peer:
    """A plain paho client for publishing and observing, MQTT 3.1.1."""

    def __init__(self, port: int = SHARED_PORT) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=unique("peer"), protocol=paho.MQTTv311
        )
        self.received: list[paho.MQTTMessage] = []
        self._subacks: set[int] = set()
        self.client.on_message = lambda c, u, m: self.received.append(m)
        self.client.on_subscribe = lambda c, u, mid, rc, props: self._subacks.add(mid)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def subscribe(self, topic: str) -> None:
        result, mid = self.client.subscribe(topic, 1)
        assert result == 0
        assert wait_for(lambda: mid in self._subacks, timeout=5), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def peer(port: int = SHARED_PORT) -> Iterator[Peer]:
    p = Peer(port)
    try:
        yield p
    finally:
        p.close()


class PrivateMosquitto:
    """``mosquitto -c <tmpconf>`` on a free port; ``kill9`` then ``start`` again."""

    def __init__(
        self,
        workdir: Path,
        persistence: bool = False,
        queue_limit: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise FileNotFoundError("mosquitto not installed")
        self.binary = binary
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest none",
            # Started as root, mosquitto would drop to user "mosquitto" and
            # could not write its database into our temporary folder.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
        ]
        if queue_limit is not None:
            # 0 = no limit: the default 1000 would silently drop during an outage.
            lines += [f"max_queued_messages {queue_limit}", "max_queued_bytes 0"]
        lines += list(extra)
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)])
        if not wait_for(self._listening, timeout=10):
            raise RuntimeError("private mosquitto did not start")

    def _listening(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None


async def async_wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """wait_for for tests whose event loop runs a broker: never blocks the loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()
