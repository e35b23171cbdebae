"""The page's gatekeepers: middlewares (security headers and compression on
every response, 404s included; the Host check; login and CSRF) and the login,
logout and one-time link routes.

Every route needs a session except ``/login``, ``/login/link/<token>``,
``/static/*``, ``/favicon.ico``, ``/robots.txt``, ``/healthz`` (liveness: ok or unhealthy and
why, no farm data) and, when ``web.metrics_open``, ``/metrics``.
Every POST needs the session's CSRF token (header ``X-CSRF-Token`` or form
field ``csrf``), and a cross-origin ``Origin`` is refused outright.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from agent.web import i18n
from agent.web.access import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, WebAccess, host_allowed
from agent.web.i18n import _
from agent.web.page import login_page

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCESS_KEY = web.AppKey("web_access", WebAccess)
# request[SESSION]: the Session, or None on public routes.
SESSION: Any = (web.RequestKey("session", object) if hasattr(web, "RequestKey")  # aiohttp>=3.13
                else "session")
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login", "/favicon.ico", "/healthz", "/robots.txt"})
PUBLIC_PREFIXES_LANG = "/lang/"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes form POSTs send Origin: null
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
_COMPRESSIBLE = ("text/", "application/json", "image/svg+xml", "application/javascript")
_MIN_GZIP = 512


def _public(request: web.Request, access: WebAccess) -> bool:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    if path.startswith(("/login/link/", PUBLIC_PREFIXES_LANG)):
        return True
    return access.metrics_open and path == "/metrics" and request.method in ("GET", "HEAD")


def _as_response(exc: web.HTTPException) -> web.Response:
    resp = web.Response(status=exc.status, reason=exc.reason, text=exc.text,
                        headers={k: v for k, v in exc.headers.items()
                                 if k.lower() not in ("content-type", "content-length")},
                        content_type="text/plain")
    return resp


@web.middleware
async def finish(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: security headers on every answer (errors too) and gzip."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = _as_response(exc)
    except Exception:  # a bug: logged, and answered with the headers like any other
        log.exception("%s %s failed", request.method, request.path)
        response = web.Response(status=500, text="internal error: see the agent's log\n")
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    access = request.app[ACCESS_KEY]
    if access.secure_cookies:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if (isinstance(response, web.Response) and response.body is not None
            and isinstance(response.body, bytes | bytearray)
            and len(response.body) >= _MIN_GZIP
            and (response.content_type or "").startswith(_COMPRESSIBLE)
            and "gzip" in request.headers.get("Accept-Encoding", "")):
        response.enable_compression(web.ContentCoding.gzip)
    return response


@web.middleware
async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a Host we are not (DNS rebinding): 421, before anything else runs."""
    access = request.app[ACCESS_KEY]
    if not host_allowed(request.headers.get("Host"), access.allowed_hosts):
        return web.Response(status=421, text="unknown Host: add it to web.allowed_hosts\n")
    return await handler(request)


