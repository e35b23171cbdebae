"""Alerts for technicians: list them, confirm, reject, snooze or acknowledge one.

    GET  /api/alerts                      recent alerts and per-rule precision
    POST /api/alerts/{alert_id}/feedback  {"verdict": "confirmed" | "rejected"}
    POST /api/alerts/{alert_id}/action    {"action": "confirm" | "reject" | "snooze"
                                           | "acknowledge", "minutes": 60}
                                          (or the page's form: action=...&csrf=...)

Every POST needs a session whose role may change things (technician) and its
CSRF token (checked by ``agent.web.guard``); each change is kept as a
``user_action`` event (who, what, when) that syncs to central.

The backend is called in a worker thread: it reads SQLite and takes the rule
engine's lock, which the ingest thread holds while it evaluates readings.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Protocol

from aiohttp import web

from agent.web.guard import ACCESS_KEY, require_change

_ALERT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
ACTIONS = ("confirm", "reject", "snooze", "acknowledge")
_VERDICT = {"confirm": "confirmed", "reject": "rejected"}
MAX_SNOOZE_MIN = 24 * 60


class AlertsBackend(Protocol):
    def recent_alerts(self, n: int) -> list[dict[str, Any]]: ...

    def precision(self) -> dict[str, float | None]: ...

    def feedback(self, alert_id: str, verdict: str) -> None:
        """Record a verdict; KeyError for an unknown alert, ValueError for a bad verdict."""
        ...

    def snooze(self, alert_id: str, seconds: float) -> bool:
        """Silence an open alert for ``seconds``; False when it is not open."""
        ...

    def acknowledge(self, alert_id: str) -> bool:
        """Stop an open alert's escalation; False when it is not open."""
        ...


_BACKEND_KEY = web.AppKey("alerts_backend", object)


def add_alert_routes(app: web.Application, backend: AlertsBackend) -> None:
    app[_BACKEND_KEY] = backend
    app.router.add_get("/api/alerts", _list)
    app.router.add_post("/api/alerts/{alert_id}/feedback", _feedback)
    app.router.add_post("/api/alerts/{alert_id}/action", _action)


async def _list(request: web.Request) -> web.Response:
    backend: Any = request.app[_BACKEND_KEY]
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 500)
    except ValueError:
        return web.json_response({"error": "limit must be a number"}, status=400)

    def read() -> dict[str, Any]:
        return {"alerts": backend.recent_alerts(limit), "precision": backend.precision()}

    return web.json_response(await asyncio.to_thread(read))


async def _feedback(request: web.Request) -> web.StreamResponse:
    require_change(request)
    if request.content_type != "application/json":
        return web.json_response({"error": "send JSON: {\"verdict\": ...}"}, status=415)
    try:
        body = await request.json()
        verdict = str(body["verdict"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "body must be {\"verdict\": ...}"}, status=400)
    action = {"confirmed": "confirm", "rejected": "reject"}.get(verdict.lower(), verdict)
    return await _apply(request, action, None, form=False)


async def _action(request: web.Request) -> web.StreamResponse:
    require_change(request)
    form = request.content_type != "application/json"
    try:
        body: Any = await (request.post() if form else request.json())
        action = str(body["action"])
        minutes = body.get("minutes")
    except (ValueError, KeyError, TypeError, AttributeError):
        return web.json_response({"error": "body must be {\"action\": ...}"}, status=400)
    return await _apply(request, action, minutes, form=form)


async def _apply(request: web.Request, action: str, minutes: Any,
                 form: bool) -> web.StreamResponse:
    session = require_change(request)
    alert_id = request.match_info["alert_id"]
    if not _ALERT_ID.fullmatch(alert_id):
        return web.json_response({"error": "not an alert id"}, status=400)
    if action not in ACTIONS:
        return web.json_response(
            {"error": f"action must be one of {', '.join(ACTIONS)}"}, status=400)
    backend: Any = request.app[_BACKEND_KEY]
    detail: dict[str, Any] = {"alert_id": alert_id}
    if action in _VERDICT:
        detail["verdict"] = _VERDICT[action]
    elif action == "snooze":
        try:
            mins = 60.0 if minutes in (None, "") else float(minutes)
        except (TypeError, ValueError):
            return web.json_response({"error": "minutes must be a number"}, status=400)
        if not 1 <= mins <= MAX_SNOOZE_MIN:
            return web.json_response(
                {"error": f"minutes must be 1 to {MAX_SNOOZE_MIN}"}, status=400)
        detail["minutes"] = mins

    def change() -> dict[str, float | None]:
        if action in _VERDICT:
            backend.feedback(alert_id, detail["verdict"])
        elif action == "snooze":
            if not backend.snooze(alert_id, detail["minutes"] * 60.0):
                raise KeyError(alert_id)
        elif not backend.acknowledge(alert_id):
            raise KeyError(alert_id)
        precision: dict[str, float | None] = backend.precision()
        return precision

    try:
        precision = await asyncio.to_thread(change)
    except KeyError:
        return web.json_response({"error": "no such open alert"}, status=404)
    except ValueError as err:
        return web.json_response({"error": str(err)}, status=400)
    request.app[ACCESS_KEY].record(session, f"alert_{action}", **detail)
    if form:  # the page without script: back to it
        raise web.HTTPSeeOther(f"/#alert-{alert_id}")
    return web.json_response({"alert_id": alert_id, "action": action,
                              "verdict": detail.get("verdict"),
                              "precision": precision})
