"""The status page is closed by default: every route needs a session (but the
login, static files, /healthz and an opened /metrics), every change a CSRF token
and a technician, the Host must be ours, logins are rate-limited, wire text is
escaped everywhere, and every answer carries the security headers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from helpers_web import PASSWORDS, csrf_of, logged_in, login, web_client
from test_web_alerts import Backend

from agent.runtime.review import ReviewItems
from agent.web.guard import SECURITY_HEADERS
from agent.web.status import SensorStatus, StatusSnapshot, SyncStatus

EVIL = '<script>alert("x")</script>'
PUBLIC = {"/login", "/login/link/{token}", "/static/{name}", "/favicon.ico", "/healthz",
          "/robots.txt", "/lang/{code}"}


def _evil_status() -> dict[str, Any]:
    snap = StatusSnapshot(
        version="t", uptime_s=5.0,
        sensors=[
            SensorStatus(f"tank{EVIL}", {"milk_temp_c": 3.5, EVIL: 1.0}, 2.0,
                         firmware="bulk-tank"),
            SensorStatus(f"clim{EVIL}", {"temperature_c": 21.0}, 2.0, firmware="barn-climate"),
            SensorStatus(f"col{EVIL}", {"activity": 3.0}, 2.0, health=EVIL,
                         firmware="neck-collar", animal_id=f"cow{EVIL}"),
            SensorStatus(f"dev{EVIL}", {"flow_lpm": 3.0}, 2.0, health=EVIL, firmware=EVIL),
        ],
        sync=SyncStatus(state="backoff", last_error=f"HTTP 500 {EVIL}"),
        problems=[f"camera {EVIL} stalled"],
        alerts=[{"record_id": "al1", "rule": EVIL, "severity": EVIL, "state": "raised",
                 "message": f"cow {EVIL} hot", "animal_id": EVIL, "wall_ts": 1.8e9,
                 "details": {"alert_id": "al1", "subject": EVIL,
                             "signals": [{"name": EVIL, "value": 1.0, "unit": EVIL}]}}],
    )
    return snap.to_dict()


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


async def _routes(client: TestClient) -> list[tuple[str, str]]:
    app = client.server.app  # type: ignore[attr-defined]
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD":
            out.append((route.method, path))
    return out


@pytest.mark.parametrize("metrics_open", [False, True])
async def test_every_route_without_a_session_is_refused(tmp_path: Path,
                                                        metrics_open: bool) -> None:
    client, _, _ = await web_client(tmp_path, alerts=Backend(), metrics_open=metrics_open,
                                    review=ReviewItems(tmp_path / "review"),
                                    sensor_history=lambda sid: {})
    try:
        routes = await _routes(client)
        assert len(routes) >= 18
        for method, path in routes:
            resp = await client.request(method, _fill(path), allow_redirects=False)
            public = path in PUBLIC or (metrics_open and path == "/metrics"
                                        and method == "GET")
            if public:
                assert resp.status not in (401, 303) or path == "/login" and method == "POST", \
                    (method, path, resp.status)
            else:
                assert resp.status in (401, 403) or (
                    resp.status == 303 and resp.headers["Location"] == "/login"), \
                    (method, path, resp.status)
                body = await resp.read()
                assert b"dairy_edge_" not in body and b"version" not in body
        # What the public routes give away: nothing about the farm.
        health = await client.get("/healthz")
        assert set((await health.json()).keys()) == {"status", "reasons"}
    finally:
        await client.close()


async def test_metrics_opened_is_read_only_and_opens_nothing_else(tmp_path: Path) -> None:
    client, _, _ = await web_client(tmp_path, alerts=Backend(), metrics_open=True)
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200 and "text/plain" in resp.headers["Content-Type"]
        assert (await client.post("/metrics", data=b"x")).status in (401, 403, 405)
        assert (await client.get("/api/status")).status == 401
    finally:
        await client.close()


async def test_csrf_token_needed_on_every_post(tmp_path: Path) -> None:
    backend = Backend()
    client, _, _ = await web_client(tmp_path, alerts=backend)
    try:
        csrf = await logged_in(client)
        url = "/api/alerts/a1/action"
        assert (await client.post(url, json={"action": "confirm"})).status == 403
        assert (await client.post(url, json={"action": "confirm"},
                                  headers={"X-CSRF-Token": "wrong"})).status == 403
        assert (await client.post(url, data={"action": "confirm", "csrf": "wrong"})).status \
            == 403
        # The right token from another origin is refused too.
        assert (await client.post(url, json={"action": "confirm"},
                                  headers={"X-CSRF-Token": csrf,
                                           "Origin": "http://evil.example"})).status == 403
        assert (await client.post("/logout", allow_redirects=False)).status == 403
        assert backend.verdicts == {}
        ok = await client.post(url, json={"action": "confirm"},
                               headers={"X-CSRF-Token": csrf,
                                        "Origin": f"http://{client.host}:{client.port}"})
        assert ok.status == 200
        # The login form has its own token (a cookie it must match).
        page = await client.get("/login")
        token = csrf_of(await page.text())
        client.session.cookie_jar.clear()
        resp = await client.post("/login", data={"csrf": token, "user": "tech",
                                                 "password": PASSWORDS["tech"]},
                                 allow_redirects=False)
        assert resp.status == 403
    finally:
        await client.close()


@pytest.mark.parametrize(("host", "status"), [
    ("evil.example", 421), ("evil.example:8080", 421), ("localhost.evil.example", 421),
    ("localhost", 200), ("localhost:8080", 200), ("127.0.0.1:8080", 200),
    ("[::1]:8080", 200), ("barn-gw.example", 200), ("", 421), ("[::1", 421),
    ("localhost:80x", 421),
])
async def test_host_header_checked(tmp_path: Path, host: str, status: int) -> None:
    client, _, _ = await web_client(tmp_path,
                                    allowed_hosts=frozenset({"localhost", "barn-gw.example"}))
    try:
        resp = await client.get("/login", headers={"Host": host})
        assert resp.status == status
        assert resp.headers["X-Frame-Options"] == "DENY"
    finally:
        await client.close()


async def test_a_viewer_cannot_change_anything(tmp_path: Path) -> None:
    backend = Backend()
    client, _, actions = await web_client(tmp_path, alerts=backend, provider=_evil_status)
    try:
        csrf = await logged_in(client, "view")
        page = await (await client.get("/")).text()
        assert 'class="act"' not in page, "a viewer sees no buttons"
        for body in ({"action": "confirm"}, {"action": "snooze"}, {"action": "acknowledge"}):
            resp = await client.post("/api/alerts/a1/action", json=body,
                                     headers={"X-CSRF-Token": csrf})
            assert resp.status == 403
        resp = await client.post("/api/alerts/a1/feedback", json={"verdict": "confirmed"},
                                 headers={"X-CSRF-Token": csrf})
        assert resp.status == 403
        assert backend.verdicts == {} and backend.snoozed == {} and not backend.acked
        assert not [a for a in actions.items if a["action"].startswith("alert_")]
        # but may read everything
        assert (await client.get("/api/status")).status == 200
        assert (await client.get("/api/alerts")).status == 200
    finally:
        await client.close()


async def test_wire_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    client, _, _ = await web_client(tmp_path, alerts=Backend(), provider=_evil_status)
    try:
        await logged_in(client)
        for path in ("/", "/api/view", f"/?q={EVIL}", "/api/view?q=col"):
            html = await (await client.get(path)).text()
            assert "<script>alert" not in html, path
            assert "&lt;script&gt;" in html, path
            assert 'class="act"' in html or path.endswith("col")
        # each hostile field made it onto the page, escaped
        html = await (await client.get("/api/view?q=cow")).text()
        assert "&lt;/script&gt; hot" in html
        for where in ("tank", "clim", "cow", "dev", "HTTP 500 ", "camera "):
            assert f"{where}&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html \
                or f"{where} &lt;script&gt;" in html, where
        api = await client.get("/api/status")
        assert api.headers["Content-Type"].startswith("application/json")
        assert (await api.json())["sensors"][0]["sensor_id"] == f"tank{EVIL}"
    finally:
        await client.close()


async def test_login_rate_limited_per_address_and_name(tmp_path: Path) -> None:
    now = [1000.0]
    client, _, actions = await web_client(tmp_path, clock=lambda: now[0])
    try:
        for _ in range(5):
            assert (await login(client, "tech", "wrong-password")).status == 401
        refused = await login(client, "tech")  # the right password, too late
        assert refused.status == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 301
        # another name from the same address is refused as well
        assert (await login(client, "view")).status == 429
        now[0] += 301
        assert (await login(client, "tech")).status == 303
        kinds = [a["action"] for a in actions.items]
        assert kinds.count("login_failed") == 5 and "login_refused" in kinds
        assert kinds[-1] == "login"
    finally:
        await client.close()


async def test_cookie_flags(tmp_path: Path) -> None:
    client, _, _ = await web_client(tmp_path, secure_cookies=True)
    try:
        form = await client.get("/login")
        cookie = form.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
        assert form.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await client.close()
    client, _, _ = await web_client(tmp_path)
    try:
        resp = await login(client)
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    finally:
        await client.close()


async def test_headers_on_every_answer(tmp_path: Path) -> None:
    client, _, _ = await web_client(tmp_path)
    try:
        anonymous = [await client.get("/api/status"),
                     await client.get("/no-such-page", allow_redirects=False),
                     await client.get("/login", headers={"Host": "evil.example"}),
                     await client.post("/api/alerts/x/action")]
        await logged_in(client)
        checks = [*anonymous, await client.get("/no-such-page"),
                  await client.get("/static/nope.css"), await client.get("/"),
                  await client.get("/static/app.js"), await client.get("/favicon.ico"),
                  await client.post("/api/status")]
        statuses = {r.status for r in checks}
        assert {200, 303, 401, 403, 404, 421} <= statuses, statuses
        for r in checks:
            for name, value in SECURITY_HEADERS.items():
                assert r.headers.get(name) == value, (r.url, r.status, name)
    finally:
        await client.close()


async def test_sessions_end_on_logout_and_when_a_user_is_removed(tmp_path: Path) -> None:
    client, access, _ = await web_client(tmp_path)
    try:
        csrf = await logged_in(client)
        out = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status == 303
        assert (await client.get("/api/status")).status == 401
        await logged_in(client, "view")
        assert access.users is not None and access.users.remove("view")
        assert (await client.get("/api/status")).status == 401
    finally:
        await client.close()


async def test_one_time_login_link(tmp_path: Path) -> None:
    client, access, actions = await web_client(tmp_path)
    try:
        link = access.login_link("tech")
        resp = await client.get(link, allow_redirects=False)
        assert resp.status == 303 and "de_session=" in resp.headers["Set-Cookie"]
        assert (await client.get("/api/status")).status == 200
        client.session.cookie_jar.clear()
        again = await client.get(link, allow_redirects=False)
        assert again.status == 403, "a link logs in once"
        assert (await client.get("/api/status")).status == 401
        assert actions.items[0]["action"] == "login" and actions.items[0]["method"] == "link"
    finally:
        await client.close()


async def test_concurrent_logins_cannot_pass_the_rate_limit(tmp_path: Path) -> None:
    """Attempts count from the moment they start: 20 wrong passwords at once get at
    most the limit checked (argon2id, 64 MiB each), the rest 429."""
    import asyncio

    from agent.web.access import LOGIN_FAILURES

    client, access, _ = await web_client(tmp_path)
    users = access.users
    assert users is not None
    checked: list[str] = []
    verify = users.verify

    def counting(name: str, password: str) -> Any:
        checked.append(name)
        return verify(name, password)

    users.verify = counting  # type: ignore[method-assign]
    try:
        form = await client.get("/login")
        token = csrf_of(await form.text())
        answers = await asyncio.gather(*[
            client.post("/login", data={"csrf": token, "user": "tech",
                                        "password": f"wrong-{i}"}, allow_redirects=False)
            for i in range(20)])
        statuses = sorted(r.status for r in answers)
        assert len(checked) <= LOGIN_FAILURES, statuses
        assert statuses.count(401) == len(checked)
        assert statuses.count(429) == 20 - len(checked)
        assert (await login(client, "tech")).status == 429  # still locked
    finally:
        await client.close()


async def test_password_checks_are_bounded() -> None:
    """At most workers + queue checks at a time; the next is refused, not queued."""
    import asyncio
    import threading

    from agent.web.access import PasswordChecks

    checks = PasswordChecks(workers=1, queue=1)
    gate = threading.Event()
    running: list[str] = []

    def slow(name: str) -> str:
        running.append(threading.current_thread().name)
        gate.wait(5)
        return name

    try:
        first = asyncio.ensure_future(checks.run(slow, "a"))
        second = asyncio.ensure_future(checks.run(slow, "b"))
        await asyncio.sleep(0.05)
        assert await checks.run(slow, "c") == (False, None)
        assert checks.busy == 2 and len(running) == 1  # one worker: the second waits
        gate.set()
        assert await first == (True, "a") and await second == (True, "b")
        assert running[0].startswith("web-login")
    finally:
        gate.set()
        checks.close()


async def test_a_new_password_or_role_ends_the_users_sessions(tmp_path: Path) -> None:
    """Sessions carry a stamp of the user's hash and role: a change made by another
    process (``dairy-edge web user add``, a second UserStore on the same file)
    ends them at the next request; other users stay logged in."""
    from agent.web.users import UserStore

    client, _, _ = await web_client(tmp_path)
    other = UserStore(tmp_path / "web-users.json")  # as the CLI would
    try:
        await logged_in(client, "tech")
        assert (await client.get("/api/status")).status == 200
        other.add("tech", "technician", "a-new-password-1")
        assert (await client.get("/api/status")).status == 401
        await logged_in(client, "view")
        assert (await client.get("/api/status")).status == 200
        other.add("view", "technician", PASSWORDS["view"])  # promoted: log in again
        assert (await client.get("/api/status")).status == 401
        assert (await login(client, "view")).status == 303
        assert (await client.get("/api/status")).status == 200
        other.add("tech", "viewer", "a-new-password-1")  # someone else: no effect
        assert (await client.get("/api/status")).status == 200
    finally:
        await client.close()


async def test_headers_and_a_log_line_on_an_unexpected_error(tmp_path: Path,
                                                             caplog: Any) -> None:
    """A handler that raises (a bug) still answers with the security headers, and
    the error is logged with its traceback."""
    import logging

    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from helpers_web import user_store

    from agent.web import WebAccess, make_web_app

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app = make_web_app(lambda: {"version": "t", "uptime_s": 1.0},
                       access=WebAccess(users=user_store(tmp_path)))
    app.router.add_get("/api/boom", boom)
    client = TestClient(TestServer(app))
    await client.start_server()
    caplog.set_level(logging.ERROR, logger="agent.web.guard")
    try:
        await logged_in(client)
        resp = await client.get("/api/boom")
        assert resp.status == 500
        assert "a bug in a handler" not in await resp.text()  # no internals to the client
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, name
        assert resp.headers["Cache-Control"] == "no-store"
        assert "GET /api/boom failed" in caplog.text and "a bug in a handler" in caplog.text
    finally:
        await client.close()
