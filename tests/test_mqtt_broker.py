"""ensure_broker: reuse a listening broker, else run amqtt inside the process,
and MqttSource's MQTT 5 -> 3.1.1 fallback against it (amqtt speaks 3.1.1 only)."""

from __future__ import annotations

import asyncio

from helpers_mqtt import SHARED_PORT, Recorder, async_wait_for, free_port, make_source, unique

from agent.sources.broker import broker_listening, ensure_broker
from agent.sources.mqtt import MqttSource


async def _publish(port: int, topic: str, payloads: list[bytes]) -> None:
    from helpers_mqtt import Peer

    def run() -> None:
        p = Peer(port)
        try:
            for payload in payloads:
                p.publish(topic, payload)
        finally:
            p.close()

    await asyncio.to_thread(run)


async def test_uses_the_broker_already_listening() -> None:
    handle = await ensure_broker("127.0.0.1", SHARED_PORT)
    assert handle.embedded is False
    assert handle.port == SHARED_PORT
    await handle.stop()  # a no-op: the shared broker keeps running
    assert await broker_listening("127.0.0.1", SHARED_PORT)


async def test_embedded_broker_with_fallback_and_persistent_session() -> None:
    asked = free_port()
    handle = await ensure_broker("127.0.0.1", asked)
    sources: list[MqttSource] = []
    try:
        assert handle.embedded is True
        assert handle.port == asked  # the demo's --mqtt-port holds for the embedded broker
        assert await broker_listening(handle.host, handle.port)
        root, cid = unique("barn"), unique("src")

        rec = Recorder()
        source = make_source(rec, topic_root=root, client_id=cid, port=handle.port)
        sources.append(source)
        await asyncio.to_thread(source.start)
        # amqtt never answers a v5 CONNECT; "auto" gives up after one keepalive (5 s).
        assert await async_wait_for(lambda: bool(source.subscriptions()), timeout=15)
        assert source.stats.protocol == "3.1.1"
        assert handle.protocol == "3.1.1"
        await _publish(handle.port, f"{root}/t", [b"live"])
        assert await async_wait_for(lambda: rec.payloads() == [b"live"])
        await asyncio.to_thread(source.stop, 2)

        await _publish(handle.port, f"{root}/t", [f"q{i}".encode() for i in range(5)])

        rec2 = Recorder()
        again = make_source(
            rec2, topic_root=root, client_id=cid, port=handle.port, protocol="3.1.1"
        )
        sources.append(again)
        await asyncio.to_thread(again.start)
        assert await async_wait_for(lambda: again.connected)
        assert again.session_present is True
        assert await async_wait_for(lambda: len(rec2.messages) == 5)
        assert rec2.payloads() == [f"q{i}".encode() for i in range(5)]
    finally:
        for s in sources:
            await asyncio.to_thread(s.stop, 1)
        await handle.stop()
        await handle.stop()  # idempotent
    assert not await broker_listening(handle.host, handle.port)


async def test_forced_mqtt5_does_not_fall_back() -> None:
    handle = await ensure_broker("127.0.0.1", free_port())
    source = make_source(Recorder(), topic_root="x", port=handle.port, protocol="5")
    try:
        await asyncio.to_thread(source.start)
        assert not await async_wait_for(lambda: source.connected, timeout=1.0)
        assert source.stats.connects == 0
    finally:
        await asyncio.to_thread(source.stop, 1)
        await handle.stop()
