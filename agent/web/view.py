"""The page's live part (``<main>``), in the order a technician needs it:
problems and open alerts (with buttons), bulk tanks and barn climate, animals
(grouped, searchable, collapsed when healthy), devices, buffer and sync.

The same HTML is served inside the page and, alone, by ``/api/view`` for the
page's poll, so there is one renderer and one place that escapes. Every value
from the wire (ids, messages, errors) goes through ``_e``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from agent.web.display import (
    GROUPS,
    LOW_BATTERY_V,
    QUIET,
    age_text,
    bytes_text,
    label,
    value_text,
)
from agent.web.i18n import N_, _, clock, digits, number
from agent.web.sparkline import sparkline_svg

# Search results and flagged animals shown at most (the rest by searching).
MAX_ANIMAL_ROWS = 60
STALE_S = 900.0
# Milk meters speak at milkings only (two or three a day).
STALE_BY_GROUP = {"milk": 14 * 3600.0}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# Words from the runtime shown as they are in English; translated here.
WORDS = {
    "critical": N_("critical"), "warning": N_("warning"), "info": N_("info"),
    "raised": N_("raised"), "updated": N_("updated"), "cleared": N_("cleared"),
    "confirmed": N_("confirmed"), "rejected": N_("rejected"), "ok": N_("ok"),
    "stale": N_("stale"), "silent": N_("silent"), "low battery": N_("low battery"),
    "idle": N_("idle"), "uploading": N_("uploading"), "backoff": N_("backoff"),
    "disabled": N_("disabled"), "error": N_("error"),
}


RULE_NAMES = {
    "cooling": N_("tank cooling"), "estrus": N_("heat (estrus)"),
    "heat_stress": N_("heat stress"), "mastitis": N_("mastitis"),
    "rumination": N_("rumination drop"), "bcs_loss": N_("body condition loss"),
    "milk_abnormal": N_("abnormal milk"), "sync_refused": N_("sync refused"),
    "sensor.stuck": N_("sensor stuck"), "sensor.erratic": N_("sensor erratic"),
    "sensor.range": N_("value out of range"), "sensor.dropout": N_("sensor silent"),
    "sensor.calibration": N_("calibration due"), "sensor.spike": N_("sensor spike"),
    "sensor.drift": N_("sensor drift"),
}


def _rule(rule: Any) -> str:
    text = str(rule or "")
    return _(RULE_NAMES[text]) if text in RULE_NAMES else text.replace("_", " ")


def _w(word: Any) -> str:
    """A runtime word in the current language (unknown words as they are)."""
    text = str(word)
    return _(WORDS[text]) if text in WORDS else text


def _e(value: Any) -> str:
    return escape("-" if value is None else str(value), quote=True)


def clock_text(ts: Any) -> str:
    """A wall time as the gateway's local ``HH:MM`` (with the date when not today)."""
    if not isinstance(ts, int | float) or not math.isfinite(ts):
        return "-"
    try:
        today = time.strftime("%Y%m%d", time.localtime(ts)) == time.strftime("%Y%m%d")
        return clock(ts, with_date=not today)
    except (OverflowError, OSError, ValueError):
        return "-"


def _iso(ts: Any) -> str:
    if not isinstance(ts, int | float) or not math.isfinite(ts):
        return ""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return ""


