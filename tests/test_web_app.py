"""The status web app served for real on a free port."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from agent import metrics
from agent.web import (
    BrokerStatus,
    SensorStatus,
    StatusSnapshot,
    SyncStatus,
    WebAccess,
    make_web_app,
)
from agent.web.app import start_web

EVIL = '<script>alert("x")</script>'


def healthy_snapshot() -> StatusSnapshot:
    return StatusSnapshot(
        version="0.1.0",
        uptime_s=93.5,
        broker=BrokerStatus(connected=True, session_present=True, protocol="5", connects=2),
        sensors=[
            SensorStatus("collar-17", {"temp_c": 38.6, "activity": 0.4}, age_s=3.2),
            SensorStatus("milk-2", {"ec_ms": math.nan}, age_s=None, health="stale"),
        ],
        quarantined=4,
        backlog=120,
        dead_letters=1,
        disk_free_bytes=3 * 1024**3,
        sync=SyncStatus(state="idle", last_success_age_s=1.5),
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    runners: list[aiohttp.web.AppRunner] = []

    async def _serve(provider: Callable[[], Any], **kw: Any) -> str:
        # The login is off here (these tests are about what is shown); the
        # login itself is tested in test_web_security.py.
        kw.setdefault("access", WebAccess(users=None))
        runner, port = await start_web(make_web_app(provider, **kw), "127.0.0.1", 0)
        runners.append(runner)
        assert port > 0
        return f"http://127.0.0.1:{port}"

    yield _serve
    for runner in runners:
        await runner.cleanup()


async def test_status_json(serve: Callable[..., Any]) -> None:
    base = await serve(healthy_snapshot)
    async with aiohttp.ClientSession() as http, http.get(base + "/api/status") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        data = json.loads(await resp.text())  # strict: NaN would not parse as JSON
    assert data["version"] == "0.1.0"
    assert data["uptime_s"] == 93.5
    assert data["broker"]["connected"] is True
    assert data["sensors"][0] == {
        "sensor_id": "collar-17",
        "values": {"temp_c": 38.6, "activity": 0.4},
        "age_s": 3.2,
        "health": "ok",
        "firmware": "",
        "animal_id": None,
        "seen_ts": None,
    }
    assert data["sensors"][1]["values"] == {"ec_ms": None}
    assert (data["quarantined"], data["backlog"], data["dead_letters"]) == (4, 120, 1)
    assert data["disk_free_bytes"] == 3 * 1024**3
    assert data["storage_health"] == "ok"
    assert data["sync"]["state"] == "idle"
    assert data["health"] == {"healthy": True, "reasons": []}


async def test_plain_dict_provider(serve: Callable[..., Any]) -> None:
    base = await serve(lambda: {"version": "x", "broker": {"connected": True}})
    async with aiohttp.ClientSession() as http, http.get(base + "/api/status") as resp:
        assert resp.status == 200
        assert (await resp.json())["version"] == "x"


async def test_metrics_text(serve: Callable[..., Any]) -> None:
    metrics.MESSAGES_RECEIVED.inc(0)
    base = await serve(healthy_snapshot)
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert "# TYPE dairy_edge_messages_received_total counter" in text
    assert "dairy_edge_mqtt_connected " in text


async def test_metrics_custom_registry(serve: Callable[..., Any]) -> None:
    registry = CollectorRegistry()
    Counter("dairy_edge_test_only_total", "A test counter.", registry=registry).inc(3)
    base = await serve(healthy_snapshot, registry=registry)
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        text = await resp.text()
    assert "dairy_edge_test_only_total 3.0" in text
    assert "dairy_edge_messages_received_total" not in text


async def test_html_escapes_every_wire_value(serve: Callable[..., Any]) -> None:
    snap = healthy_snapshot()
    snap.sensors.append(SensorStatus(EVIL, {EVIL: 1.0}, age_s=1.0, health=EVIL))
    snap.sync.last_error = '"><img src=x onerror=alert(1)>'
    snap.problems.append(EVIL)
    snap.alerts.append({"severity": "critical", "rule": "mastitis", "state": "raised",
                        "message": f"cow {EVIL}: conductivity up 31 %"})
    base = await serve(lambda: snap)
    async with aiohttp.ClientSession() as http, http.get(base + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        html = await resp.text()
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "http-equiv" not in html, "no reloading: the page polls /api/view"
    assert 'name="viewport"' in html
    assert "collar-17" in html and "Temp 38.60\u00a0°C" in html
    assert "mastitis" in html and "conductivity up 31 %" in html
    async with aiohttp.ClientSession() as http, http.get(base + "/static/style.css") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/css")


async def test_healthz_ok_then_503_with_reasons(serve: Callable[..., Any]) -> None:
    snap = healthy_snapshot()
    base = await serve(lambda: snap)
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        snap.storage_health = "disk_full"
        snap.broker.connected = False
        snap.problems.append("sync: 5 failures in a row")
        async with http.get(base + "/healthz") as resp:
            assert resp.status == 503
            body = await resp.json()
        async with http.get(base + "/") as resp:
            page = await resp.text()
    assert body["status"] == "unhealthy"
    assert body["reasons"] == [
        "storage: disk_full",
        "mqtt: not connected",
        "sync: 5 failures in a row",
    ]
    assert "storage: disk_full" in page and 'class="bad"' in page


async def test_failing_provider_is_a_503_not_a_crash(serve: Callable[..., Any]) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("runtime not ready")

    base = await serve(broken)
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as resp:
            assert resp.status == 503
            assert (await resp.json())["reasons"] == ["status unavailable"]
        async with http.get(base + "/api/status") as resp:
            assert resp.status == 500
        async with http.get(base + "/") as resp:
            assert resp.status == 200
            assert "status unavailable" in await resp.text()
        async with http.post(base + "/api/status", data=b"x") as resp:
            assert resp.status == 403  # no CSRF token: refused before anything else
