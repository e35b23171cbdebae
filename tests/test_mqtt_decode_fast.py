"""The cheaper MQTT 5 PUBLISH decode gives what paho's own decoder gives, and
the agent still receives messages through it (real Mosquitto)."""

from __future__ import annotations

import random
import struct

import paho.mqtt.client as paho
import pytest
from helpers_mqtt import Recorder, make_source, peer, unique, wait_for
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import agent.sources.mqtt as mqtt_source

pytestmark = pytest.mark.skipif(mqtt_source._paho_decode_publish is None,
                                reason="this paho has no _packet.decode_publish")


def packet(topic: bytes, qos: int, mid: int, props: bytes, payload: bytes) -> bytearray:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    return bytearray(body + props + payload)


def same(header: int, data: bytearray, protocol: int) -> None:
    from paho.mqtt.exception import MalformedPacket

    original = mqtt_source._paho_decode_publish
    assert original is not None
    try:
        want = original(header, bytearray(data), protocol)
    except MalformedPacket as err:
        with pytest.raises(MalformedPacket, match=str(err)):
            mqtt_source._decode_publish_fast(header, bytearray(data), protocol)
        return
    got = mqtt_source._decode_publish_fast(header, bytearray(data), protocol)
    assert (got.dup, got.qos, got.retain, got.topic, got.mid, got.payload) == (
        want.dup, want.qos, want.retain, want.topic, want.mid, want.payload)
    assert type(got.topic) is type(want.topic) and bytes(got.payload) == bytes(want.payload)
    if want.properties is None:
        assert got.properties is None
    else:
        assert got.properties.packetType == want.properties.packetType
        assert str(got.properties) == str(want.properties)
        assert got.properties.isEmpty() == want.properties.isEmpty()


def with_user_property() -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("k", "v")
    props.MessageExpiryInterval = 30
    return bytes(props.pack())


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_same_packets_as_paho(protocol: int) -> None:
    rng = random.Random(3)
    for _ in range(500):
        qos = rng.choice([0, 1, 2])
        header = 0x30 | (qos << 1) | rng.choice([0, 1]) | (rng.choice([0, 8]) if qos else 0)
        topic = rng.choice([b"barn/climate/c-01", b"", b"a" * 300, "k\u00fch/x".encode()])
        payload = rng.choice([b"", b"{}", bytes(rng.randrange(256) for _ in range(40))])
        if protocol == paho.MQTTv5:
            props = rng.choice([b"\x00", b"\x00", with_user_property()])
        else:
            props = b""
        same(header, packet(topic, qos, rng.randrange(1, 65536), props, payload), protocol)


def test_properties_objects_are_not_shared() -> None:
    data = packet(b"t/x", 1, 7, b"\x00", b"p")
    a = mqtt_source._decode_publish_fast(0x32, data, paho.MQTTv5).properties
    b = mqtt_source._decode_publish_fast(0x32, data, paho.MQTTv5).properties
    assert a is not b
    a.UserProperty = ("k", "v")
    assert b.isEmpty() and mqtt_source._EMPTY_PUBLISH_PROPERTIES.isEmpty()


def test_short_or_odd_packets_take_paho_path() -> None:
    from paho.mqtt.exception import MalformedPacket

    for data in (bytearray(b""), bytearray(b"\x00"), bytearray(b"\x00\x05ab")):
        with pytest.raises(MalformedPacket):
            mqtt_source._decode_publish_fast(0x32, data, paho.MQTTv5)


def test_agent_source_receives_v5_messages_with_and_without_properties() -> None:
    root = unique("fast")
    rec = Recorder()
    source = make_source(rec, topic_root=root, protocol="5")
    source.start()
    try:
        assert wait_for(lambda: bool(source.subscriptions()), timeout=10)
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique("pub5"),
                             protocol=paho.MQTTv5)
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        try:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("k", "v")
            client.publish(f"{root}/a", b"plain", qos=1).wait_for_publish(5)
            client.publish(f"{root}/b", b"with", qos=1, properties=props).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()
        assert wait_for(lambda: len(rec.payloads()) >= 2, timeout=10)
        assert sorted(rec.payloads()) == [b"plain", b"with"]
        assert wait_for(lambda: source.stats.acks >= 2, timeout=5)
    finally:
        source.stop()


def test_peer_helper_still_works() -> None:
    root = unique("fastpeer")
    with peer() as p:
        p.subscribe(f"{root}/#")
        p.publish(f"{root}/x", b"hello")
        assert wait_for(lambda: any(m.payload == b"hello" for m in p.received), timeout=5)
