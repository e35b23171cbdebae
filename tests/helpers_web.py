"""Status page tests: a users file with a technician and a viewer, an app that
needs a login, and a client that logs in as a browser does (form, cookies)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from agent.web import WebAccess, make_web_app
from agent.web.users import UserStore

PASSWORDS = {"tech": "tech-pass-1", "view": "view-pass-1"}


def user_store(tmp_path: Path) -> UserStore:
    store = UserStore(tmp_path / "web-users.json")
    store.add("tech", "technician", PASSWORDS["tech"])
    store.add("view", "viewer", PASSWORDS["view"])
    return store


class Actions:
    """The runtime's user action log, kept in a list."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, action: dict[str, Any]) -> None:
        self.items.append(action)


async def web_client(tmp_path: Path, provider: Callable[[], Any] | None = None,
                     **kw: Any) -> tuple[TestClient, WebAccess, Actions]:
    actions = Actions()
    access_kw = {k: kw.pop(k) for k in ("metrics_open", "allowed_hosts", "clock",
                                          "secure_cookies") if k in kw}
    access = WebAccess(users=kw.pop("users", None) or user_store(tmp_path),
                       record_action=actions, **access_kw)
    app = make_web_app(provider or (lambda: {"version": "t", "uptime_s": 1.0}),
                       access=access, **kw)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, access, actions


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html) or re.search(
        r'data-csrf="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def login(client: TestClient, user: str = "tech", password: str | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
    form = await client.get("/login")
    token = csrf_of(await form.text())
    return await client.post(
        "/login", data={"csrf": token, "user": user, "password": password or PASSWORDS[user]},
        allow_redirects=False, headers=headers)


async def logged_in(client: TestClient, user: str = "tech") -> str:
    """Log in; the page's CSRF token for POSTs."""
    resp = await login(client, user)
    assert resp.status == 303, await resp.text()
    page = await client.get("/")
    assert page.status == 200
    return csrf_of(await page.text())


def farm_status(cows: int = 120, devices: int = 20, alerts: int = 3,
                seed: int = 1) -> dict[str, Any]:
    """A status like a live farm's: a collar and a milk meter per cow, two bulk
    tanks, barn climate nodes and water meters, a few open alerts, history."""
    import random

    from agent.web.status import SensorStatus, StatusSnapshot, SyncStatus

    rnd = random.Random(seed)
    sensors = [
        SensorStatus(f"tank{i}", {"milk_temp_c": 3.4 + rnd.random(), "agitator": 1.0,
                                  "level_l": 4000 + rnd.random() * 2000, "wash": 0.0},
                     rnd.uniform(1, 30), firmware="bulk-tank") for i in (1, 2)
    ]
    sensors += [SensorStatus(f"climate{i}", {"temperature_c": 18 + rnd.random() * 8,
                                             "humidity_pct": 60 + rnd.random() * 20,
                                             "battery_v": 2.9 + rnd.random() * 0.3},
                             rnd.uniform(1, 60), firmware="barn-climate") for i in range(4)]
    for c in range(cows):
        sensors.append(SensorStatus(f"collar{c:04d}", {"activity": rnd.randint(100, 600),
                                                        "rumination_min": rnd.randint(0, 15),
                                                        "battery_v": 3.0},
                                    rnd.uniform(1, 300), firmware="neck-collar",
                                    animal_id=f"NL-{1000 + c}"))
        sensors.append(SensorStatus(f"meter{c:04d}", {"yield_kg": rnd.uniform(8, 16),
                                                       "conductivity_lf": 5.1,
                                                       "conductivity_rf": 5.0,
                                                       "conductivity_lr": 5.3,
                                                       "conductivity_rr": 5.2,
                                                       "duration_s": 380},
                                    rnd.uniform(60, 20000), firmware="milk-meter",
                                    animal_id=f"NL-{1000 + c}"))
    for d in range(max(0, devices - 6)):
        sensors.append(SensorStatus(f"water{d:03d}", {"flow_lpm": rnd.uniform(0, 30),
                                                      "total_l": rnd.uniform(1e4, 1e6)},
                                    rnd.uniform(1, 120), firmware="water-flow"))
    records = []
    for a in range(alerts):
        records.append({
            "record_id": f"alert{a}", "rule": ("mastitis", "heat_stress", "tank_cooling")[a % 3],
            "severity": ("critical", "warning", "info")[a % 3], "state": "raised",
            "message": f"cow NL-{1000 + a}: conductivity up 31 % on LF", "animal_id":
            f"NL-{1000 + a}", "sensor_id": f"meter{a:04d}", "wall_ts": 1.8e9 + a * 60,
            "details": {"alert_id": f"alert{a}", "subject": f"NL-{1000 + a}",
                        "signals": [{"name": "conductivity_lf", "value": 6.7, "limit": 6.0,
                                     "unit": "mS/cm"}]}})
    history = {f"tank{i}:milk_temp_c": [3.5 + 0.3 * ((j % 8) - 4) / 4 for j in range(96)]
               for i in (1, 2)}
    history.update({f"climate{i}:temperature_c": [18 + (j % 24) / 3 for j in range(96)]
                    for i in range(4)})
    snap = StatusSnapshot(version="0.1.0", uptime_s=86400.0, sensors=sensors, alerts=records,
                          backlog=42, disk_free_bytes=12 * 1024**3,
                          sync=SyncStatus(state="idle", last_success_age_s=3.0),
                          history=history)
    data = snap.to_dict()
    data["broker"]["connected"] = True
    return data
