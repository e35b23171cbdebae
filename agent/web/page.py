"""The status page as plain HTML. Every value is escaped: sensor ids, topics
and error texts come from MQTT and must be treated as hostile markup."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from html import escape
from typing import Any

REFRESH_S = 5

STYLE = """\
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:48rem;padding:.75rem;color:#222}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .4rem;text-align:left;
border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}
th{white-space:nowrap}td:first-child{min-width:6.5rem}
.bad{color:#a40000;font-weight:600}.ok{color:#0a6b0a;font-weight:600}
.muted{color:#666;font-size:.85rem}
"""


def _e(value: Any) -> str:
    return escape("-" if value is None else str(value), quote=True)


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _row(label: str, value: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr><th>{escape(label)}</th><td{attr}>{value}</td></tr>"


def _alerts(alerts: list[Mapping[str, Any]]) -> str:
    """Newest first; every field escaped (ids and messages may carry wire text)."""
    if not alerts:
        return '<p class="muted">No alerts.</p>'
    rows = [
        f'<tr><td class="{"bad" if a.get("severity") == "critical" else ""}">'
        f"{_e(a.get('severity'))}</td><td>{_e(a.get('rule'))}</td>"
        f"<td>{_e(a.get('state'))}</td><td>{_e(a.get('message'))}</td></tr>"
        for a in alerts
    ]
    return (
        "<table><tr><th>Severity</th><th>Rule</th><th>State</th><th>What</th></tr>"
        + "".join(rows)
        + "</table>"
    )


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
            "<table><tr><th>Camera</th><th>Role</th><th>State</th><th>fps</th><th>Error</th>"
            "</tr>" + "".join(rows) + "</table>"
        )
    if model_rows:
        out += (
            "<table><tr><th>Model</th><th>Version</th><th>State</th><th>Error</th></tr>"
            + "".join(model_rows)
            + "</table>"
        )
    return out


def _identifications(items: list[Mapping[str, Any]]) -> str:
    """Latest ear-tag visits; numbers and ids are escaped like any wire text."""
    if not items:
        return '<p class="muted">No cows identified yet.</p>'
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
        "<table><tr><th>Tag</th><th>Animal</th><th>Status</th><th>Conf.</th><th>Camera</th>"
        "</tr>" + "".join(rows) + "</table>"
    )


def _when(item: Mapping[str, Any]) -> str:
    """``age_s`` as an age when the runtime gives one, else ``wall_ts`` as the
    gateway's local time (its clock may be off before it is synced)."""
    age = item.get("age_s")
    if isinstance(age, int | float):
        return f"{_age(age)} ago"
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
        "<table><tr><th>Cow</th><th>BCS</th><th>When</th><th>Camera</th></tr>"
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
        "<table><tr><th>Cow</th><th>Quarter</th><th>Result</th><th>Conf.</th><th>When</th>"
        "</tr>" + "".join(rows) + "</table>"
    )


def render_status(status: Mapping[str, Any], reasons: list[str]) -> str:
    """The whole page for one status dict (``StatusSnapshot.to_dict()`` shape)."""
    broker = status.get("broker") or {}
    sync = status.get("sync") or {}
    healthy = not reasons
    rows = [
        _row(
            "Health", "healthy" if healthy else _e("; ".join(reasons)), "ok" if healthy else "bad"
        ),
        _row("Version", _e(status.get("version"))),
        _row("Uptime", _e(_age(status.get("uptime_s")))),
        _row(
            "Broker",
            _e(
                f"{'connected' if broker.get('connected') else 'NOT connected'}"
                f" (MQTT {broker.get('protocol') or '?'}, session gaps {broker.get('session_gaps', 0)})"
            ),
            "ok" if broker.get("connected") else "bad",
        ),
        _row(
            "Storage",
            _e(status.get("storage_health")),
            "ok" if status.get("storage_health") == "ok" else "bad",
        ),
        _row("Disk free", _e(_bytes(status.get("disk_free_bytes")))),
        _row("Sync backlog", _e(status.get("backlog"))),
        _row("Quarantined", _e(status.get("quarantined"))),
        _row("Dead letters", _e(status.get("dead_letters"))),
        _row(
            "Sync",
            _e(
                f"{sync.get('state', '-')}, last success {_age(sync.get('last_success_age_s'))} ago"
            ),
        ),
    ]
    if sync.get("last_error"):
        rows.append(_row("Sync error", _e(sync.get("last_error")), "bad"))

    sensor_rows = []
    for sensor in status.get("sensors") or []:
        values = sensor.get("values") or {}
        shown = ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted(values.items()))
        health = sensor.get("health", "ok")
        sensor_rows.append(
            f"<tr><td>{_e(sensor.get('sensor_id'))}</td><td>{shown or '-'}</td>"
            f"<td>{_e(_age(sensor.get('age_s')))}</td>"
            f'<td class="{"ok" if health == "ok" else "bad"}">{_e(health)}</td></tr>'
        )
    sensors = (
        "<table><tr><th>Sensor</th><th>Last values</th><th>Age</th><th>Health</th></tr>"
        + "".join(sensor_rows)
        + "</table>"
        if sensor_rows
        else '<p class="muted">No readings yet.</p>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<link rel="stylesheet" href="/style.css">'
        "<title>dairy-edge status</title></head><body>"
        "<h1>dairy-edge</h1>"
        f"<table>{''.join(rows)}</table>"
        f"<h2>Alerts</h2>{_alerts(status.get('alerts') or [])}"
        + (
            f"<h2>Cows identified</h2>{_identifications(status.get('identifications') or [])}"
            f"<h2>Cameras</h2>{_cameras(status.get('cameras') or [], status.get('models') or {})}"
            if status.get("cameras")
            else ""
        )
        + (
            f"<h2>Body condition</h2>{_body_conditions(status['body_conditions'])}"
            if status.get("body_conditions")
            else ""
        )
        + (
            f"<h2>Milk checks</h2>{_milk_checks(status['milk_checks'])}"
            if status.get("milk_checks")
            else ""
        )
        + f"<h2>Sensors</h2>{sensors}"
        f'<p class="muted">Refreshes every {REFRESH_S} s. '
        '<a href="/api/status">JSON</a> · <a href="/metrics">metrics</a></p>'
        "</body></html>"
    )
