"""`dairy-edge demo`: live readings on the page and at central within 30 s, with
nothing but the package (the embedded broker path: no broker on the port asked)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
from pathlib import Path

from helpers_mqtt import free_port

from agent.runtime.demo import DemoInfo, run_demo

# The page needs a login: the demo's one-time link gives this opener a session.
_BROWSER = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())


def _get(url: str) -> str:
    with _BROWSER.open(url, timeout=5) as response:
        return str(response.read().decode())


def _central_readings(data_dir: Path) -> int:
    path = data_dir / "central.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


async def test_demo_shows_live_data_within_30_seconds(tmp_path: Path) -> None:
    stop = asyncio.Event()
    ready: list[DemoInfo] = []
    started = time.monotonic()
    demo = asyncio.create_task(
        run_demo(stop, web_port=0, rate=50.0, data_dir=tmp_path, mqtt_port=free_port(),
                 on_ready=ready.append)
    )
    try:
        seen: dict[str, object] = {}
        logged_in = False
        while time.monotonic() - started < 30:
            await asyncio.sleep(0.5)
            assert not demo.done(), demo.exception() if demo.done() else ""
            if not ready:
                continue
            if not logged_in:
                assert "/login/link/" in ready[0].login_url
                await asyncio.to_thread(_get, ready[0].login_url)
                logged_in = True
            status = json.loads(await asyncio.to_thread(
                _get, f"http://127.0.0.1:{ready[0].web_port}/api/status"))
            central = await asyncio.to_thread(_central_readings, tmp_path)
            if status["sensors"] and central > 0:
                seen = {"status": status, "central": central}
                break
        assert seen, "no live readings on the page and at central within 30 s"
        assert ready[0].broker_embedded, "the demo should have started its embedded broker"
        page = await asyncio.to_thread(_get, f"http://127.0.0.1:{ready[0].web_port}/")
        sensor_id = seen["status"]["sensors"][0]["sensor_id"]  # type: ignore[index]
        assert sensor_id in page
    finally:
        stop.set()
        assert await asyncio.wait_for(demo, 30) == 0
