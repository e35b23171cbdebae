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