# -- alerts ------------------------------------------------------------------------
def open_alerts(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Open alerts, worst first: the runtime's live list when it gives one
    (acknowledged and snoozed are live there), joined with the stored records
    (time raised, signals); else derived from the records alone."""
    records = [a for a in status.get("alerts") or [] if isinstance(a, Mapping)]
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:  # newest first
        details = rec.get("details") or {}
        aid = str(details.get("alert_id") or rec.get("record_id"))
        by_id.setdefault(aid, []).append(rec)
    live = status.get("open_alerts")
    out: list[dict[str, Any]] = []
    if isinstance(live, list):
        for item in live:
            aid = str(item.get("alert_id"))
            recs = by_id.get(aid, [])
            out.append(_alert_view(aid, item, recs))
    else:
        for aid, recs in by_id.items():
            if recs[0].get("state") != "cleared":
                out.append(_alert_view(aid, recs[0], recs))
    out.sort(key=lambda a: (SEVERITY_ORDER.get(a["severity"], 3), -(a["raised_ts"] or 0)))
    return out


def _alert_view(aid: str, item: Mapping[str, Any],
                recs: list[Mapping[str, Any]]) -> dict[str, Any]:
    latest = recs[0] if recs else {}
    details = (latest.get("details") or {}) if latest else {}
    raised = next((r for r in reversed(recs) if r.get("state") == "raised"), None)
    subject = item.get("animal_id") or item.get("subject") or latest.get("animal_id") \
        or details.get("subject") or item.get("sensor_id") or latest.get("sensor_id")
    return {
        "alert_id": aid,
        "rule": item.get("rule") or latest.get("rule"),
        "severity": str(item.get("severity") or latest.get("severity") or "warning"),
        "message": item.get("message") or latest.get("message"),
        "subject": subject,
        "raised_ts": (raised or (recs[-1] if recs else {})).get("wall_ts"),
        "signals": details.get("signals") or [],
        "acknowledged": bool(item.get("acknowledged", details.get("acknowledged"))),
        "snoozed": bool(item.get("snoozed", details.get("snoozed_until_s"))),
        "verdict": item.get("verdict"),
    }


def _signal_text(sig: Mapping[str, Any]) -> str:
    name = str(sig.get("name") or "")
    value = sig.get("value")
    unit = str(sig.get("unit") or "")
    shown = digits(f"{value:.4g}") if isinstance(value, int | float) else "-"
    text = f"{label(name)} {shown}{(' ' + unit) if unit else ''}"
    limit = sig.get("limit")
    if isinstance(limit, int | float):
        text += " " + _("(limit {value})").format(value=digits(f"{limit:.4g}"))
    return text


def _alert_card(a: Mapping[str, Any], can_change: bool, csrf: str) -> str:
    sev = a["severity"] if a["severity"] in SEVERITY_ORDER else "warning"
    aid = _e(a["alert_id"])
    chips = []
    if a.get("verdict"):
        chips.append(f'<span class="chip ok">{_e(_w(a["verdict"]))}</span>')
    elif a.get("acknowledged"):
        chips.append(f'<span class="chip ok">{_e(_("acknowledged"))}</span>')
    if a.get("snoozed"):
        chips.append(f'<span class="chip">{_e(_("snoozed"))}</span>')
    signals = "".join(f"<li>{_e(_signal_text(s))}</li>" for s in a["signals"][:6]
                      if isinstance(s, Mapping))
    buttons = ""
    if can_change and not a.get("verdict"):  # a verdict given: nothing left to press
        buttons = (
            f'<form class="act" method="post" action="/api/alerts/{aid}/action" '
            f'data-alert="{aid}"><input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'<button name="action" value="confirm">{_e(_("Confirm"))}</button>'
            f'<button name="action" value="reject">{_e(_("Reject"))}</button>'
            f'<button name="action" value="snooze">{_e(_("Snooze 1 h"))}</button>'
            "</form>"
        )
    return (
        f'<article class="alert {sev}" id="alert-{aid}">'
        f'<header><span class="sev">{_e(_w(sev))}</span> <b>{_e(a["subject"])}</b> '
        f'<span class="rule">{_e(_rule(a["rule"]))}</span>'
        f'<time datetime="{_iso(a["raised_ts"])}">{_e(clock_text(a["raised_ts"]))}</time>'
        f'{"".join(chips)}</header>'
        f'<p>{_e(a["message"])}</p>'
        + (f'<ul class="signals">{signals}</ul>' if signals else "")
        + buttons + "</article>"
    )


def _alert_history(records: list[Mapping[str, Any]]) -> str:
    if not records:
        return ""
    rows = "".join(
        f"<tr><td>{_e(clock_text(r.get('wall_ts')))}</td>"
        f"<td>{_e(_rule(r.get('rule')))}</td>"
        f"<td>{_e(_w(r.get('state')))}</td>"
        f"<td>{_e(r.get('animal_id') or r.get('sensor_id'))}</td>"
        f'<td class="msg">{_e(r.get("message"))}</td></tr>'
        for r in records
    )
    return (
        f'<details id="history"><summary>{_e(_("Alert history"))}</summary>'
        '<div class="scroll"><table>'
        f"<tr><th>{_e(_('Time'))}</th><th>{_e(_('Rule'))}</th><th>{_e(_('State'))}</th>"
        f"<th>{_e(_('Subject'))}</th><th>{_e(_('What'))}</th></tr>"
        f"{rows}</table></div></details>"
    )


def _alerts(status: Mapping[str, Any], can_change: bool, csrf: str) -> str:
    alerts = open_alerts(status)
    cards = "".join(_alert_card(a, can_change, csrf) for a in alerts)
    crit = sum(1 for a in alerts if a["severity"] == "critical")
    count = f'<span class="count {"bad" if crit else ""}">{_e(number(len(alerts), 0))}</span>'
    body = cards or f'<p class="muted">{_e(_("No open alerts."))}</p>'
    return (f'<section id="alerts"><h2>{_e(_("Alerts"))} {count}</h2>{body}'
            f'{_alert_history(list(status.get("alerts") or []))}</section>')


# -- sensors -----------------------------------------------------------------------
def _group(sensor: Mapping[str, Any]) -> str:
    return GROUPS.get(str(sensor.get("firmware") or ""), "device")


def _flag(sensor: Mapping[str, Any]) -> str:
    """Why a device needs a look ('' when it does not)."""
    health = sensor.get("health") or "ok"
    if health != "ok":
        return str(health)
    age = sensor.get("age_s")
    if not isinstance(age, int | float):
        return "silent"
    if age > STALE_BY_GROUP.get(_group(sensor), STALE_S):
        return "stale"
    battery = (sensor.get("values") or {}).get("battery_v")
    if isinstance(battery, int | float) and battery < LOW_BATTERY_V:
        return "low battery"
    return ""


def _sensor_link(sensor: Mapping[str, Any], text: Any) -> str:
    """``text`` linking to the sensor's 24-hour page (its id quoted for the URL)."""
    sid = sensor.get("sensor_id")
    if not sid:
        return _e(text)
    return f'<a href="/sensor?id={quote(str(sid), safe="")}">{_e(text)}</a>'


def _seen(sensor: Mapping[str, Any]) -> str:
    """"40 s ago", with the reading's wall time for the page's script to keep
    it current: the view itself then stays the same while nothing new arrives
    (so the poll gets 304s; see ``view_etag``)."""
    text = _e(age_text(sensor.get("age_s")))
    ts = sensor.get("seen_ts")
    if isinstance(ts, int | float) and math.isfinite(ts):
        return f'<time class="age" data-at="{ts:.0f}">{text}</time>'
    return text


_AGE = re.compile(r'(<time class="age" data-at="\d+">)[^<]*(</time>)')


def view_etag_source(html: str) -> str:
    """The view without its age texts: what decides whether it changed."""
    return _AGE.sub(r"\1\2", html)


def _values_list(values: Mapping[str, Any], big: str | None = None) -> str:
    items = []
    for name, value in values.items():
        if name in QUIET or name == big:
            continue
        items.append(f"<dt>{_e(label(name))}</dt>"
                     f"<dd>{_e(value_text(name, value))}</dd>")
    return f'<dl>{"".join(items)}</dl>' if items else ""


def _tile(sensor: Mapping[str, Any], big: str, spark: list[float] | None) -> str:
    values = sensor.get("values") or {}
    flag = _flag(sensor)
    sid = _sensor_link(sensor, sensor.get("sensor_id"))
    head = (f'<h3>{sid}{f" <span class=chip>{_e(_w(flag))}</span>" if flag else ""}</h3>')
    main = ""
    if big in values:
        main = (f'<p class="big">{_e(value_text(big, values[big]))}'
                f'<span class="lbl">{_e(label(big))}</span></p>')
    chart = sparkline_svg(spark, label(big)) if spark else ""
    return (f'<div class="tile{" flag" if flag else ""}">{head}{main}{chart}'
            f"{_values_list(values, big)}"
            f'<p class="muted">{_seen(sensor)}</p></div>')


def _tanks_climate(sensors: list[Mapping[str, Any]],
                   history: Mapping[str, list[float]]) -> str:
    tanks = [s for s in sensors if _group(s) == "tank"]
    climate = [s for s in sensors if _group(s) == "climate"]
    out = ""
    if tanks:
        out += (f'<section id="tanks"><h2>{_e(_("Bulk tanks"))}</h2><div class="tiles">'
                + "".join(_tile(s, "milk_temp_c", history.get(f"{s.get('sensor_id')}"
                                                              ":milk_temp_c")) for s in tanks)
                + "</div></section>")
    if climate:
        out += (f'<section id="climate"><h2>{_e(_("Barn climate"))}</h2><div class="tiles">'
                + "".join(_tile(s, "temperature_c", history.get(f"{s.get('sensor_id')}"
                                                                ":temperature_c"))
                          for s in climate)
                + "</div></section>")
    return out


def _sensor_row(s: Mapping[str, Any]) -> str:
    values = s.get("values") or {}
    shown = ", ".join(f"{label(k)} {value_text(k, v)}"
                      for k, v in values.items() if k not in QUIET)
    flag = _flag(s)
    return (f"<tr><td>{_sensor_link(s, s.get('animal_id') or s.get('sensor_id'))}</td>"
            f"<td>{_e(shown or '-')}</td><td>{_seen(s)}</td>"
            f'<td class="{"bad" if flag else "ok"}">{_e(_w(flag or "ok"))}</td></tr>')


def _animals(sensors: list[Mapping[str, Any]], query: str) -> str:
    groups = (("collar", _("Collars")), ("milk", _("Milk meters")))
    parts = []
    q = query.strip().lower()
    for key, title in groups:
        members = [s for s in sensors if _group(s) == key]
        if not members:
            continue
        flagged = [s for s in members if _flag(s)]
        if q:
            shown = [s for s in members
                     if q in str(s.get("sensor_id") or "").lower()
                     or q in str(s.get("animal_id") or "").lower()]
        else:
            shown = flagged
        rows = "".join(_sensor_row(s) for s in shown[:MAX_ANIMAL_ROWS])
        more = len(shown) - MAX_ANIMAL_ROWS
        note = (f'<p class="muted">{_e(_("{n} more: search to narrow.").format(n=number(more, 0)))}'
                "</p>" if more > 0 else "")
        flagged_text = _("{n} need a look").format(n=number(len(flagged), 0))
        summary = (f"{_e(title)}: {_e(number(len(members), 0))}, "
                   + (f'<span class="bad">{_e(flagged_text)}</span>' if flagged
                      else f'<span class="ok">{_e(_("all ok"))}</span>'))
        table = (f"<table><tr><th>{_e(_('Animal'))}</th><th>{_e(_('Last values'))}</th>"
                 f"<th>{_e(_('Seen'))}</th><th>{_e(_('State'))}</th>"
                 f"</tr>{rows}</table>{note}" if rows else
                 f'<p class="muted">{_e(_("No match.") if q else _("Nothing to look at."))}</p>')
        opened = " open" if (flagged or q) else ""
        parts.append(f'<details id="grp-{key}"{opened}><summary>{summary}</summary>'
                     f"{table}</details>")
    if not parts:
        return ""
    return (f'<section id="animals"><h2>{_e(_("Animals"))}</h2>'
            '<form class="search" method="get" action="/" role="search">'
            f'<label for="q">{_e(_("Find a cow or sensor"))}</label>'
            f'<input id="q" name="q" type="search" value="{_e(query) if query else ""}" '
            'autocomplete="off" inputmode="search"></form>' + "".join(parts) + "</section>")


def _devices(sensors: list[Mapping[str, Any]]) -> str:
    devices = [s for s in sensors if _group(s) not in ("collar", "milk")]
    if not devices:
        return ""
    devices.sort(key=lambda s: (not _flag(s), str(s.get("sensor_id"))))
    rows = []
    for s in devices:
        values = s.get("values") or {}
        flag = _flag(s)
        # tanks and climate nodes show their values above: here only when and how well
        shown = "" if _group(s) in ("tank", "climate") else ", ".join(
            f"{label(k)} {value_text(k, v)}" for k, v in values.items() if k not in QUIET)
        rows.append(
            f"<tr><td>{_sensor_link(s, s.get('sensor_id'))}</td><td>{_e(shown or '-')}</td>"
            f"<td>{_seen(s)}</td>"
            f"<td>{_e(value_text('battery_v', values['battery_v']) if 'battery_v' in values else '-')}</td>"
            f"<td>{_e(value_text('rssi_dbm', values['rssi_dbm']) if 'rssi_dbm' in values else '-')}</td>"
            f'<td class="{"bad" if flag else "ok"}">{_e(_w(flag or "ok"))}</td></tr>'
        )
    heads = "".join(f"<th>{_e(h)}</th>" for h in (
        _("Device"), _("Last values"), _("Last seen"), _("Battery"), _("Signal"), _("State")))
    return (f'<section id="devices"><h2>{_e(_("Devices"))}</h2><div class="scroll"><table>'
            f"<tr>{heads}</tr>{''.join(rows)}</table></div></section>")


def _buffer_sync(status: Mapping[str, Any]) -> str:
    sync = status.get("sync") or {}
    broker = status.get("broker") or {}
    storage = status.get("storage_health") or "ok"
    rows = [
        (_("Broker"), _("connected") if broker.get("connected") else _("NOT connected"),
         not broker.get("connected")),
        (_("Storage"), _w(storage), storage != "ok"),
        (_("Disk free"), bytes_text(status.get("disk_free_bytes")), False),
        (_("Sync backlog"), _("{n} records").format(n=_count(status.get("backlog")))
         + _trend(status.get("backlog_trend")), False),
        (_("Sync"), _("{state}, last success {age}").format(
            state=_w(sync.get("state", "-")), age=age_text(sync.get("last_success_age_s"))),
         sync.get("state") in ("backoff", "error")),
        (_("Quarantined"), _count(status.get("quarantined")), False),
        (_("Dead letters"), _count(status.get("dead_letters")),
         bool(status.get("dead_letters"))),
    ]
    if sync.get("last_error"):
        rows.append((_("Last sync error"), str(sync.get("last_error")), True))
    body = "".join(f'<tr><th>{_e(k)}</th><td class="{"bad" if bad else ""}">{_e(v)}</td></tr>'
                   for k, v, bad in rows)
    return (f'<section id="health"><h2>{_e(_("Buffer and sync"))}</h2><table>{body}</table>'
            "</section>")


def _trend(trend: Any) -> str:
    """", +120 in 10 min" (or "steady"): is the backlog draining or growing?"""
    if not isinstance(trend, Mapping) or not isinstance(trend.get("delta"), int | float):
        return ""
    delta = float(trend["delta"])
    minutes = number(float(trend.get("minutes") or 0), 0)
    if delta == 0:  # no minutes here: an unchanged view must stay byte-identical (304s)
        return ", " + _("steady")
    sign = "+" if delta > 0 else "\u2212"
    return ", " + _("{change} in {m} min").format(change=sign + number(abs(delta), 0),
                                                  m=minutes)


def _count(value: Any) -> str:
    return number(value, 0) if isinstance(value, int | float) else "0"


def _problems(reasons: list[str]) -> str:
    if not reasons:
        return f'<p id="problems" class="okbar">{_e(_("Gateway healthy"))}</p>'
    items = "".join(f"<li>{_e(r)}</li>" for r in reasons)
    return (f'<section id="problems" class="problems"><h2>{_e(_("Problems"))}</h2>'
            f"<ul>{items}</ul></section>")


def _profile(status: Mapping[str, Any], can_change: bool, csrf: str) -> str:
    """The active runtime profile, and (technicians) buttons to switch it."""
    prof = status.get("profile")
    if not isinstance(prof, Mapping) or not prof.get("active"):
        return ""
    active = str(prof["active"])
    by = str(prof.get("by") or "")
    nxt = prof.get("next")
    after = ""
    if isinstance(nxt, Mapping) and nxt.get("profile"):
        after = f' <span class="muted">{_e(_("next"))}: {_e(nxt["profile"])} {_e(nxt.get("at"))}</span>'
    buttons = ""
    if can_change:
        others = [p for p in prof.get("available") or []
                  if isinstance(p, Mapping) and p.get("name") != active]
        buttons = (
            f'<form class="profile" method="post" action="/api/profile">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            + "".join(f'<button name="profile" value="{_e(p["name"])}" '
                      f'title="{_e(p.get("description"))}">{_e(p["name"])}</button>'
                      for p in others)
            + "</form>"
        ) if others else ""
    return (f'<section id="profile"><p>{_e(_("Profile"))}: <b>{_e(active)}</b> '
            f'<span class="muted">({_e(by)})</span>{after}</p>{buttons}</section>')


