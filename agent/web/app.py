"""The aiohttp application.

    /                 the page (server-rendered, then kept live by /static/app.js)
    /api/view         the page's live part alone, with an ETag (304 when unchanged)
    /api/status       the status as JSON
    /api/alerts ...   alert list and technician actions (agent/web/alerts_api.py)
    /api/profile      runtime profile: show, switch (agent/web/profiles_api.py)
    /healthz          ok / unhealthy and why (no login: liveness checks)
    /metrics          Prometheus (login, or open read-only with web.metrics_open)
    /login, /logout   (agent/web/guard.py), /static/*, /favicon.ico

The status comes from a provider the runtime passes in (called in a worker
thread: it reads SQLite). Who may see and change what: ``agent.web.access``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from agent.web import guard, i18n
from agent.web.access import WebAccess
from agent.web.alerts_api import AlertsBackend, add_alert_routes
from agent.web.guard import session_of
from agent.web.history import Trend
from agent.web.page import render_page, render_sensor_page, vision_sections
from agent.web.profiles_api import ProfilesBackend, add_profile_routes
from agent.web.review import _REVIEW_KEY as _REVIEW_ON
from agent.web.review import ReviewBackend, add_review_routes
from agent.web.status import StatusSnapshot, health_reasons, jsonable
from agent.web.users import CHANGERS, UserStore
from agent.web.view import render_view, view_etag_source

log = logging.getLogger(__name__)

StatusProvider = Callable[[], "StatusSnapshot | Mapping[str, Any]"]

_PROVIDER_KEY = web.AppKey("status_provider", object)
_REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
_GATEWAY_KEY = web.AppKey("gateway", str)
_POLL_KEY = web.AppKey("poll_s", float)
_TREND_KEY = web.AppKey("backlog_trend", Trend)
_SENSOR_KEY = web.AppKey("sensor_history", object)
SensorHistory = Callable[[str], "Mapping[str, list[float]]"]
# Only GETs, a login form and small JSON actions; a large body is never legitimate.
_CLIENT_MAX_SIZE = 64 * 1024
_STATIC_TYPES = {".css": "text/css", ".js": "application/javascript",
                 ".svg": "image/svg+xml"}


def _static_files() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    folder = resources.files("agent.web") / "static"
    for entry in folder.iterdir():
        suffix = Path(entry.name).suffix
        if suffix in _STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return files


STATIC = _static_files()
# Static files are cached for a day; the page names them with this version.
STATIC_VERSION = hashlib.sha256(b"".join(b for b, _ in STATIC.values())).hexdigest()[:10]


def make_web_app(
    status_provider: StatusProvider,
    registry: CollectorRegistry = REGISTRY,
    alerts: AlertsBackend | None = None,
    access: WebAccess | None = None,
    gateway: str = "",
    poll_s: float = 15.0,
    sensor_history: SensorHistory | None = None,
    review: ReviewBackend | None = None,
    profiles: ProfilesBackend | None = None,
) -> web.Application:
    """The status web app.

    :param status_provider: returns a ``StatusSnapshot`` (or its ``to_dict()``).
    :param registry: the Prometheus registry served on ``/metrics``.
    :param alerts: enables the alert list and technician actions.
    :param access: users, sessions and the Host list; None: a login nobody has yet
        (secure by default: pass one to let anybody in).
    :param gateway: the gateway's name, shown at the top.
    :param poll_s: how often an open page asks for changes.
    :param sensor_history: one sensor's last 24 h from the buffer, field -> 15-minute
        means (called in a worker thread): the ``/sensor?id=`` page.
    :param review: the ear-tag review queue (``/review``), when there are tag cameras.
    :param profiles: runtime profiles (``/api/profile``), when any are configured.
    """
    if access is None:
        access = WebAccess(users=UserStore(None))
    app = web.Application(middlewares=guard.MIDDLEWARES, client_max_size=_CLIENT_MAX_SIZE)
    guard.install(app, access)
    app[_PROVIDER_KEY] = status_provider
    app[_REGISTRY_KEY] = registry
    app[_GATEWAY_KEY] = gateway
    app[_POLL_KEY] = poll_s
    app[_TREND_KEY] = Trend()
    app[_SENSOR_KEY] = sensor_history
    app.router.add_get("/", _page)
    app.router.add_get("/api/view", _api_view)
    app.router.add_get("/api/status", _api_status)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/favicon.ico", _favicon)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/robots.txt", _robots)
    app.router.add_get("/sensor", _sensor_page)
    if alerts is not None:
        add_alert_routes(app, alerts)
    if review is not None:
        add_review_routes(app, review)
    if profiles is not None:
        add_profile_routes(app, profiles)
    return app


async def start_web(app: web.Application, host: str, port: int,
                    ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 picks a free port).

    :returns: the runner (``await runner.cleanup()`` to stop) and the bound port.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    log.info("status page on http%s://%s:%d/", "s" if ssl_context else "", host, bound)
    return runner, bound


async def _status(request: web.Request) -> dict[str, Any] | None:
    provider: Any = request.app[_PROVIDER_KEY]
    try:
        # The provider reads the buffer (SQLite): keep that off the event loop.
        raw = await asyncio.to_thread(provider)
        data = raw.to_dict() if isinstance(raw, StatusSnapshot) else jsonable(dict(raw))
    except Exception:
        log.exception("status provider failed")
        return None
    if not isinstance(data, dict):
        return None
    backlog = data.get("backlog")
    if isinstance(backlog, int | float):
        data["backlog_trend"] = request.app[_TREND_KEY].note(time.monotonic(), backlog)
    return data


async def _api_status(request: web.Request) -> web.Response:
    data = await _status(request)
    if data is None:
        return web.json_response({"error": "status unavailable"}, status=500)
    reasons = health_reasons(data)
    data["health"] = {"healthy": not reasons, "reasons": reasons}
    return web.json_response(data)


async def _healthz(request: web.Request) -> web.Response:
    data = await _status(request)
    reasons = ["status unavailable"] if data is None else health_reasons(data)
    if reasons:
        return web.json_response({"status": "unhealthy", "reasons": reasons}, status=503)
    return web.json_response({"status": "ok", "reasons": []})


async def _view_html(request: web.Request) -> str:
    data = await _status(request)
    if data is None:
        data, reasons = {}, ["status unavailable"]
    else:
        reasons = health_reasons(data)
    session = session_of(request)
    can_change = session is not None and session.role in CHANGERS
    return render_view(data, reasons, can_change=can_change,
                       query=request.query.get("q", "")[:64], extra=vision_sections(data),
                       csrf=session.csrf if session is not None else "")


def _etag(view_html: str) -> str:
    # Ages alone do not make a change: the page's script keeps them current.
    return '"' + hashlib.sha256(view_etag_source(view_html).encode()).hexdigest()[:20] + '"'


async def _page(request: web.Request) -> web.Response:
    session = session_of(request)
    view = await _view_html(request)
    html = render_page(
        view, gateway=request.app[_GATEWAY_KEY], csrf=session.csrf if session else "",
        user=session.user if session else "", role=session.role if session else "",
        query=request.query.get("q", "")[:64], static_version=STATIC_VERSION,
        poll_s=request.app[_POLL_KEY], server_time=time.time(), etag=_etag(view),
        lang=i18n.current(), review=_REVIEW_ON in request.app,
    )
    return web.Response(text=html, content_type="text/html")


async def _api_view(request: web.Request) -> web.Response:
    """The live part; unchanged since the client's copy: 304 with no body."""
    html = await _view_html(request)
    body = html.encode()
    etag = _etag(html)
    headers = {"ETag": etag, "Cache-Control": "no-cache",
               "X-Server-Time": f"{time.time():.0f}"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _static_response(name: str) -> web.Response:
    entry = STATIC.get(name)
    if entry is None:
        raise web.HTTPNotFound(text="no such file\n")
    body, ctype = entry
    return web.Response(body=body, content_type=ctype,
                        headers={"Cache-Control": "public, max-age=86400, immutable"})


async def _static(request: web.Request) -> web.Response:
    return _static_response(request.match_info["name"])


async def _favicon(request: web.Request) -> web.Response:
    return _static_response("favicon.svg")


async def _robots(request: web.Request) -> web.Response:
    # Everything but the login needs a session anyway; crawlers get nothing from the API.
    return web.Response(text="User-agent: *\nDisallow: /api/\n",
                        headers={"Cache-Control": "public, max-age=86400"})


async def _sensor_page(request: web.Request) -> web.Response:
    """``/sensor?id=<sensor id>``: every field of one sensor over 24 h, from the buffer."""
    sensor_id = request.query.get("id", "")
    if not 1 <= len(sensor_id) <= 128 or not sensor_id.isprintable():
        raise web.HTTPBadRequest(text="id must be a sensor id\n")
    provider: Any = request.app[_SENSOR_KEY]
    series: Mapping[str, list[float]] = {}
    if provider is not None:
        try:
            series = await asyncio.to_thread(provider, sensor_id)
        except Exception:
            log.exception("sensor history failed")
            raise web.HTTPInternalServerError(text="history unavailable\n") from None
    html = render_sensor_page(sensor_id, series, gateway=request.app[_GATEWAY_KEY],
                              lang=i18n.current(), static_version=STATIC_VERSION)
    return web.Response(text=html, content_type="text/html")