@web.middleware
async def set_language(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The user's language (cookie), else the browser's: for everything rendered."""
    i18n.use(i18n.pick(request.cookies.get(i18n.LANG_COOKIE),
                       request.headers.get("Accept-Language")))
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    """No Origin (old browsers, scripts) passes: the CSRF token still guards it."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == (request.headers.get("Host") or "").lower()


def _csrf_ok(request: web.Request, session: Session, form: Any) -> bool:
    given = request.headers.get("X-CSRF-Token") or (form.get("csrf") if form else None) or ""
    return hmac.compare_digest(str(given).encode(), session.csrf.encode())


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A session for every non-public route; a CSRF token on every POST."""
    access = request.app[ACCESS_KEY]
    request[SESSION] = None
    if request.method not in ("GET", "HEAD") and not _same_origin(request):
        return web.json_response({"error": "cross-origin request refused"}, status=403)
    session: Session | None
    if access.login:
        session = access.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None and access.users is not None:
            # Removed, or a new password or role (by anyone, in any process): at once.
            user = access.users.get(session.user)
            if user is None or user.stamp != session.stamp:
                access.sessions.drop(session.token)
                session = None
    else:
        session = _open_session(request)
    if _public(request, access):
        request[SESSION] = session
        return await handler(request)
    if session is None:
        if request.path.startswith("/api/") or request.path == "/metrics" \
                or request.method != "GET":
            return web.json_response({"error": "log in first: /login"}, status=401)
        raise web.HTTPSeeOther("/login")
    if request.method not in ("GET", "HEAD"):
        form = None
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
        if not _csrf_ok(request, session, form):
            return web.json_response({"error": "missing or wrong CSRF token: reload the page"},
                                     status=403)
    request[SESSION] = session
    return await handler(request)


_OPEN_KEY = web.AppKey("open_session", Session)


def _open_session(request: web.Request) -> Session:
    """Login off (a loopback test bench): everyone is one local technician."""
    return request.app[_OPEN_KEY]


def session_of(request: web.Request) -> Session | None:
    session: Session | None = request.get(SESSION)
    return session


def require_change(request: web.Request) -> Session:
    """The session, when its role may change things; else 403."""
    session = session_of(request)
    if session is None:
        raise web.HTTPUnauthorized(text="log in first\n")
    if not session.can_change:
        raise web.HTTPForbidden(text="viewers cannot change anything; ask for a technician "
                                     "login\n")
    return session


# -- login routes ----------------------------------------------------------------
def _cookie(response: web.StreamResponse, access: WebAccess, name: str, value: str,
            max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", path="/",
                        secure=access.secure_cookies, max_age=max_age)


async def _login_form(request: web.Request, error: str = "", status: int = 200,
                      headers: dict[str, str] | None = None) -> web.Response:
    access = request.app[ACCESS_KEY]
    if not access.login:
        raise web.HTTPSeeOther("/")
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
    resp = web.Response(text=login_page(token, error, i18n.current()),
                        content_type="text/html", status=status, headers=headers)
    _cookie(resp, access, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return resp


async def login_get(request: web.Request) -> web.Response:
    return await _login_form(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS_KEY]
    if access.users is None:
        raise web.HTTPSeeOther("/")
    form = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(str(form.get("csrf", "")).encode(), cookie.encode()):
        return await _login_form(request, _("The form expired: try again."), 403)
    name = str(form.get("user", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    peer = request.remote or "?"
    keys = (f"ip:{peer}", f"user:{name}")
    wait = access.limits.retry_after(*keys)
    if wait > 0:
        access.record(None, "login_refused", user=name, client=peer, reason="rate limit")
        return await _login_form(
            request, _("Too many failed logins: wait {n} min.").format(
                n=i18n.number(max(1.0, wait / 60), 0)), 429,
            {"Retry-After": str(int(wait) + 1)})
    # Counted before the (slow) check, so concurrent attempts cannot pass the limit.
    access.limits.begin(*keys)
    ran, user, failed = False, None, True  # a check that raises counts as a failure
    try:
        ran, user = await access.checks.run(access.users.verify, name, password)
        failed = ran and user is None
    finally:
        access.limits.end(*keys, failed=failed)
    if not ran:
        access.record(None, "login_refused", user=name, client=peer, reason="busy")
        return await _login_form(
            request, _("Too many logins at once: try again in a few seconds."), 429,
            {"Retry-After": "2"})
    if user is None:
        access.record(None, "login_failed", user=name, client=peer)
        return await _login_form(request, _("Wrong name or password."), 401)
    access.limits.clear(f"user:{name}")
    return _start_session(request, access, user.name, user.role, user.stamp, "password")


def _start_session(request: web.Request, access: WebAccess, name: str, role: str,
                   stamp: str, how: str) -> web.StreamResponse:
    access.sessions.drop(request.cookies.get(SESSION_COOKIE))  # no session fixation
    session = access.sessions.create(name, role, stamp)
    access.record(session, "login", method=how, client=request.remote)
    resp = web.HTTPSeeOther("/")
    out = _as_response(resp)
    out.headers["Location"] = "/"
    _cookie(out, access, SESSION_COOKIE, session.token)
    out.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    return out


async def login_link(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS_KEY]
    if access.users is None:
        raise web.HTTPSeeOther("/")
    name = access.links.use(request.match_info["token"])
    user = access.users.get(name) if name else None
    if user is None:
        return await _login_form(request, _("That login link was used or has expired."), 403)
    return _start_session(request, access, user.name, user.role, user.stamp, "link")


async def logout(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS_KEY]
    session = session_of(request)
    if session is not None and access.login:
        access.record(session, "logout")
        access.sessions.drop(session.token)
    out = _as_response(web.HTTPSeeOther("/login"))
    out.headers["Location"] = "/login"
    out.del_cookie(SESSION_COOKIE, path="/")
    return out


async def choose_language(request: web.Request) -> web.StreamResponse:
    """``/lang/<code>``: remember the language in a cookie (a year), back to the page."""
    code = request.match_info["code"]
    if code not in i18n.LANGUAGES:
        raise web.HTTPNotFound(text="no such language\n")
    out = _as_response(web.HTTPSeeOther("/"))
    out.headers["Location"] = "/"
    _cookie(out, request.app[ACCESS_KEY], i18n.LANG_COOKIE, code, max_age=365 * 86400)
    return out


async def _close_checks(app: web.Application) -> None:
    app[ACCESS_KEY].checks.close()


def install(app: web.Application, access: WebAccess) -> None:
    """Add the middlewares' state and the login routes to ``app``."""
    app[ACCESS_KEY] = access
    app[_OPEN_KEY] = Session("local", "local", "technician", "open-bench", 0.0, 0.0)
    if not access.login:
        app[_OPEN_KEY].csrf = secrets.token_urlsafe(32)
    app.on_cleanup.append(_close_checks)
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_get("/login/link/{token}", login_link)
    app.router.add_post("/logout", logout)
    app.router.add_get("/lang/{code}", choose_language)


MIDDLEWARES = [finish, check_host, set_language, require_session]
