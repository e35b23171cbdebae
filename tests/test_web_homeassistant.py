"""Home Assistant MQTT discovery: each entity announced once per connection,
one retained state for all, ids from the wire made safe, and the real agent
announcing a bulk tank it hears on a real broker."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from helpers_mqtt import Peer, unique

from agent.config.loader import load_config
from agent.runtime.daemon import Agent
from agent.web.homeassistant import Discovery, slug
from agent.web.status import SensorStatus, StatusSnapshot

EVIL = 'tank"/+#<b>'


def _status() -> dict[str, object]:
    return StatusSnapshot(version="t", uptime_s=1.0, backlog=7, sensors=[
        SensorStatus("tank-01", {"milk_temp_c": 3.456}, 2.0, firmware="bulk-tank"),
        SensorStatus(EVIL, {"milk_temp_c": 4.0}, 2.0, firmware="bulk-tank"),
        SensorStatus("climate-01", {"temperature_c": 21.0, "humidity_pct": 70.0}, 2.0,
                     firmware="barn-climate"),
        SensorStatus("collar-1", {"activity": 3.0}, 2.0, firmware="neck-collar"),
    ]).to_dict()


def test_announced_once_then_only_the_state() -> None:
    ha = Discovery("gw-1", "0.1.0", "homeassistant", "dairy-edge/gw-1/homeassistant",
                   "dairy-edge/gw-1/availability")
    first = ha.messages(_status(), ["mqtt: not connected"])
    topics = [t for t, _ in first]
    assert topics[-1] == "dairy-edge/gw-1/homeassistant"
    configs = {t: json.loads(b) for t, b in first[:-1]}
    assert "homeassistant/binary_sensor/dairy_edge_gw_1_" in next(iter(configs))
    assert len(configs) == 3 + 2 + 2  # health, backlog, alerts; two tanks; climate t and rh
    for topic, cfg in configs.items():
        assert re.fullmatch(r"homeassistant/(sensor|binary_sensor)/[a-z0-9_]+/[a-z0-9_]+/config",
                            topic), topic
        assert cfg["availability_topic"] == "dairy-edge/gw-1/availability"
        assert cfg["device"]["identifiers"] == [topic.split("/")[2]]
    state = json.loads(first[-1][1])
    assert state["problem"] == "ON" and state["backlog"] == 7 and state["open_alerts"] == 0
    # every template reads a key the state has
    for cfg in configs.values():
        key = re.search(r"\['values'\]\['([a-z0-9_]+)'\]", cfg["value_template"])
        if key:
            assert key.group(1) in state["values"]
    evil = [c for c in configs.values() if EVIL in c["name"]]
    assert len(evil) == 1 and "<b>" not in evil[0]["value_template"]
    assert state["values"][f"{slug('tank-01')}_milk_temp_c"] == 3.46
    again = ha.messages(_status(), [])
    assert [t for t, _ in again] == ["dairy-edge/gw-1/homeassistant"]
    assert json.loads(again[0][1])["problem"] == "OFF"
    ha.forget()
    assert len(ha.messages(_status(), [])) == len(first)


def test_slugs_are_safe_and_distinct() -> None:
    assert slug("tank-01") != slug("tank_01")
    assert slug("abc") == "abc"
    for text in (EVIL, "x" * 200, "ÄÖ", ""):
        assert re.fullmatch(r"[a-z0-9_]{1,48}", slug(text)), text


async def test_the_agent_announces_a_tank_it_hears(tmp_path: Path) -> None:
    prefix = unique("ha")
    discovery = unique("hadisc")
    config = load_config(overrides={
        "gateway": {"id": "gw-ha", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60, "status_prefix": prefix + "-status"},
        "sync": {"enabled": False}, "web": {"enabled": False},
        "homeassistant": {"enabled": True, "discovery_prefix": discovery, "interval_s": 5},
    })
    watcher = Peer()
    watcher.subscribe(f"{discovery}/#")
    watcher.subscribe(f"{prefix}-status/gw-ha/homeassistant")
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    key = f"{slug('tank-07')}_milk_temp_c"

    def seen_state() -> dict[str, object] | None:
        for m in reversed(watcher.received):
            if m.topic.endswith("/homeassistant"):
                state = json.loads(m.payload)
                if key in state["values"]:
                    return dict(state)
        return None

    try:
        for _ in range(200):
            if agent.mqtt.connected and agent.mqtt.subscriptions():
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(watcher.publish, f"{prefix}/tank/tank-07", json.dumps(
            {"msg_id": "a81f-000001", "temp": 4.2, "agitator": "on"}).encode())
        for _ in range(150):
            if seen_state():
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        watcher.close()
    state = seen_state()
    assert state is not None, [m.topic for m in watcher.received]
    assert state["values"] == {key: 4.2}  # type: ignore[index]
    configs = {m.topic: json.loads(m.payload) for m in watcher.received
               if m.topic.startswith(discovery)}
    tank = next(c for t, c in configs.items() if t.endswith(f"/{key}/config"))
    assert tank["device_class"] == "temperature" and tank["unit_of_measurement"] == "°C"
    # retained: a Home Assistant that subscribes later still gets them
    late = Peer()
    try:
        late.subscribe(f"{discovery}/#")
        for _ in range(50):
            if len(late.received) >= len(configs):
                break
            await asyncio.sleep(0.1)
        assert {m.topic for m in late.received if m.retain} == set(configs)
        for topic in configs:  # leave the shared broker clean
            await asyncio.to_thread(late.publish, topic, b"", 1, True)
    finally:
        late.close()


async def test_a_failed_round_is_logged_and_the_loop_goes_on(tmp_path: Path,
                                                             caplog: Any) -> None:
    """The status failing once (a busy buffer, a bug) costs one round, not the loop."""
    import logging

    prefix = unique("haerr")
    discovery = unique("hadisc")
    config = load_config(overrides={
        "gateway": {"id": "gw-haerr", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60, "status_prefix": prefix + "-status"},
        "sync": {"enabled": False}, "web": {"enabled": False},
        "homeassistant": {"enabled": True, "discovery_prefix": discovery, "interval_s": 5},
    })
    watcher = Peer()
    watcher.subscribe(f"{prefix}-status/gw-haerr/homeassistant")
    agent = Agent(config)
    real_status = agent.status
    calls = [0]

    def failing_once() -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("database is locked")
        return real_status()

    agent.status = failing_once  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="agent.runtime.daemon")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        for _ in range(200):
            if any(m.topic.endswith("/homeassistant") for m in watcher.received):
                break
            await asyncio.sleep(0.1)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        watcher.close()
    assert calls[0] >= 2
    assert any(m.topic.endswith("/homeassistant") for m in watcher.received)
    assert "home assistant: this round failed" in caplog.text
    assert "database is locked" in caplog.text
    cleaner = Peer()  # leave the shared broker clean of retained discovery messages
    try:
        cleaner.subscribe(f"{discovery}/#")
        await asyncio.sleep(1.0)
        for topic in {m.topic for m in cleaner.received if m.retain}:
            await asyncio.to_thread(cleaner.publish, topic, b"", 1, True)
    finally:
        cleaner.close()
