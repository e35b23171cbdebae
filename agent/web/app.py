"""The aiohttp application: ``/`` (page), ``/api/status``, ``/healthz``, ``/metrics``.

Read-only but for alert feedback (agent/web/alerts_api.py): the status comes
from a provider the runtime passes in (called in a worker thread: it reads SQLite).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from agent.web.alerts_api import AlertsBackend, add_alert_routes
from agent.web.page import STYLE, render_status
from agent.web.status import StatusSnapshot, health_reasons, jsonable

log = logging.getLogger(__name__)

StatusProvider = Callable[[], "StatusSnapshot | Mapping[str, Any]"]

_PROVIDER_KEY = web.AppKey("status_provider", object)
_REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Only GETs and small JSON feedback; a large body is never legitimate.
_CLIENT_MAX_SIZE = 64 * 1024


def make_web_app(
    status_provider: StatusProvider,
    registry: CollectorRegistry = REGISTRY,
    alerts: AlertsBackend | None = None,
    token: str | None = None,
) -> web.Application:
    """The status web app.

    :param status_provider: returns a ``StatusSnapshot`` (or its ``to_dict()``).
    :param registry: the Prometheus registry served on ``/metrics``.
    :param alerts: enables the alert list and feedback API.
    :param token: bearer token the feedback POST needs (None: no token).
    """
    app = web.Application(middlewares=[_security_headers], client_max_size=_CLIENT_MAX_SIZE)
    app[_PROVIDER_KEY] = status_provider
    app[_REGISTRY_KEY] = registry
    app.router.add_get("/", _page)
    app.router.add_get("/style.css", _style)
    app.router.add_get("/api/status", _api_status)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    if alerts is not None:
        add_alert_routes(app, alerts, token)
    return app


async def start_web(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 picks a free port).

    :returns: the runner (``await runner.cleanup()`` to stop) and the bound port.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    log.info("status page on http://%s:%d/", host, bound)
    return runner, bound


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _status(request: web.Request) -> dict[str, Any] | None:
    provider: Any = request.app[_PROVIDER_KEY]
    try:
        # The provider reads the buffer (SQLite): keep that off the event loop.
        raw = await asyncio.to_thread(provider)
        data = raw.to_dict() if isinstance(raw, StatusSnapshot) else jsonable(dict(raw))
    except Exception:
        log.exception("status provider failed")
        return None
    return data if isinstance(data, dict) else None


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


async def _page(request: web.Request) -> web.Response:
    data = await _status(request)
    if data is None:
        data, reasons = {}, ["status unavailable"]
    else:
        reasons = health_reasons(data)
    return web.Response(text=render_status(data, reasons), content_type="text/html")


async def _style(request: web.Request) -> web.Response:
    return web.Response(text=STYLE, content_type="text/css")


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
