"""`dairy-edge demo`: live readings on the page and at central within 30 s, with
nothing but the package (the embedded broker path: no broker on the port asked)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
from helpers_mqtt import free_port

from agent.runtime.demo import DemoInfo, password_source, run_demo

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


async def test_demo_shows_live_data_within_30_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAIRY_EDGE_WEB_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
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
        assert ready[0].password_from == f"{tmp_path}/web-initial-password"
        assert (tmp_path / "web-initial-password").is_file()
        page = await asyncio.to_thread(_get, f"http://127.0.0.1:{ready[0].web_port}/")
        sensor_id = seen["status"]["sensors"][0]["sensor_id"]  # type: ignore[index]
        assert sensor_id in page
    finally:
        stop.set()
        assert await asyncio.wait_for(demo, 30) == 0


def test_the_demo_names_where_the_admin_password_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent takes the web_admin_password secret first; the demo must say so."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("DAIRY_EDGE_WEB_ADMIN_PASSWORD", raising=False)
    assert password_source(tmp_path, False) == f"{tmp_path}/web-initial-password"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "web_admin_password").write_text("from-credentials\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert password_source(tmp_path, False) == "$CREDENTIALS_DIRECTORY/web_admin_password"
    monkeypatch.setenv("DAIRY_EDGE_WEB_ADMIN_PASSWORD", "from-the-environment")
    assert password_source(tmp_path, False) == "$DAIRY_EDGE_WEB_ADMIN_PASSWORD"
    assert "already set" in password_source(tmp_path, True)
