"""The page on the real agent: its users file, the first-start admin, the
status it renders from the buffer, and user actions stored as synced events."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from helpers_mqtt import unique
from helpers_web import csrf_of

from agent.config.loader import load_config
from agent.runtime.daemon import Agent


def _events(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT body, synced FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    return [{**json.loads(body), "synced": synced} for body, synced in rows]


async def _until(check: Any, seconds: float) -> bool:
    for _ in range(int(seconds * 10)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_login_and_actions_become_synced_events(tmp_path: Path) -> None:
    prefix = unique("web")
    config = load_config(overrides={
        "gateway": {"id": "gw-web", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60},
        "sync": {"enabled": False},
        "web": {"host": "127.0.0.1", "port": 0},
    })
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await _until(lambda: agent.state.web_port is not None, 20)
        base = f"http://127.0.0.1:{agent.state.web_port}"
        # first start: admin, with a password only the installer can read
        password = (tmp_path / "web-initial-password").read_text().strip()
        assert (tmp_path / "web-users.json").exists()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(base + "/api/status") as r:
                assert r.status == 401
            async with http.get(base + "/login") as r:
                token = csrf_of(await r.text())
            async with http.post(base + "/login", data={"csrf": token, "user": "admin",
                                                        "password": "wrong-password"}) as r:
                assert r.status == 401
            async with http.post(base + "/login", data={"csrf": token, "user": "admin",
                                                        "password": password}) as r:
                assert r.status == 200
                page = await r.text()
            assert "<h1>gw-web</h1>" in page
            csrf = csrf_of(page)
            async with http.post(base + "/api/alerts/nope/action", json={"action": "snooze"},
                                 headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 404  # no such open alert: nothing recorded
            async with http.post(base + "/logout", data={"csrf": csrf}) as r:
                assert r.status == 200
        assert await _until(lambda: len([e for e in _events(config.store_path)
                                         if e["event"] == "user_action"]) == 3, 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    actions = [e for e in _events(config.store_path) if e["event"] == "user_action"]
    assert [(a["data"]["action"], a["data"]["user"]) for a in actions] == [
        ("login_failed", "admin"), ("login", "admin"), ("logout", "admin")]
    assert actions[1]["data"]["role"] == "technician"
    assert actions[1]["detail"] == "admin login"
    assert all(a["synced"] == 0 and a["kind"] == "event" and a["wall_ts"] > 0
               for a in actions), "waiting in the outbox for the next sync"


def test_status_counts_agree_with_the_full_count(tmp_path: Path) -> None:
    """The page's cheap counts (indexes, small tables) are the full scan's numbers."""
    from helpers_store import alert, make_writer, quarantined, reading

    from agent.store.reader import StoreReader

    db = tmp_path / "buffer.db"
    writer = make_writer(db)
    for i in range(30):
        writer.submit(reading(i))
    for i in range(3):
        writer.submit(alert(i))
        writer.submit(quarantined(i))
    writer.close()
    reader = StoreReader(db)
    full = reader.counts()
    assert reader.status_counts() == {k: full[k] for k in ("backlog", "quarantine",
                                                            "dead_letter")}
    assert reader.status_counts()["backlog"] == 33


async def test_sparklines_come_back_from_the_buffer_after_a_restart(tmp_path: Path) -> None:
    import time

    from helpers_store import make_writer, reading

    from agent.records.types import Stamp

    config = load_config(overrides={
        "gateway": {"id": "gw-hist", "data_dir": str(tmp_path)},
        "mqtt": {"port": 1, "topics": ["nothing/#"], "client_id": unique("hist")},
        "sync": {"enabled": False}, "web": {"enabled": False},
    })
    now = time.time()
    writer = make_writer(config.store_path)
    for i in range(48):  # the last 12 h, every 15 min; and one reading two days ago
        r = reading(i, sensor="tank-1")
        r.firmware, r.values = "bulk-tank", {"milk_temp_c": 3.0 + (i % 4)}
        r.stamp = Stamp(now - (48 - i) * 900.0, i, "before", True)
        writer.submit(r)
    old = reading(99, sensor="tank-1")
    old.firmware, old.values = "bulk-tank", {"milk_temp_c": 40.0}
    old.stamp = Stamp(now - 2 * 86400.0, 0, "before", True)
    writer.submit(old)
    writer.close()
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await _until(
            lambda: len(agent.history.snapshot(time.time()).get("tank-1:milk_temp_c", [])) >= 47,
            20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    series = agent.history.snapshot(time.time())["tank-1:milk_temp_c"]
    assert max(series) == 6.0 and min(series) == 3.0, "the reading of two days ago left out"


async def test_any_sensor_over_24_hours_from_the_buffer(tmp_path: Path) -> None:
    import time

    from aiohttp.test_utils import TestClient, TestServer
    from helpers_store import make_writer, reading
    from helpers_web import logged_in, user_store

    from agent.records.types import Stamp
    from agent.web import WebAccess, make_web_app

    config = load_config(overrides={
        "gateway": {"id": "gw-sensor", "data_dir": str(tmp_path)},
        "mqtt": {"port": 1, "topics": ["nothing/#"], "client_id": unique("sensor")},
        "sync": {"enabled": False}, "web": {"enabled": False},
    })
    now = time.time()
    writer = make_writer(config.store_path)
    for i in range(40):
        for sensor in ("collar-9", "collar-<b>"):
            r = reading(i, sensor=sensor)
            r.firmware, r.values = "neck-collar", {"activity": float(i), "rumination_min": 8.0}
            r.stamp = Stamp(now - (40 - i) * 900.0, i, "b", True)
            writer.submit(r)
    writer.close()
    agent = Agent(config)
    series = await asyncio.to_thread(agent.sensor_history, "collar-9")
    assert set(series) == {"activity", "rumination_min"}
    assert series["activity"][0] == 0.0 and series["activity"][-1] == 39.0
    assert await asyncio.to_thread(agent.sensor_history, "nobody") == {}
    app = make_web_app(lambda: {"version": "t"}, sensor_history=agent.sensor_history,
                       access=WebAccess(users=user_store(tmp_path)))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await client.get("/sensor?id=collar-9", allow_redirects=False)).status == 303
        await logged_in(client)
        page = await (await client.get("/sensor?id=collar-9")).text()
        assert "<h1>collar-9</h1>" in page and page.count("<svg") == 2
        assert "Activity: 0 to 39 in 24 h" in page
        evil = await (await client.get("/sensor", params={"id": "collar-<b>"})).text()
        assert "<h1>collar-&lt;b&gt;</h1>" in evil and "<b>" not in evil
        assert "No readings in the last 24 h." in await (
            await client.get("/sensor?id=nobody")).text()
        assert (await client.get("/sensor?id=")).status == 400
    finally:
        await client.close()


async def test_a_lost_user_action_is_logged_and_never_blocks_the_loop(
        tmp_path: Path, caplog: Any) -> None:
    """record_user_action is called on the event loop: it hands the event to a
    worker thread (the writer may wait up to 0.5 s) and says so when it is lost."""
    import logging
    import time

    config = load_config(overrides={"gateway": {"id": "gw-lost", "data_dir": str(tmp_path)},
                                    "sync": {"enabled": False}})
    agent = Agent(config)
    agent.writer.close()
    caplog.set_level(logging.ERROR, logger="agent.runtime.daemon")
    started = time.monotonic()
    agent.record_user_action({"user": "anna", "action": "alert_snooze", "alert_id": "a1"})
    assert time.monotonic() - started < 0.1
    assert await _until(lambda: "user action lost" in caplog.text, 5), caplog.text
    assert "anna alert_snooze a1" in caplog.text
