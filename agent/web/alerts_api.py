"""Alert feedback for technicians: list alerts, confirm or reject one.

    GET  /api/alerts                      recent alerts and per-rule precision
    POST /api/alerts/{alert_id}/feedback  {"verdict": "confirmed" | "rejected"}

The POST changes state, so when a token is configured (secret ``web_token``)
it needs ``Authorization: Bearer <token>``; JSON bodies only, which a plain
cross-site form cannot send.
"""

from __future__ import annotations

import hmac
import re
from typing import Any, Protocol

from aiohttp import web

_ALERT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class AlertsBackend(Protocol):
    def recent_alerts(self, n: int) -> list[dict[str, Any]]: ...

    def precision(self) -> dict[str, float | None]: ...

    def feedback(self, alert_id: str, verdict: str) -> None:
        """Record a verdict; KeyError for an unknown alert, ValueError for a bad verdict."""
        ...


_BACKEND_KEY = web.AppKey("alerts_backend", object)
_TOKEN_KEY = web.AppKey("alerts_token", object)


def add_alert_routes(app: web.Application, backend: AlertsBackend, token: str | None) -> None:
    app[_BACKEND_KEY] = backend
    app[_TOKEN_KEY] = token
    app.router.add_get("/api/alerts", _list)
    app.router.add_post("/api/alerts/{alert_id}/feedback", _feedback)


async def _list(request: web.Request) -> web.Response:
    backend: Any = request.app[_BACKEND_KEY]
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 500)
    except ValueError:
        return web.json_response({"error": "limit must be a number"}, status=400)
    return web.json_response(
        {"alerts": backend.recent_alerts(limit), "precision": backend.precision()}
    )


async def _feedback(request: web.Request) -> web.Response:
    token: Any = request.app[_TOKEN_KEY]
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
    if request.content_type != "application/json":
        return web.json_response({"error": "send JSON: {\"verdict\": ...}"}, status=415)
    alert_id = request.match_info["alert_id"]
    if not _ALERT_ID.match(alert_id):
        return web.json_response({"error": "not an alert id"}, status=400)
    try:
        body = await request.json()
        verdict = str(body["verdict"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "body must be {\"verdict\": ...}"}, status=400)
    backend: Any = request.app[_BACKEND_KEY]
    try:
        backend.feedback(alert_id, verdict)
    except KeyError:
        return web.json_response({"error": "no such alert"}, status=404)
    except ValueError as err:
        return web.json_response({"error": str(err)}, status=400)
    return web.json_response({"alert_id": alert_id, "verdict": verdict,
                              "precision": backend.precision()})