def render_view(status: Mapping[str, Any], reasons: list[str], *, can_change: bool = False,
                query: str = "", extra: str = "", csrf: str = "") -> str:
    """The inside of ``<main>`` for one status dict (``StatusSnapshot.to_dict()``)."""
    sensors = [s for s in status.get("sensors") or [] if isinstance(s, Mapping)]
    history = status.get("history") or {}
    return (
        _problems(reasons)
        + _profile(status, can_change, csrf)
        + _alerts(status, can_change, csrf)
        + _tanks_climate(sensors, history if isinstance(history, Mapping) else {})
        + _animals(sensors, query)
        + _devices(sensors)
        + extra
        + _buffer_sync(status)
        + f'<p class="muted foot">dairy-edge {_e(status.get("version"))}</p>'
    )


# Messages used inside f-strings, listed for Babel's extractor (it cannot see them there).
_MARKED = (
    N_("Confirm"),
    N_("Reject"),
    N_("Snooze 1 h"),
    N_("Alert history"),
    N_("Time"),
    N_("Rule"),
    N_("Subject"),
    N_("What"),
    N_("No open alerts."),
    N_("Alerts"),
    N_("Bulk tanks"),
    N_("Barn climate"),
    N_("{n} more: search to narrow."),
    N_("all ok"),
    N_("Animal"),
    N_("Seen"),
    N_("No match."),
    N_("Nothing to look at."),
    N_("Animals"),
    N_("Find a cow or sensor"),
    N_("Devices"),
    N_("Buffer and sync"),
    N_("Gateway healthy"),
    N_("Problems"),
    N_("Profile"),
    N_("next"),
)
