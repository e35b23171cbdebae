"""MqttSource against the real Mosquitto at 127.0.0.1:1883 (unique ids and topics)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from helpers_mqtt import Recorder, make_source, peer, unique, wait_for

from agent import metrics
from agent.errors import ConfigError
from agent.sources.mqtt import MqttSource, valid_topic_filter


@pytest.fixture
def started() -> Iterator[list[MqttSource]]:
    """Sources a test starts; all stopped at the end."""
    sources: list[MqttSource] = []
    yield sources
    for source in sources:
        source.stop(timeout=2)


def _start(sources: list[MqttSource], source: MqttSource) -> MqttSource:
    sources.append(source)
    source.start()
    assert wait_for(lambda: source.connected and bool(source.subscriptions())), "no connection"
    return source


def test_messages_arrive_and_are_counted(started: list[MqttSource]) -> None:
    root = unique("barn")
    rec = Recorder()
    before = metrics.MESSAGES_RECEIVED._value.get()
    source = _start(started, make_source(rec, topic_root=root))
    assert source.subscriptions() == [f"{root}/#"]
    assert source.stats.protocol == "5"
    assert metrics.MQTT_CONNECTED._value.get() == 1
    with peer() as p:
        for i in range(5):
            p.publish(f"{root}/collar/c{i}", f"m{i}".encode())
    assert wait_for(lambda: len(rec.messages) == 5)
    assert rec.messages[0] == (f"{root}/collar/c0", b"m0")
    assert source.stats.messages == 5
    assert source.stats.acks == 5
    assert metrics.MESSAGES_RECEIVED._value.get() - before >= 5


def test_unacked_message_is_redelivered_acked_one_is_not(started: list[MqttSource]) -> None:
    """The PUBACK goes out only when the handler's ack is called."""
    root, cid = unique("barn"), unique("src")
    rec = Recorder(auto_ack=False)
    source = _start(started, make_source(rec, topic_root=root, client_id=cid))
    with peer() as p:
        p.publish(f"{root}/a", b"acked")
        p.publish(f"{root}/b", b"not-acked")
    assert wait_for(lambda: len(rec.messages) == 2)
    # Ack the first from another thread, as the store writer does after COMMIT.
    t = threading.Thread(target=rec.acks[0])
    t.start()
    t.join()
    assert wait_for(lambda: source.stats.acks == 1)
    source.stop(timeout=2)

    rec2 = Recorder()
    source2 = _start(started, make_source(rec2, topic_root=root, client_id=cid))
    assert source2.session_present is True
    assert wait_for(lambda: b"not-acked" in rec2.payloads())
    # Give the broker a moment to (wrongly) redeliver the acked one too.
    assert not wait_for(lambda: b"acked" in rec2.payloads(), timeout=0.5)


def test_stale_ack_after_reconnect_is_dropped(started: list[MqttSource]) -> None:
    root, cid = unique("barn"), unique("src")
    rec = Recorder(auto_ack=False)
    source = _start(started, make_source(rec, topic_root=root, client_id=cid))
    with peer() as p:
        p.publish(f"{root}/a", b"x")
    assert wait_for(lambda: len(rec.messages) == 1)
    source.stop(timeout=2)
    rec.acks[0]()  # the commit finished after the connection went away
    rec.acks[0]()  # and a second call is harmless
    assert source.stats.acks == 0
    assert source.stats.stale_acks == 1


def test_persistent_session_queues_while_away(started: list[MqttSource]) -> None:
    root, cid = unique("barn"), unique("src")
    gaps: list[int] = []
    source = _start(
        started,
        make_source(
            Recorder(), topic_root=root, client_id=cid, on_session_gap=lambda: gaps.append(1)
        ),
    )
    assert source.session_present is False  # a new client id has no session yet
    assert gaps == [1]
    source.stop(timeout=2)

    with peer() as p:
        for i in range(20):
            p.publish(f"{root}/s", f"away-{i}".encode())

    rec = Recorder()
    again = make_source(rec, topic_root=root, client_id=cid, on_session_gap=lambda: gaps.append(2))
    _start(started, again)
    assert again.session_present is True
    assert again.stats.gaps == 0
    assert gaps == [1]
    assert wait_for(lambda: len(rec.messages) == 20)
    assert rec.payloads() == [f"away-{i}".encode() for i in range(20)]


