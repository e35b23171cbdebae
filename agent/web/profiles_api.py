"""Runtime profiles on the status page (agent/runtime/profiles.py).

    GET  /api/profile   {"active", "by", "since_ts", "available": [...], "next"}
    POST /api/profile   {"profile": NAME}, or the page's form (profile=...&csrf=...)

A POST needs a session whose role may change things (technician) and its CSRF
token (checked by ``agent.web.guard``); a viewer gets 403. The switch is stored
as a ``profile_switch`` event (by ``web:<user>``) and the request as a
``user_action`` event, both synced to central.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from agent.web.guard import ACCESS_KEY, require_change

MAX_NAME = 64


class ProfilesBackend(Protocol):
    def profile_status(self) -> dict[str, Any]: ...

    def switch_profile(self, name: str, by: str) -> dict[str, Any]:
        """Switch (a no-op when already active) and return profile_status();
        KeyError for an unknown name (the refusal is recorded)."""
        ...


_BACKEND_KEY = web.AppKey("profiles_backend", object)


def add_profile_routes(app: web.Application, backend: ProfilesBackend) -> None:
    app[_BACKEND_KEY] = backend
    app.router.add_get("/api/profile", _get)
    app.router.add_post("/api/profile", _post)


async def _get(request: web.Request) -> web.Response:
    backend: Any = request.app[_BACKEND_KEY]
    return web.json_response(await asyncio.to_thread(backend.profile_status))


async def _post(request: web.Request) -> web.StreamResponse:
    session = require_change(request)
    form = request.content_type != "application/json"
    try:
        body: Any = await (request.post() if form else request.json())
        name = str(body["profile"]).strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        return web.json_response({"error": "body must be {\"profile\": NAME}"}, status=400)
    if not name or len(name) > MAX_NAME:
        return web.json_response({"error": "profile must be a name"}, status=400)
    backend: Any = request.app[_BACKEND_KEY]
    try:
        # The switch stores events through the writer: off the event loop.
        status = await asyncio.to_thread(backend.switch_profile, name, f"web:{session.user}")
    except KeyError as err:
        return web.json_response({"error": str(err.args[0]) if err.args else "unknown"},
                                 status=404)
    request.app[ACCESS_KEY].record(session, "profile_switch", profile=name)
    if form:  # the page without script: back to it
        raise web.HTTPSeeOther("/#profile")
    return web.json_response(status)
