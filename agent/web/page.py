"""The status page as plain HTML. Every value is escaped: sensor ids, topics
and error texts come from MQTT and must be treated as hostile markup."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from html import escape
from typing import Any

from agent.web.display import age_text, label
from agent.web.i18n import LANGUAGES, N_, _, script_strings
from agent.web.sparkline import sparkline_svg
from agent.web.view import render_view

DESCRIPTION = N_("dairy-edge gateway status: alerts, bulk tanks, barn climate, animals, "
                 "devices and sync.")
NO_IDENTIFICATIONS = N_("No cows identified yet.")
ROLE_NAMES = {"viewer": N_("viewer"), "technician": N_("technician")}


def _languages(current: str) -> str:
    """Links to switch language (a cookie; the page comes back in it)."""
    return " · ".join(
        f'<a href="/lang/{code}" hreflang="{code}" lang="{code}"'
        f'{" aria-current=true" if code == current else ""}>{_e(name)}</a>'
        for code, name in LANGUAGES.items())


def _strings_block() -> str:
    """The script's words in this language: a JSON data block (never executed)."""
    data = json.dumps(script_strings(), ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="i18n">{data}</script>'


def _e(value: Any) -> str:
    return escape("-" if value is None else str(value), quote=True)


def _columns(*names: str) -> str:
    """A table's header row, each name in the page's language (mark them N_)."""
    return "<tr>" + "".join(f"<th>{_e(_(n))}</th>" for n in names) + "</tr>"


def _cameras(cameras: list[Mapping[str, Any]], models: Mapping[str, Any]) -> str:
    """Camera states and model versions: a stalled camera or a refused model is
    something a technician can fix on the spot (cable, power, a bad update)."""
    rows = []
    for cam in cameras:
        state = cam.get("state")
        fps = cam.get("fps")
        rows.append(
            f"<tr><td>{_e(cam.get('id'))}</td><td>{_e(cam.get('role'))}</td>"
            f'<td class="{"ok" if state == "online" else "bad"}">{_e(state)}</td>'
            f"<td>{_e(f'{fps:.1f}' if isinstance(fps, int | float) else None)}</td>"
            f"<td>{_e(cam.get('last_error') or '')}</td></tr>"
        )
    model_rows = [
        f"<tr><td>{_e(name)}</td><td>{_e(m.get('version'))}</td>"
        f'<td class="{"ok" if m.get("state") == "active" else "bad"}">{_e(m.get("state"))}</td>'
        f"<td>{_e(m.get('error') or '')}</td></tr>"
        for name, m in sorted(models.items())
    ]
    out = ""
    if rows:
        out += (
            "<table>" + _columns(N_("Camera"), N_("Role"), N_("State"), "fps", N_("Error"))
            + "".join(rows) + "</table>"
        )
    if model_rows:
        out += (
            "<table>" + _columns(N_("Model"), N_("Version"), N_("State"), N_("Error"))
            + "".join(model_rows)
            + "</table>"
        )
    return out


def _identifications(items: list[Mapping[str, Any]]) -> str:
    """Latest ear-tag visits; numbers and ids are escaped like any wire text."""
    if not items:
        return f'<p class="muted">{_e(_(NO_IDENTIFICATIONS))}</p>'
    rows = []
    for ident in items:
        status = ident.get("status")
        cls = "ok" if status == "identified" else "bad"
        flags = ", ".join(str(f) for f in ident.get("flags") or [])
        conf = ident.get("confidence")
        rows.append(
            f"<tr><td>{_e(ident.get('tag_number'))}</td><td>{_e(ident.get('animal_id'))}</td>"
            f'<td class="{cls}">{_e(status)}{" (" + _e(flags) + ")" if flags else ""}</td>'
            f"<td>{_e(f'{conf:.2f}' if isinstance(conf, int | float) else None)}</td>"
            f"<td>{_e(ident.get('camera_id'))}</td></tr>"
        )
    return (
        "<table>" + _columns(N_("Tag"), N_("Animal"), N_("Status"), N_("Conf."), N_("Camera"))
        + "".join(rows) + "</table>"
    )


def _when(item: Mapping[str, Any]) -> str:
    """``age_s`` as an age when the runtime gives one, else ``wall_ts`` as the
    gateway's local time (its clock may be off before it is synced)."""
    age = item.get("age_s")
    if isinstance(age, int | float):
        return age_text(age)
    ts = item.get("wall_ts")
    if isinstance(ts, int | float) and math.isfinite(ts):
        try:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
        except (OverflowError, OSError, ValueError):
            return "-"
    return "-"


def _num(value: Any, digits: int = 2) -> str | None:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else None


def _body_conditions(items: list[Mapping[str, Any]]) -> str:
    """Latest body condition scores, each with its interval; ids escaped."""
    rows = []
    for bc in items:
        low, high = _num(bc.get("low")), _num(bc.get("high"))
        interval = f" ({low}\u2013{high})" if low is not None and high is not None else ""
        rows.append(
            f"<tr><td>{_e(bc.get('animal_id'))}</td>"
            f"<td>{_e(_num(bc.get('bcs')))}{_e(interval)}</td>"
            f"<td>{_e(_when(bc))}</td><td>{_e(bc.get('camera_id'))}</td></tr>"
        )
    return (
        "<table>" + _columns(N_("Cow"), "BCS", N_("When"), N_("Camera"))
        + "".join(rows) + "</table>"
    )


def _milk_checks(items: list[Mapping[str, Any]]) -> str:
    """Latest milk checks; anything but normal milk is marked (divert, look at the udder)."""
    rows = []
    for mc in items:
        result = mc.get("result")
        rows.append(
            f"<tr><td>{_e(mc.get('animal_id'))}</td><td>{_e(mc.get('quarter'))}</td>"
            f'<td class="{"ok" if result == "normal" else "bad"}">{_e(result)}</td>'
            f"<td>{_e(_num(mc.get('confidence')))}</td><td>{_e(_when(mc))}</td></tr>"
        )
    return (
        "<table>" + _columns(N_("Cow"), N_("Quarter"), N_("Result"), N_("Conf."), N_("When"))
        + "".join(rows) + "</table>"
    )


def vision_sections(status: Mapping[str, Any]) -> str:
    """Cameras, identifications, body condition and milk checks (when any)."""
    return (
        (
            f"<section><h2>{_e(_('Cows identified'))}</h2>"
            f"<div class=scroll>{_identifications(status.get('identifications') or [])}</div>"
            "</section>"
            f"<section><h2>{_e(_('Cameras'))}</h2>"
            f"<div class=scroll>{_cameras(status.get('cameras') or [], status.get('models') or {})}"
            "</div></section>"
            if status.get("cameras")
            else ""
        )
        + (
            f"<section><h2>{_e(_('Body condition'))}</h2>"
            f"<div class=scroll>{_body_conditions(status['body_conditions'])}</div>"
            "</section>"
            if status.get("body_conditions")
            else ""
        )
        + (
            f"<section><h2>{_e(_('Milk checks'))}</h2>"
            f"<div class=scroll>{_milk_checks(status['milk_checks'])}</div></section>"
            if status.get("milk_checks")
            else ""
        )
    )


def _head(title: str, lang: str, version: str = "") -> str:
    v = f"?v={escape(version)}" if version else ""
    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="description" content="{_e(_(DESCRIPTION))}">'
        '<meta name="color-scheme" content="light dark">'
        '<meta name="theme-color" content="#1d5b3a">'
        '<link rel="icon" href="/favicon.ico" type="image/svg+xml">'
        f'<link rel="stylesheet" href="/static/style.css{v}">'
        f"<title>{escape(title)}</title></head>"
    )


