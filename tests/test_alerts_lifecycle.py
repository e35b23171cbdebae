"""The alert lifecycle on its own: min duration, debounce, hysteresis,
snooze, escalation, de-duplication, feedback precision, state."""

from __future__ import annotations

import json

import pytest

from agent.config.rules import AlertPolicy
from agent.detect.alerts import AlertManager
from agent.detect.rules.base import Finding, Signal
from agent.records import Stamp

POLICY = AlertPolicy(severity="critical", min_duration_s=300, min_count=3, debounce_s=120,
                     clear_after_s=600, clear_count=2, escalate_after_s=1800,
                     snooze_default_s=3600)


def manager(policy: AlertPolicy = POLICY) -> AlertManager:
    return AlertManager(lambda rule: policy, lambda t: Stamp(1e9 + t, int(t * 1e9), "b", True),
                        ["status_page", "mqtt", "relay"])


def f(status: str, t: float, subject: str = "tank:1", severity: str | None = None) -> Finding:
    return Finding(rule="cooling", subject=subject, status=status, at=t, severity=severity,  # type: ignore[arg-type]
                   summary="Tank warm", signals=[Signal("milk temperature", 9.0, 3.8, 8.0, " °C")],
                   sensor_id="1")


def feed(m: AlertManager, statuses: list[tuple[str, float]]) -> list[str]:
    out = []
    for status, t in statuses:
        out += [a.state for a in m.process(f(status, t))]
    return out


def test_min_duration_and_count_before_raising() -> None:
    m = manager()
    assert feed(m, [("raise", 0), ("raise", 60), ("raise", 120)]) == []
    alerts = m.process(f("raise", 300))
    assert [a.state for a in alerts] == ["raised"]
    a = alerts[0]
    assert a.severity == "critical" and a.rule == "cooling"
    assert "milk temperature 9.00 °C (baseline 3.80 °C) vs limit 8.00 °C" in a.message
    assert a.details["signals"][0]["baseline"] == 3.8


def test_debounce_ignores_short_blips_but_not_long_ones() -> None:
    m = manager()
    # A 60 s blip inside the 120 s debounce window does not reset the pending timer.
    assert feed(m, [("raise", 0), ("raise", 60), ("clear", 120), ("raise", 180),
                    ("raise", 300)]) == ["raised"]
    m = manager()
    # A clear lasting past the debounce window starts the count again.
    assert feed(m, [("raise", 0), ("raise", 60), ("clear", 100), ("clear", 240),
                    ("raise", 300), ("raise", 360)]) == []


def test_hysteresis_band_keeps_it_open_and_clear_needs_time() -> None:
    m = manager()
    feed(m, [("raise", t) for t in (0, 100, 200, 300)])
    assert feed(m, [("hold", 400 + 60 * i) for i in range(30)]) == []
    # A single clear reading is not enough; 600 s and 2 readings are.
    assert feed(m, [("clear", 3000), ("raise", 3100), ("clear", 3200), ("clear", 3500)]) == []
    assert feed(m, [("clear", 3800)]) == ["cleared"]


def test_one_open_alert_per_subject_and_severity_updates() -> None:
    m = manager(POLICY.model_copy(update={"severity": "warning"}))
    states = feed(m, [("raise", t) for t in range(0, 600, 60)])
    assert states == ["raised"]
    up = m.process(f("raise", 700, severity="critical"))
    assert [(a.state, a.severity) for a in up] == [("updated", "critical")]
    assert up[0].record_id != up[0].details["alert_id"]
    other = feed(m, [("raise", t) for t in (0, 100, 200, 300)])  # same subject: nothing new
    assert other == []


def test_snooze_silences_and_returns_if_condition_holds() -> None:
    m = manager()
    raised = []
    for t in (0, 100, 200, 300):
        raised += m.process(f("raise", t))
    alert_id = raised[0].record_id
    assert m.snooze(alert_id, 400, 1000)
    assert m.process(f("raise", 500, severity="critical")) == []
    assert m.tick(1300) == []
    back = m.tick(1500)
    assert [a.state for a in back] == ["updated"] and "snooze ended" in back[0].details["note"]
    assert m.snooze("nope", 1500) is False


def test_escalation_of_unacknowledged_critical_alerts() -> None:
    m = manager()
    raised = []
    for t in (0, 100, 200, 300):
        raised += m.process(f("raise", t))
    assert raised[0].details["channel"] == "status_page"
    assert m.tick(1000) == []
    first = m.tick(2200)
    assert [a.details["channel"] for a in first] == ["mqtt"]
    second = m.tick(4100)
    assert [a.details["channel"] for a in second] == ["relay"]
    assert m.tick(9000) == []  # no channel beyond the last
    m2 = manager()
    for t in (0, 100, 200, 300):
        got = m2.process(f("raise", t))
    m2.acknowledge(got[0].record_id)
    assert m2.tick(5000) == []


def test_feedback_precision_per_rule_and_state_round_trip() -> None:
    m = manager(POLICY.model_copy(update={"min_count": 1, "min_duration_s": 0,
                                          "clear_after_s": 0, "clear_count": 1}))
    ids = []
    for i in range(4):
        ids.append(m.process(f("raise", i * 1000.0, subject=f"tank:{i}"))[0].record_id)
    cleared = m.process(f("clear", 5000.0, subject="tank:0"))
    assert m.precision()["cooling"] is None
    m.feedback(ids[0], "confirmed")
    m.feedback(cleared[0].record_id, "confirmed")  # any record of the episode works
    m.feedback(ids[1], "rejected")
    m.feedback(ids[2], "confirm")
    assert m.precision()["cooling"] == pytest.approx(2 / 3)
    m.feedback(ids[2], "rejected")  # a changed verdict replaces the old one
    assert m.precision()["cooling"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        m.feedback(ids[3], "maybe")
    with pytest.raises(KeyError):
        m.feedback("unknown", "confirmed")
    m2 = manager()
    m2.from_state(json.loads(json.dumps(m.to_state())))
    assert m2.precision()["cooling"] == pytest.approx(1 / 3)
    assert {k for k, tr in m2.tracks.items() if tr.open} == {("cooling", "tank:1", ""),
                                                              ("cooling", "tank:2", ""),
                                                              ("cooling", "tank:3", "")}


def test_alert_ids_are_stable_for_the_same_episode() -> None:
    a = [x.record_id for t in (0, 100, 200, 300) for x in manager().process(f("raise", t))]
    m1, m2 = manager(), manager()
    r1 = [x.record_id for t in (0, 100, 200, 300) for x in m1.process(f("raise", t))]
    r2 = [x.record_id for t in (0, 100, 200, 300) for x in m2.process(f("raise", t))]
    assert r1 == r2 and len(r1) == 1
    assert a == []  # each fresh manager saw only one finding