def test_session_gap_recorded_for_fresh_client_id(started: list[MqttSource]) -> None:
    gaps: list[str] = []
    before = metrics.SESSION_GAPS._value.get()
    source = _start(
        started,
        make_source(Recorder(), topic_root=unique("barn"), on_session_gap=lambda: gaps.append("g")),
    )
    assert source.session_present is False
    assert source.stats.gaps == 1
    assert gaps == ["g"]
    assert metrics.SESSION_GAPS._value.get() - before >= 1


def test_raising_handler_does_not_kill_the_loop(started: list[MqttSource]) -> None:
    root = unique("barn")
    rec = Recorder(raise_on=b"boom")
    gap_calls: list[int] = []

    def bad_gap() -> None:
        gap_calls.append(1)
        raise RuntimeError("gap callback exploded")

    before = metrics.MQTT_HANDLER_ERRORS._value.get()
    source = _start(started, make_source(rec, topic_root=root, on_session_gap=bad_gap))
    assert gap_calls == [1]
    with peer() as p:
        p.publish(f"{root}/x", b"boom")
        p.publish(f"{root}/x", b"fine")
    assert wait_for(lambda: rec.payloads() == [b"fine"])
    assert source.stats.handler_errors == 1
    assert metrics.MQTT_HANDLER_ERRORS._value.get() - before == 1
    assert source.connected


def test_availability_retained_online_then_offline(started: list[MqttSource]) -> None:
    gw = unique("gw")
    source = make_source(Recorder(), topic_root=unique("barn"), gateway_id=gw)
    topic = source.availability_topic
    assert topic.endswith(f"/{gw}/availability")
    _start(started, source)

    def retained() -> list[bytes]:
        with peer() as p:
            p.subscribe(topic)
            wait_for(lambda: bool(p.received), timeout=3)
            return [m.payload for m in p.received if m.retain]

    assert wait_for(lambda: retained() == [b"online"], timeout=5)
    source.stop(timeout=2)
    assert retained() == [b"offline"]
    with peer() as p:  # leave no retained message behind on the shared broker
        p.publish(topic, b"", retain=True)


def test_publish_only_under_own_prefix(started: list[MqttSource]) -> None:
    root = unique("barn")
    source = _start(started, make_source(Recorder(), topic_root=root, gateway_id="gw-7"))
    alert_topic = source.status_topic("alerts", "mastitis")
    assert alert_topic.endswith("/gw-7/alerts/mastitis")
    with peer() as p:
        p.subscribe(alert_topic)
        source.publish(alert_topic, b'{"cow":"1"}')
        assert wait_for(lambda: [m.payload for m in p.received] == [b'{"cow":"1"}'])
    for bad in (f"{root}/x", alert_topic + "/#", alert_topic + "/+", alert_topic + "/a b"):
        with pytest.raises(ValueError):
            source.publish(bad, b"x")
    with pytest.raises(ValueError):
        source.status_topic("../x")


def test_start_never_raises_with_broker_down() -> None:
    from helpers_mqtt import free_port

    source = make_source(Recorder(), topic_root="x", port=free_port())
    source.start()
    try:
        assert not wait_for(lambda: source.connected, timeout=0.5)
    finally:
        source.stop(timeout=1)
    assert not source.connected


def test_bad_ids_and_filters_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        make_source(Recorder(), topic_root="x", gateway_id="gw/#")
    with pytest.raises(ConfigError):
        make_source(Recorder(), topic_root="x", client_id="a b")
    with pytest.raises(ConfigError):
        make_source(Recorder(), topic_root="a/#/b")
    assert valid_topic_filter("barn/+/temp")
    assert valid_topic_filter("#")
    assert not valid_topic_filter("barn/te+mp")
    assert not valid_topic_filter("barn/#x")
    assert not valid_topic_filter("")
    assert not valid_topic_filter("a\x00b")