def render_page(view: str, *, gateway: str = "", csrf: str = "", user: str = "",
                role: str = "", lang: str = "en", query: str = "",
                static_version: str = "", poll_s: float = 15.0,
                server_time: float | None = None, etag: str = "",
                review: bool = False) -> str:
    """The whole page around one rendered view (``view.render_view``)."""
    name = gateway or "dairy-edge"
    who = (
        f'<form method="post" action="/logout" class="who">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<span>{_e(user)} ({_e(_(ROLE_NAMES.get(role, role)))})</span> '
        f'<button>{_e(_("Log out"))}</button></form>'
        if user and user != "local" else ""
    )
    return (
        _head(_("{name} status").format(name=name), lang, static_version)
        + f'<body data-csrf="{_e(csrf)}" data-poll-ms="{int(poll_s * 1000)}"'
        + (f' data-now="{server_time:.0f}"' if server_time is not None else "")
        + (f' data-etag="{_e(etag)}"' if etag else "") + ">"
        '<header class="top"><div><h1>' + _e(name) + "</h1>"
        '<p class="muted"><span id="clock"></span> '
        '<span id="updated"></span></p></div>' + who + "</header>"
        '<p id="banner" class="banner" hidden role="alert"></p>'
        + _strings_block()
        + f'<main id="view" aria-live="polite">{view}</main>'
        f'<footer class="muted">{_languages(lang)} · '
        + (f'<a href="/review">{_e(_("Review queue"))}</a> · ' if review else "")
        + '<a href="/api/status">JSON</a> · '
        f'<a href="/metrics">{_e(_("metrics"))}</a></footer>'
        f'<script src="/static/app.js{"?v=" + _e(static_version) if static_version else ""}" '
        'defer></script></body></html>'
    )


