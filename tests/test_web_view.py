"""What the page shows and in which order: problems and open alerts first,
then tanks and climate, animals (grouped, collapsed when healthy, searchable),
devices, buffer and sync; readable values; sparklines from the history."""

from __future__ import annotations

from agent.web.display import age_text, value_text
from agent.web.history import BUCKET_S, History
from agent.web.status import SensorStatus, StatusSnapshot
from agent.web.view import open_alerts, render_view


def _status(**kw: object) -> dict[str, object]:
    sensors = [
        SensorStatus("tank1", {"milk_temp_c": 3.55394025, "agitator": 1.0, "wash": 0.0},
                     40.0, firmware="bulk-tank"),
        SensorStatus("clim1", {"temperature_c": 21.04, "humidity_pct": 71.3, "battery_v": 3.0},
                     12.0, firmware="barn-climate"),
        *[SensorStatus(f"col{i}", {"activity": 310.0, "rumination_min": 8.0}, 5.0,
                       firmware="neck-collar", animal_id=f"NL-{i}") for i in range(50)],
        SensorStatus("col-x", {"activity": 1.0, "battery_v": 2.4}, 7.0,
                     firmware="neck-collar", animal_id="NL-999"),
        SensorStatus("meter1", {"yield_kg": 12.3}, 16 * 3600.0, firmware="milk-meter",
                     animal_id="NL-7"),
        SensorStatus("meter2", {"yield_kg": 11.0}, 5 * 3600.0, firmware="milk-meter",
                     animal_id="NL-8"),
        SensorStatus("water1", {"flow_lpm": 4.2, "total_l": 1234567.0}, None,
                     firmware="water-flow"),
    ]
    snap = StatusSnapshot(version="t", uptime_s=60.0, sensors=sensors, **kw)  # type: ignore[arg-type]
    return snap.to_dict()


ALERT = {"record_id": "a1", "rule": "heat_stress", "severity": "critical", "state": "raised",
         "message": "THI 79 for 2 h", "animal_id": None, "sensor_id": "clim1",
         "wall_ts": 1.8e9,
         "details": {"alert_id": "a1", "subject": "clim1",
                     "signals": [{"name": "thi", "value": 79.2, "limit": 72.0, "unit": ""}]}}


def test_readable_values() -> None:
    assert value_text("milk_temp_c", 3.55394025) == "3.6\u00a0°C"
    assert value_text("agitator", 1.0) == "on" and value_text("wash", 0.0) == "off"
    assert value_text("total_l", 1234567.0) == "1,234,567\u00a0l"
    assert value_text("new_field_kg", 2.0) == "2.00\u00a0kg"
    assert age_text(40) == "40\u00a0s ago" and age_text(720) == "12\u00a0min ago"
    assert age_text(None) == "-"


def test_order_grouping_and_flags() -> None:
    html = render_view(_status(alerts=[ALERT]), ["mqtt: not connected"], can_change=True)
    order = [html.index(s) for s in ('id="problems"', 'id="alerts"', 'id="tanks"',
                                     'id="climate"', 'id="animals"', 'id="devices"',
                                     'id="health"')]
    assert order == sorted(order)
    assert "milk_temp_c" not in html and "Milk temperature" in html and "3.6\u00a0°C" in html
    assert "Agitator</dt><dd>on" in html
    # 51 collars, one flagged (low battery): the group is open and shows only that one
    assert "Collars: 51, <span class=\"bad\">1 need a look</span>" in html
    assert "NL-999" in html and "NL-3<" not in html
    assert "low battery" in html
    # a milk meter not heard since yesterday's milking is stale (5 h is not);
    # the water meter never heard: silent
    assert "Milk meters: 2" in html and "stale" in html and "silent" in html
    assert "NL-7" in html and "NL-8" not in html
    assert 'class="act"' in html and "Snooze 1 h" in html
    assert "Thi 79.2 (limit 72)" in html


def test_search_finds_healthy_animals() -> None:
    html = render_view(_status(), [], query="NL-3")
    assert "NL-3<" in html and "NL-30" in html and "NL-999" not in html


def test_live_state_of_an_alert_beats_the_stored_record() -> None:
    status = _status(alerts=[ALERT], open_alerts=[{
        "alert_id": "a1", "rule": "heat_stress", "subject": "clim1", "severity": "critical",
        "message": "THI 79 for 2 h", "acknowledged": True, "snoozed": False,
        "verdict": "confirmed"}])
    [alert] = open_alerts(status)
    assert alert["verdict"] == "confirmed" and alert["raised_ts"] == 1.8e9
    html = render_view(status, [])
    assert '<span class="chip ok">confirmed</span>' in html and "raised" not in html.split(
        'id="history"')[0]
    cleared = dict(ALERT, state="cleared", record_id="a1c")
    assert open_alerts(_status(alerts=[cleared, ALERT])) == []


def test_history_buckets_and_sparklines() -> None:
    hist = History()
    t0 = 1.8e9
    for i in range(200):  # 50 h of readings every 15 min
        hist.note("tank1", "bulk-tank", {"milk_temp_c": 3.0 + i % 4}, t0 + i * BUCKET_S)
    hist.note("col1", "neck-collar", {"activity": 3.0}, t0)
    snap = hist.snapshot(t0 + 199 * BUCKET_S)
    assert list(snap) == ["tank1:milk_temp_c"]
    assert len(snap["tank1:milk_temp_c"]) == 96
    html = render_view(_status(history=snap), [])
    tank = html[html.index('id="tanks"'):html.index('id="climate"')]
    assert "<svg" in tank and "Milk temperature: 3 to 6 in 24 h" in tank
    assert len(tank.encode()) < 3000


def test_ages_alone_do_not_change_the_view() -> None:
    from agent.web.view import view_etag_source

    status = _status()
    for s in status["sensors"]:  # type: ignore[attr-defined]
        s["seen_ts"] = 1.8e9
    first = render_view(status, [])
    for s in status["sensors"]:  # type: ignore[attr-defined]
        if s["age_s"] is not None and s["age_s"] < 800:  # no sensor turns stale
            s["age_s"] += 37
    later = render_view(status, [])
    assert first != later
    assert view_etag_source(first) == view_etag_source(later)
    status["sensors"][0]["values"]["milk_temp_c"] = 4.4  # type: ignore[index]
    assert view_etag_source(render_view(status, [])) != view_etag_source(first)


def test_backlog_trend() -> None:
    from agent.web.history import Trend

    trend = Trend(window_s=600)
    assert trend.note(0.0, 100) is None  # under a minute of data
    assert trend.note(30.0, 110) is None
    assert trend.note(300.0, 220) == {"delta": 120.0, "minutes": 5.0}
    assert trend.note(900.0, 40) == {"delta": -180.0, "minutes": 10.0}  # oldest left the window
    status = {**_status(backlog=40), "backlog_trend": {"delta": -180.0, "minutes": 10.0}}
    assert "40 records, \u2212180 in 10 min" in render_view(status, [])
    status = {**_status(backlog=0), "backlog_trend": {"delta": 0.0, "minutes": 10.0}}
    assert "0 records, steady<" in render_view(status, [])
    later = {**status, "backlog_trend": {"delta": 0.0, "minutes": 7.5}}
    assert render_view(later, []) == render_view(status, []), "a steady backlog: same view"
