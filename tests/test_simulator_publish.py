"""Publish simulator traffic to the real Mosquitto and check the PUBACK oracle."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import InvalidPayload
from agent.sources.publisher import publish, run_simulation
from agent.sources.simulator import BarnSimulator
from tests.helpers_ingest import make_ingestor

HOST, PORT = "127.0.0.1", 1883


def _subscriber(prefix: str) -> tuple[mqtt.Client, list[tuple[str, bytes]], threading.Event]:
    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}")

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe(f"{prefix}/#", qos=1)

    def on_subscribe(*_: object) -> None:
        ready.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, msg.payload))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(HOST, PORT)
    client.loop_start()
    assert ready.wait(10), "no SUBACK"
    return client, got, ready


def test_puback_oracle_matches_what_the_broker_delivered() -> None:
    prefix = f"simtest-{uuid.uuid4().hex[:10]}"
    ing = make_ingestor(topic_prefix=prefix)
    sim = BarnSimulator(ing.specs, seed=9, bad_ratio=0.1, topic_prefix=prefix)
    messages = sim.take(400)
    sub, got, _ = _subscriber(prefix)
    try:
        progress: list[tuple[int, int]] = []
        report = publish(
            messages, HOST, PORT, window=20, progress=lambda s, a: progress.append((s, a))
        )
        deadline = time.monotonic() + 15
        while len(got) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert report.complete and report.sent == 400
    assert sorted(report.acked) == sorted(m.key for m in messages)
    assert report.invalid_sent == sum(1 for m in messages if not m.valid) > 0
    assert progress[-1] == (400, 400)
    # What the broker delivered parses to exactly the acknowledged keys.
    keys = []
    for topic, payload in got:
        try:
            keys.append(ing.parse(topic, payload).record_id)
        except InvalidPayload as err:
            keys.append(ing.quarantine(topic, payload, err).record_id)
    assert sorted(keys) == sorted(report.acked)


def test_rate_limit_and_run_simulation() -> None:
    prefix = f"simtest-{uuid.uuid4().hex[:10]}"
    start = time.monotonic()
    report = run_simulation(HOST, PORT, rate=200, count=100, seed=3, topic_prefix=prefix)
    elapsed = time.monotonic() - start
    assert report.complete and len(report.acked) == 100
    assert elapsed >= 99 / 200 * 0.9  # paced, not a burst
    timed = run_simulation(HOST, PORT, rate=100, duration=0.5, seed=3, topic_prefix=prefix)
    assert 20 <= timed.sent <= 60 and timed.complete


def test_unreachable_broker_raises() -> None:
    with pytest.raises(ConnectionError):
        publish([], HOST, 1, ack_timeout_s=1)