def render_shell(title: str, main: str, *, lang: str = "en", static_version: str = "",
                 heading: str = "", note: str = "") -> str:
    """A plain page (a sensor's history, the review queue) around ``main`` (HTML)."""
    return (
        _head(title, lang, static_version)
        + f'<body><header class="top"><div><h1>{_e(heading or title)}</h1>'
        + (f'<p class="muted">{_e(note)}</p>' if note else "")
        + f'</div></header><main>{main}</main><footer class="muted">'
        f'<a href="/">{_e(_("Back"))}</a></footer></body></html>'
    )


def render_sensor_page(sensor_id: str, series: Mapping[str, list[float]], *,
                       gateway: str = "", lang: str = "en", static_version: str = "") -> str:
    """One sensor's fields over the last 24 h (15-minute means from the buffer)."""
    parts = []
    for field, values in sorted(series.items()):
        chart = sparkline_svg(values, label(field), width=320, height=64)
        if chart:
            parts.append(f"<h2>{_e(label(field))}</h2>{chart}")
    body = "".join(parts) or f'<p class="muted">{_e(_("No readings in the last 24 h."))}</p>'
    return render_shell(_("{name} status").format(name=gateway or "dairy-edge"), body,
                        lang=lang, static_version=static_version, heading=sensor_id,
                        note=_("Last 24 h, 15-minute means"))


def login_page(csrf: str, error: str = "", lang: str = "en") -> str:
    err = f'<p class="bad" role="alert">{_e(error)}</p>' if error else ""
    return (
        _head(_("dairy-edge login"), lang)
        + '<body class="login"><main><h1>dairy-edge</h1>'
        f"{err}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<label for="user">{_e(_("Name"))}</label>'
        '<input id="user" name="user" autocomplete="username" autocapitalize="none" required>'
        f'<label for="password">{_e(_("Password"))}</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        f'<button type="submit">{_e(_("Log in"))}</button></form>'
        f'<p class="muted">{_languages(lang)}</p></main></body></html>'
    )


def render_status(status: Mapping[str, Any], reasons: list[str], **kw: Any) -> str:
    """The whole page for one status dict (``StatusSnapshot.to_dict()`` shape)."""
    can_change = bool(kw.pop("can_change", False))
    query = str(kw.get("query", ""))
    view = render_view(status, reasons, can_change=can_change, query=query,
                       extra=vision_sections(status), csrf=str(kw.get("csrf", "")))
    return render_page(view, **kw)


# Messages used inside f-strings, listed for Babel's extractor (it cannot see them there).
_MARKED = (
    N_("Cows identified"),
    N_("Cameras"),
    N_("Body condition"),
    N_("Milk checks"),
    N_("Log out"),
    N_("metrics"),
    N_("Name"),
    N_("Password"),
    N_("Log in"),
    N_("No readings in the last 24 h."),
    N_("Last 24 h, 15-minute means"),
    N_("Back"),
    N_("Review queue"),
)
