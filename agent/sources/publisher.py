"""Publish simulator messages to a broker and record which ones it acknowledged.

The PUBACK list is the oracle for exactly-once tests: every acknowledged
message must end up in the buffer exactly once (as a reading or in
quarantine), whatever happens to the agent in between.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.sources.simulator import BarnSimulator, SimMessage

Progress = Callable[[int, int], None]  # (sent, acked)
# After a stop, how long outstanding PUBACKs are still waited for.
STOP_ACK_WAIT_S = 0.5


@dataclass(slots=True)
class PublishReport:
    sent: int = 0
    acked: list[str] = field(default_factory=list)  # keys the broker PUBACKed, in ack order
    refused: list[str] = field(default_factory=list)  # PUBACK with a failure reason (MQTT 5)
    unacked: list[str] = field(default_factory=list)  # sent, no PUBACK before the deadline
    valid_sent: int = 0
    invalid_sent: int = 0
    elapsed_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)  # expected reason -> count sent

    @property
    def complete(self) -> bool:
        return not self.unacked and not self.refused and len(self.acked) == self.sent

    def summary(self) -> str:
        rate = self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            (
                f"sent {self.sent} messages in {self.elapsed_s:.1f} s ({rate:.0f}/s): "
                f"{len(self.acked)} acknowledged by the broker, {len(self.refused)} refused, "
                f"{len(self.unacked)} unacknowledged"
            ),
            f"valid {self.valid_sent}, malformed {self.invalid_sent}",
        ]
        if self.reasons:
            lines.append(
                "malformed by reason: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
            )
        return "\n".join(lines)


class _Window:
    """Tracks message id -> key, and bounds how many wait for their PUBACK.

    paho calls on_publish while holding its own lock, possibly before
    ``publish`` has returned the mid to us; so an ack for a mid we have not
    recorded yet is parked and matched when we record it. We never hold our
    lock while calling into paho, so the two locks cannot deadlock.
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._pending: dict[int, str] = {}
        self._early: dict[int, bool] = {}
        self.acked: list[str] = []
        self.refused: list[str] = []
        self._idle = threading.Condition(self._lock)

    def acquire(self, timeout: float) -> bool:
        return self._slots.acquire(timeout=timeout)

    def sent(self, mid: int, key: str) -> None:
        with self._lock:
            ok = self._early.pop(mid, None)
            if ok is None:
                self._pending[mid] = key
                return
            self._finish(key, ok)

    def acked_mid(self, mid: int, ok: bool) -> None:
        with self._lock:
            key = self._pending.pop(mid, None)
            if key is None:
                self._early[mid] = ok
                return
            self._finish(key, ok)

    def _finish(self, key: str, ok: bool) -> None:
        (self.acked if ok else self.refused).append(key)
        self._slots.release()
        self._idle.notify_all()

    def wait_idle(self, timeout: float) -> list[str]:
        """Wait until nothing is pending; the keys still pending at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return list(self._pending.values())


def publish(
    messages: Iterable[SimMessage],
    host: str,
    port: int,
    qos: int = 1,
    rate: float | None = None,
    progress: Progress | None = None,
    *,
    window: int = 100,
    ack_timeout_s: float = 30.0,
    client_id: str | None = None,
    connect_timeout_s: float = 10.0,
    protocol: str = "5",
    stop: threading.Event | None = None,
) -> PublishReport:
    """Publish ``messages`` (``rate`` per second, or as fast as the window allows).

    At most ``window`` messages wait for their PUBACK at a time. Returns which
    keys the broker acknowledged; raises ConnectionError if it cannot connect.
    Once ``stop`` is set, waits for outstanding PUBACKs at most STOP_ACK_WAIT_S
    (a demo's broker may be going down with it), not ``ack_timeout_s``.
    """
    if qos not in (1, 2):
        raise ValueError("only QoS 1 and 2 give a PUBACK oracle")
    report = PublishReport()
    tracker = _Window(window)
    connected = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"dairy-edge-sim-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if not getattr(rc, "is_failure", False):
            connected.set()

    def on_publish(_c: mqtt.Client, _u: object, mid: int, rc: object, _p: object) -> None:
        tracker.acked_mid(mid, not getattr(rc, "is_failure", False))

    client.on_connect = on_connect
    client.on_publish = on_publish
    start = time.monotonic()
    try:
        client.connect(host, port, keepalive=30)
    except OSError as err:
        raise ConnectionError(f"cannot connect to {host}:{port}: {err}") from err
    client.loop_start()
    try:
        if not connected.wait(connect_timeout_s):
            raise ConnectionError(f"no CONNACK from {host}:{port}")
        for index, msg in enumerate(messages):
            if rate:
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if not _acquire(tracker, ack_timeout_s, stop):
                break  # the broker stopped acknowledging, or stop; report what we have
            info = client.publish(msg.topic, msg.payload, qos=qos)
            tracker.sent(info.mid, msg.key)
            report.sent += 1
            if msg.valid:
                report.valid_sent += 1
            else:
                reason = msg.expected_reason or "?"
                report.invalid_sent += 1
                report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if progress is not None and report.sent % 100 == 0:
                progress(report.sent, len(tracker.acked))
        stopped = stop is not None and stop.is_set()
        report.unacked = tracker.wait_idle(
            min(ack_timeout_s, STOP_ACK_WAIT_S) if stopped else ack_timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    report.acked = list(tracker.acked)
    report.refused = list(tracker.refused)
    report.elapsed_s = time.monotonic() - start
    if progress is not None:
        progress(report.sent, len(report.acked))
    return report


def _acquire(tracker: _Window, timeout: float, stop: threading.Event | None) -> bool:
    """A window slot within ``timeout``; gives up at once when ``stop`` is set."""
    if stop is None:
        return tracker.acquire(timeout)
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if tracker.acquire(min(0.1, max(0.0, deadline - time.monotonic()))):
            return True
        if time.monotonic() >= deadline:
            return False
    return False


def _print_progress(sent: int, acked: int) -> None:
    print(f"\rsent {sent}  acked {acked}", end="", file=sys.stderr, flush=True)


def run_simulation(
    host: str,
    port: int,
    rate: float | None,
    count: int | None = None,
    duration: float | None = None,
    bad_ratio: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    *,
    firmware_dir: Path | None = None,
    topic_prefix: str = "barn",
    herd_size: int = 60,
    sensors_per_kind: int = 2,
    max_payload_bytes: int = 64 * 1024,
    stop: threading.Event | None = None,
    protocol: str = "5",
) -> PublishReport:
    """Publish simulated barn traffic: ``count`` messages, for ``duration`` seconds,
    or until ``stop`` is set (at least one of the three)."""
    if count is None and duration is None and stop is None:
        raise ValueError("give count, duration or stop")
    if firmware_dir is None:
        from agent.config.model import GatewayConfig

        firmware_dir = GatewayConfig().firmware_dir
    sim = BarnSimulator.from_dir(
        firmware_dir,
        seed=seed,
        herd_size=herd_size,
        sensors_per_kind=sensors_per_kind,
        bad_ratio=bad_ratio,
        topic_prefix=topic_prefix,
        max_payload_bytes=max_payload_bytes,
    )
    stream: Iterable[SimMessage] = sim
    if count is not None:
        stream = itertools.islice(stream, count)
    if duration is not None:
        stream = _until(stream, time.monotonic() + duration)
    if stop is not None:
        stream = itertools.takewhile(lambda _msg: not stop.is_set(), stream)
    report = publish(
        stream,
        host,
        port,
        rate=rate,
        progress=_print_progress if progress else None,
        protocol=protocol,
        stop=stop,
    )
    if progress:
        print(file=sys.stderr)
    return report


def _until(stream: Iterable[SimMessage], deadline: float) -> Iterable[SimMessage]:
    for msg in stream:
        if time.monotonic() >= deadline:
            return
        yield msg
