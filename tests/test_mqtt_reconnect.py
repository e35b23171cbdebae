"""A private Mosquitto killed with SIGKILL and restarted: the source comes back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_mqtt import PrivateMosquitto, Recorder, make_source, peer, unique, wait_for

from agent import metrics

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto not installed",
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    b = PrivateMosquitto(tmp_path, persistence=False)
    b.start()
    yield b
    b.stop()


def test_reconnects_after_kill9_and_reports_the_gap(broker: PrivateMosquitto) -> None:
    root, cid = unique("barn"), unique("src")
    rec = Recorder()
    gaps: list[int] = []
    source = make_source(
        rec, topic_root=root, client_id=cid, port=broker.port, on_session_gap=lambda: gaps.append(1)
    )
    source.start()
    try:
        assert wait_for(lambda: bool(source.subscriptions()))
        assert source.stats.connects == 1

        for round_no in range(2):
            broker.kill9()
            assert wait_for(lambda: not source.connected, timeout=10)
            assert metrics.MQTT_CONNECTED._value.get() == 0
            broker.start()
            # reconnect_max_s is 1 s in the helper: back well within 1 + 5 s.
            assert wait_for(lambda: source.connected and bool(source.subscriptions()), timeout=6), (
                f"no reconnect in round {round_no}"
            )
            # persistence false: the restarted broker lost our session; the
            # source must notice, count it and subscribe again.
            assert source.session_present is False
            with peer(broker.port) as p:
                p.publish(f"{root}/after", f"r{round_no}".encode())
            assert wait_for(lambda rn=round_no: f"r{rn}".encode() in rec.payloads())

        assert source.stats.connects == 3
        assert source.stats.gaps == 3
        assert gaps == [1, 1, 1]
    finally:
        source.stop(timeout=2)


def test_graceful_restart_with_persistence_keeps_session_and_queue(tmp_path: Path) -> None:
    broker = PrivateMosquitto(tmp_path, persistence=True)
    broker.start()
    root, cid = unique("barn"), unique("src")
    rec = Recorder()
    source = make_source(rec, topic_root=root, client_id=cid, port=broker.port)
    try:
        source.start()
        assert wait_for(lambda: bool(source.subscriptions()))
        source.stop(timeout=2)
        with peer(broker.port) as p:
            for i in range(5):
                p.publish(f"{root}/q", f"q{i}".encode())
        broker.stop()  # SIGTERM: mosquitto writes its database on the way out
        broker.start()

        again = make_source(rec, topic_root=root, client_id=cid, port=broker.port)
        again.start()
        try:
            assert wait_for(lambda: again.connected)
            assert again.session_present is True
            assert again.stats.gaps == 0
            assert wait_for(lambda: len(rec.messages) == 5)
            assert rec.payloads() == [f"q{i}".encode() for i in range(5)]
        finally:
            again.stop(timeout=2)
    finally:
        broker.stop()
