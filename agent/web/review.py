"""The ear-tag review queue on the page: doubtful visits with their crops; a
technician confirms the tag number read or types the right one.

    GET  /review                  the waiting visits (newest first, 20)
    GET  /review/{item}/{crop}    a crop (JPEG)
    POST /review/{item}           tag_number=...&csrf=...   (technician)

Each verdict is kept beside the visit by the runtime and recorded as a
``user_action`` event ``tag_review`` (read, tag number, confirmed or corrected,
who), which syncs to central.
"""

from __future__ import annotations

import asyncio
import re
from html import escape
from typing import Any, Protocol

from aiohttp import web

from agent.web import i18n
from agent.web.guard import ACCESS_KEY, require_change, session_of
from agent.web.i18n import N_, _
from agent.web.users import CHANGERS

_TAG = re.compile(r"[A-Za-z0-9-]{1,16}")
_ITEM = re.compile(r"\d{10}-[A-Za-z0-9_-]{1,64}")


class ReviewBackend(Protocol):
    def items(self, limit: int = 20) -> list[dict[str, Any]]: ...

    def crop(self, item: str, name: str) -> bytes | None: ...

    def review(self, item: str, tag_number: str, user: str) -> dict[str, Any]:
        """KeyError for an unknown item."""
        ...


_REVIEW_KEY = web.AppKey("review_backend", object)


def add_review_routes(app: web.Application, backend: ReviewBackend) -> None:
    app[_REVIEW_KEY] = backend
    app.router.add_get("/review", _page)
    app.router.add_get("/review/{item}/{crop}", _crop)
    app.router.add_post("/review/{item}", _review)


def _e(value: Any) -> str:
    return escape("-" if value is None else str(value), quote=True)


async def _page(request: web.Request) -> web.Response:
    from agent.web.app import STATIC_VERSION  # the page's shell (app imports this module)
    from agent.web.page import render_shell

    backend: Any = request.app[_REVIEW_KEY]
    session = session_of(request)
    can_change = session is not None and session.role in CHANGERS
    items = await asyncio.to_thread(backend.items, 20)
    cards = []
    for it in items:
        name = _e(it["item"])
        crops = "".join(f'<img src="/review/{name}/{_e(c)}" alt="{_e(_("tag crop"))}" '
                        'loading="lazy" width="240">' for c in it["crops"])
        flags = ", ".join(str(f) for f in it["flags"])
        conf = it.get("confidence")
        form = ""
        if can_change:
            form = (f'<form method="post" action="/review/{name}" class="act">'
                    f'<input type="hidden" name="csrf" value="{_e(session.csrf if session else "")}">'
                    f'<label for="t-{name}">{_e(_("Tag number"))}</label>'
                    f'<input id="t-{name}" name="tag_number" value="{_e(it.get("tag_number") or "")}" '
                    'inputmode="numeric" autocomplete="off" required pattern="[A-Za-z0-9-]{1,16}">'
                    f'<button>{_e(_("Save"))}</button></form>')
        cards.append(
            f'<article class="alert info" id="r-{name}"><header>'
            f'<b>{_e(it.get("tag_number"))}</b> <span class="rule">{_e(it.get("status"))}'
            f'{(" (" + _e(flags) + ")") if flags else ""}</span>'
            f'<span class="muted">{_e(it.get("camera_id"))}'
            f'{(" · " + i18n.number(conf, 2)) if isinstance(conf, int | float) else ""}</span>'
            f"</header><p>{crops}</p>{form}</article>")
    body = "".join(cards) or f'<p class="muted">{_e(_("Nothing waiting for review."))}</p>'
    html = render_shell(_("Review queue"), body,
                        lang=i18n.current(), static_version=STATIC_VERSION)
    return web.Response(text=html, content_type="text/html")


async def _crop(request: web.Request) -> web.Response:
    backend: Any = request.app[_REVIEW_KEY]
    data = await asyncio.to_thread(backend.crop, request.match_info["item"],
                                   request.match_info["crop"])
    if data is None:
        raise web.HTTPNotFound(text="no such crop\n")
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})


async def _review(request: web.Request) -> web.StreamResponse:
    session = require_change(request)
    item = request.match_info["item"]
    form = await request.post()
    tag = str(form.get("tag_number", "")).strip()
    if not _ITEM.fullmatch(item) or not _TAG.fullmatch(tag):
        return web.json_response({"error": "a tag number is 1-16 letters, digits or '-'"},
                                 status=400)
    backend: Any = request.app[_REVIEW_KEY]
    try:
        verdict = await asyncio.to_thread(backend.review, item, tag, session.user)
    except KeyError:
        return web.json_response({"error": "no such review item"}, status=404)
    request.app[ACCESS_KEY].record(session, "tag_review", item=item,
                                   **{k: v for k, v in verdict.items() if k != "user"})
    raise web.HTTPSeeOther("/review")


# Messages used inside f-strings, listed for Babel's extractor (it cannot see them there).
_MARKED = (
    N_("tag crop"),
    N_("Tag number"),
    N_("Save"),
    N_("Nothing waiting for review."),
    N_("Review queue"),
)
