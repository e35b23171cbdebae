"""Rule-by-rule behaviour on hand-made readings."""

from __future__ import annotations

import json

import pytest

from agent.config.rules import RulesConfig
from agent.detect.rules import thi
from tests.helpers_rules import WALL0, engine, reading


def test_thi_matches_the_nrc_formula() -> None:
    assert abs(thi(25.0, 50.0) - 71.775) < 1e-9  # 77 - 0.275 * 19
    assert thi(30, 80) > thi(30, 40) > thi(20, 40)


def test_heat_stress_needs_minimum_duration_and_clears_with_hysteresis() -> None:
    eng, _ = engine()
    raised = []
    hot, mild, cool = (30.0, 60.0), (24.0, 55.0), (15.0, 60.0)
    assert 70 <= thi(*mild) < 72 and thi(*hot) > 78 and thi(*cool) < 70
    t = 0.0
    for temp, rh in [hot] * 18:  # 85 min: not yet (heat stress is two hours above 72)
        raised += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": temp,
                                                                   "humidity_pct": rh}))
        t += 300
    assert raised == []
    for _ in range(9):
        raised += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": 30.0,
                                                                   "humidity_pct": 60.0}))
        t += 300
    assert [a.state for a in raised] == ["raised"]
    assert raised[0].severity == "critical" and "THI" in raised[0].message
    out = []
    for _ in range(20):  # in the band between clear and raise: stays open
        out += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": 24.0,
                                                                "humidity_pct": 55.0}))
        t += 300
    assert out == []
    for _ in range(10):
        out += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": 15.0,
                                                                "humidity_pct": 60.0}))
        t += 300
    assert [a.state for a in out] == ["cleared"]
    assert out[0].details["alert_id"] == raised[0].record_id


def _climate_day(eng, t0, spells):
    """A day of 5-min climate readings: (start h, end h, (temp, rh)) spells over a mild
    night in the 70-72 band, which never gives relief below 70."""
    out = []
    for i in range(288):
        h = i / 12
        temp, rh = 24.0, 55.0  # THI ~71: the band between clear and raise
        for a, b, value in spells:
            if a <= h < b:
                temp, rh = value
        out += eng.on_reading(reading("c1", "barn-climate", t0 + i * 300,
                                      {"temperature_c": temp, "humidity_pct": rh}))
    return [a for a in out if a.rule == "heat_stress"]


def test_heat_stress_is_one_alert_per_afternoon_even_without_night_relief() -> None:
    eng, _ = engine()
    hot = (30.0, 60.0)
    day1 = _climate_day(eng, 0.0, [(12, 17, hot)])
    day2 = _climate_day(eng, 86400.0, [(12, 17, hot)])
    assert [a.state for a in day1] == ["raised", "cleared"]
    assert [a.state for a in day2] == ["raised", "cleared"]
    assert day1[0].details["alert_id"] != day2[0].details["alert_id"]
    # Raised about two hours into the afternoon's spell above THI 72.
    assert 12 * 3600 + 7200 <= day1[0].stamp.mono_ns / 1e9 <= 12 * 3600 + 7200 + 1800


@pytest.mark.parametrize("every", [11, 4, 3])
def test_a_night_that_hovers_at_72_with_a_noisy_sensor_still_ends_the_day(every: int) -> None:
    """A humid night just under THI 72 read by a noisy sensor: every ``every``
    minutes one reading pokes above 72 for a minute (up to a third of them).
    Those blips are not the heat coming back: the night gives its relief, the
    afternoon's alert clears, and the next hot afternoon is a new alert."""
    eng, _ = engine()
    hot, night, blip = (30.0, 60.0), (22.2, 96.0), (22.6, 96.0)
    assert thi(night[0] + 0.06, night[1]) < 72 <= thi(*blip)
    states, t = [], 0.0
    for day in range(2):
        for minute in range(1440):
            h = minute / 60
            temp, rh = (hot if 12 <= h < 17 else blip if minute % every == 0 else night)
            wobble = 0.02 * (minute % 4)  # a live sensor, not a stuck one
            states += [(day, a.state) for a in eng.on_reading(reading(
                "c1", "barn-climate", t, {"temperature_c": temp + wobble, "humidity_pct": rh}))
                       if a.rule == "heat_stress"]
            t += 60
    assert [s for d, s in states if d == 0] == ["raised", "cleared"], states
    assert [s for d, s in states if d == 1][:1] == ["raised"], states


def test_marginal_half_hour_runs_above_72_raise_nothing() -> None:
    eng, _ = engine()
    warm = (26.0, 60.0)
    assert 72 <= thi(*warm) < 76
    out = _climate_day(eng, 0.0, [(12, 12.5, warm), (14, 14.4, warm), (16, 16.5, warm)])
    assert out == []


def _milking(eng, t, cow, ec, y):
    values = {"conductivity_lf": ec[0], "conductivity_rf": ec[1], "conductivity_lr": ec[2], "conductivity_rr": ec[3],
              "yield_kg": y, "duration_s": 400}
    return eng.on_reading(reading("mm-1", "milk-meter", t, values, animal=cow))


def test_mastitis_needs_two_signals_and_names_them() -> None:
    eng, _ = engine()
    t = 0.0
    for i in range(14):
        assert _milking(eng, t, "cow-1", (5.0 + 0.02 * (i % 3), 5.1, 5.0, 4.9), 15.0) == []
        t += 12 * 3600
    out = _milking(eng, t, "cow-1", (7.5, 5.1, 5.0, 4.9), 15.0)  # EC only, once: no alert
    assert out == []
    out = _milking(eng, t + 43200, "cow-1", (7.6, 5.1, 5.0, 4.9), 10.0)  # + yield drop
    assert [a.state for a in out] == ["raised"]
    assert out[0].severity == "critical" and out[0].animal_id == "cow-1"
    assert "EC LF" in out[0].message and "yield" in out[0].message
    names = [s["name"] for s in out[0].details["signals"]]
    assert "EC LF" in names and "yield" in names


def test_mastitis_ignores_a_whole_udder_rise() -> None:
    eng, _ = engine()
    for i in range(20):
        ec = 5.0 if i < 14 else 6.5  # all quarters together: not one quarter
        assert _milking(eng, i * 43200.0, "cow-2", (ec, ec, ec, ec), 15.0) == []


def _collar(eng, t, cow, act, rum=20.0):
    return eng.on_reading(reading(f"col-{cow}", "neck-collar", t,
                                  {"activity": act, "rumination_min": rum}, animal=cow))


def test_estrus_against_own_baseline_and_rumination_drop() -> None:
    eng, _ = engine()
    out = []
    t = 0.0
    for _ in range(10 * 24):
        out += _collar(eng, t, "cow-3", 60 + (t // 3600 % 3))
        t += 3600
    assert out == []
    for _ in range(8):  # 3.5x her own level (counts that move: a collar that sends
        # the same counts for 2 h is taken for stuck and feeds no rule)
        out += _collar(eng, t, "cow-3", 210 + (t // 3600 % 3))
        t += 3600
    est = [a for a in out if a.rule == "estrus"]
    assert [a.state for a in est] == ["raised"] and "baseline" in est[0].message
    out = []
    for _ in range(48):  # rumination halves
        out += _collar(eng, t, "cow-3", 60 + (t // 3600 % 3), rum=10.0)
        t += 3600
    rum = [a for a in out if a.rule == "rumination" and a.state == "raised"]
    assert len(rum) == 1 and "rumination" in rum[0].message


def test_rumination_drop_after_noted_calving_is_not_alerted() -> None:
    eng, _ = engine()
    t = 0.0
    for _ in range(10 * 24):
        _collar(eng, t, "cow-4", 60 + (t // 3600 % 3))
        t += 3600
    eng.note_calving("cow-4", now_mono=t)
    out = []
    for _ in range(48):
        out += _collar(eng, t, "cow-4", 60 + (t // 3600 % 3), rum=6.0)
        t += 3600
    assert not [a for a in out if a.rule == "rumination"]


def _tank(eng, t, temp, agitator=1.0):
    return eng.on_reading(reading("tank-1", "bulk-tank", t, {"milk_temp_c": temp,
                                                             "agitator": agitator}))


def test_cooling_blend_failure_alerts_fast_and_wash_is_suppressed() -> None:
    eng, _ = engine()
    t, out = 0.0, []
    for i in range(120):  # storage, thermostat band
        out += _tank(eng, t, 3.5 + 0.5 * ((i // 10) % 2))
        t += 60
    temp = 3.5
    first = None
    for _ in range(40):  # warm milk arrives, nothing cools it: +0.3 °C/min
        temp += 0.3
        new = _tank(eng, t, temp)
        if new and first is None:
            first = t
        out += new
        t += 60
    raised = [a for a in out if a.state == "raised"]
    assert len(raised) == 1 and raised[0].rule == "cooling"
    assert first is not None and first - 7200 <= 15 * 60
    assert "not cooling" in raised[0].message
    # The tank is emptied and washed with hot water: clears, no new alert.
    out = []
    for _ in range(30):
        out += _tank(eng, t, 60.0)
        t += 60
    assert [a.state for a in out] == ["cleared"]


def test_cooling_time_limit_per_profile() -> None:
    cfg = RulesConfig.model_validate({"cooling": {"profile": "coop"}})
    eng, _ = engine(cfg)
    t, out = 0.0, []
    for _ in range(60):
        out += _tank(eng, t, 18.0, 0.0)  # empty, at room temperature
        t += 60
    temp, i = 31.0, 0
    while t < 60 * 60 + 4 * 3600:  # first milking cools, but stalls at 6 °C (> 4 °C)
        temp = max(6.0, temp - 0.5)
        i += 1
        out += _tank(eng, t, temp + 0.1 * (i % 2))
        t += 60
    raised = [a for a in out if a.state == "raised"]
    assert len(raised) == 1
    assert "not cooled" in raised[0].message
    assert 3 * 3600 <= raised[0].stamp.mono_ns / 1e9 - 3600 <= 3 * 3600 + 15 * 60


def test_sensor_checks_and_suppression() -> None:
    eng, _clock = engine()
    out = []
    t = 0.0
    for i in range(30):
        out += eng.on_reading(reading("c9", "barn-climate", t, {"temperature_c": 15 + (i % 3) * 0.1,
                                                                "humidity_pct": 60}))
        t += 300
    for _ in range(45):  # flat-lined at a value that would mean heat stress
        out += eng.on_reading(reading("c9", "barn-climate", t, {"temperature_c": 33.0,
                                                                "humidity_pct": 80}))
        t += 300
    rules = {a.rule for a in out if a.state == "raised"}
    assert "sensor.stuck" in rules
    # A single spike is withheld from the other rules and raises one sensor.spike alert.
    out = eng.on_reading(reading("c8", "barn-climate", 0, {"temperature_c": 15, "humidity_pct": 60}))
    out += eng.on_reading(reading("c8", "barn-climate", 300, {"temperature_c": 15.1,
                                                              "humidity_pct": 60}))
    out += eng.on_reading(reading("c8", "barn-climate", 600, {"temperature_c": 45,
                                                              "humidity_pct": 60}))
    out += eng.on_reading(reading("c8", "barn-climate", 900, {"temperature_c": 15.2,
                                                              "humidity_pct": 60}))
    assert [(a.rule, a.state, a.sensor_id) for a in out] == [("sensor.spike", "raised", "c8")]
    # Silence longer than its own rhythm allows, found by tick while others still report
    # (when nobody reports, the gateway is deaf, not the sensor).
    for dt in (600, 1200, 1800):
        eng.on_reading(reading("c8", "barn-climate", t + dt, {"temperature_c": 15.1,
                                                              "humidity_pct": 60}))
    assert ("sensor.dropout", "c9") not in {(a.rule, a.sensor_id) for a in eng.tick(t + 100)}
    silent = [a for dt in (2000, 2200) for a in eng.tick(t + dt) if a.state == "raised"]
    assert {(a.rule, a.sensor_id) for a in silent} >= {("sensor.dropout", "c9")}
    back = eng.on_reading(reading("c9", "barn-climate", t + 2300, {"temperature_c": 15.0,
                                                                   "humidity_pct": 60}))
    assert ("sensor.dropout", "cleared") in {(a.rule, a.state) for a in back}


def test_calibration_overdue_via_callable() -> None:
    from agent.detect.rules import RuleEngine
    from tests.helpers_rules import FakeClock

    eng = RuleEngine(RulesConfig(), FakeClock(), calibration=lambda sid: 12.0 if sid == "t" else -3)
    eng.on_reading(reading("t", "bulk-tank", 0, {"milk_temp_c": 4.0}))
    eng.on_reading(reading("u", "bulk-tank", 0, {"milk_temp_c": 4.0}))
    out = eng.tick(10)
    assert [(a.rule, a.sensor_id, a.severity) for a in out] == [("sensor.calibration", "t", "info")]


def test_state_round_trip_is_json_and_survives_a_reboot() -> None:
    eng, _clock = engine()
    for i in range(14):
        _milking(eng, i * 43200.0, "cow-5", (5.0, 5.1, 5.0, 4.9), 15.0)
    t = 14 * 43200.0
    # One abnormal milking raises nothing (an incomplete milking, a dirty
    # sensor); the same quarter again at the next milking does.
    assert _milking(eng, t, "cow-5", (8.0, 5.1, 5.0, 4.9), 9.0) == []
    t += 43200.0
    first = _milking(eng, t, "cow-5", (8.0, 5.1, 5.0, 4.9), 9.0)
    assert [a.state for a in first] == ["raised"]
    state = json.loads(json.dumps(eng.to_state()))
    eng2, _ = engine()
    eng2.from_state(state)
    # After a reboot the monotonic clock restarts near zero; the episode goes on.
    out = []
    for k in range(1, 4):
        out += eng2.on_reading(reading("mm-1", "milk-meter", 50.0 + k * 43200,
                                       {"conductivity_lf": 5.0, "conductivity_rf": 5.1, "conductivity_lr": 5.0,
                                        "conductivity_rr": 4.9, "yield_kg": 15.0},
                                       animal="cow-5", boot="boot-b"))
    assert [a.state for a in out] == ["cleared"]
    assert out[0].details["alert_id"] == first[0].record_id
    eng2.confirm(first[0].record_id)
    assert eng2.precision()["mastitis"] == 1.0


def _stored(eng, t, temp, agitator, level):
    return eng.on_reading(reading("tank-2", "bulk-tank", t, {
        "milk_temp_c": temp, "agitator": agitator, "wash": 0.0, "level_l": level}))


def test_cooler_running_without_cooling_alerts_within_half_an_hour() -> None:
    eng, _ = engine()
    t, out = 0.0, []
    for i in range(180):  # storage: stirs 2 of 20 min, a short compressor run each hour
        on = i % 20 < 2 or i % 60 < 5
        out += _stored(eng, t, 3.6 - 0.1 * (i % 60 < 5) * (i % 60), float(on), 800.0)
        t += 60
    assert out == []
    start, temp = t, 3.6
    for _ in range(60):  # the compressor is called but does not cool: +0.4 °C/h
        temp += 0.4 / 60
        out += _stored(eng, t, round(temp, 1), 1.0, 800.0)
        t += 60
    raised = [a for a in out if a.state == "raised"]
    assert len(raised) == 1 and raised[0].rule == "cooling"
    assert "does not cool" in raised[0].message
    assert raised[0].stamp.mono_ns / 1e9 - start <= 30 * 60


def test_stirring_during_a_milking_is_not_a_stalled_cooler() -> None:
    eng, _ = engine()
    t, out, temp, level = 0.0, [], 3.6, 800.0
    for i in range(60):
        out += _stored(eng, t, 3.6, float(i % 20 < 2), level)
        t += 60
    for _ in range(40):  # warm milk arrives slowly: level rises, blend warms a little
        level += 5
        temp += 0.02
        out += _stored(eng, t, round(temp, 2), 1.0, level)
        t += 60
    assert [a for a in out if a.rule == "cooling"] == []


def test_a_herd_wide_rise_is_not_a_heat() -> None:
    eng, _ = engine()
    out = []
    t = 0.0
    cows = [f"cow-{i}" for i in range(8)]
    for _ in range(10 * 24):
        for n, cow in enumerate(cows):
            out += _collar(eng, t + n, cow, 60 + (t // 3600 % 3) + n)
        t += 3600
    for _ in range(8):  # regrouping: every cow 3x for 8 hours
        for n, cow in enumerate(cows):
            out += _collar(eng, t + n, cow, 180 + n)
        t += 3600
    assert [a for a in out if a.rule == "estrus"] == []


def _climate_burst(with_device_time: bool) -> list:
    """A climate node uploading 3 h of 5-minute samples in one burst (10 ms apart)."""
    eng, _ = engine()
    out = []
    for i in range(36):
        r = reading("c-burst", "barn-climate", 100.0 + i * 0.01,
                    {"temperature_c": 12.0 + 0.8 * i, "humidity_pct": 70.0})
        if with_device_time:
            r.source_ts = WALL0 + i * 300.0
        out += eng.on_reading(r)
    return [a for a in out if a.rule == "sensor.erratic"]


def test_jump_check_uses_the_device_clock_for_a_stored_backlog() -> None:
    # +0.8 °C per 5 min is plausible; arriving 10 ms apart it would not be.
    assert _climate_burst(with_device_time=True) == []
    assert _climate_burst(with_device_time=False), "without device time it looks erratic"


def _milking_day(eng, day: int, stall_at_h: float | None = None) -> list:
    """A temperature-only tank (no level): the agitator stirs 2 min in 20 in
    storage; milkings at 06:00 and 18:00 run it 90 min while a working cooler
    holds the blend flat (+0.7 °C, back after). ``stall_at_h``: the cooler dies at that hour
    and the agitator runs on without cooling."""
    out, t0 = [], day * 86400.0
    for minute in range(24 * 60):
        t = t0 + minute * 60.0
        h = minute / 60.0
        milking = any(m <= h < m + 1.5 for m in (6.0, 18.0))
        stalled = stall_at_h is not None and h >= stall_at_h
        temp = 4.3 if milking else 3.6
        if stalled:
            temp = 3.6 + 0.2 * (h - stall_at_h)  # ambient heat, slowly
        stir = 1.0 if milking or stalled or minute % 20 < 2 else 0.0
        out += _tank(eng, t, round(temp, 2), stir)
    return out


def test_a_temperature_only_tank_learns_its_milking_times() -> None:
    # Flat blends at the usual milking times are the routine, not a stall...
    eng, _ = engine()
    out = []
    for day in range(6):
        out += _milking_day(eng, day)
    raised = [a for a in out if a.rule == "cooling" and a.state == "raised"]
    first_days = {int(a.stamp.mono_ns / 1e9 // 86400) for a in raised}
    # Before three days of routine are known the milkings look like stalls.
    assert first_days <= {0, 1, 2}
    assert not [a for a in raised if a.stamp.mono_ns / 1e9 >= 3 * 86400]
    # ...but the cooler dying at an unusual hour still raises.
    late = _milking_day(eng, 6, stall_at_h=11.0)
    stall = [a for a in late if a.rule == "cooling" and a.state == "raised"]
    assert stall and "does not cool" in stall[0].message


def _wash_then_first_milk(eng, t0: float, cooling_starts_min: float | None) -> list:
    """A temperature-only tank (no level, no agitator) washed, rinsed towards
    the air, then a robot's trickle of warm milk. A working cooler starts once
    the milk covers its evaporator (``cooling_starts_min`` after the first milk,
    then -0.4 °C/min down to 3.5 °C); None: the compressor never starts."""
    out = []

    def send(t: float, temp: float, wash: float = 0.0) -> None:
        out.extend(eng.on_reading(reading("tank-r", "bulk-tank", t,
                                          {"milk_temp_c": round(temp, 2), "wash": wash})))

    for minute in range(40):  # the hot wash
        send(t0 + minute * 60, 58.0, 1.0)
    t = t0 + 40 * 60
    for minute in range(10):  # rinsed towards the air
        send(t + minute * 60, 22.0)
    t += 10 * 60
    for minute in range(240):
        temp = 33.0
        if cooling_starts_min is not None and minute >= cooling_starts_min:
            temp = max(3.5, 33.0 - 0.4 * (minute - cooling_starts_min))
        send(t + minute * 60, temp)
    return [a for a in out if a.rule == "cooling" and a.state == "raised"]


def test_a_temperature_only_first_milking_may_take_the_tank_its_own_time_to_cool() -> None:
    # A slow start (25 min, a robot's trickle) is no failure, even the first time.
    eng, _ = engine()
    assert _wash_then_first_milk(eng, 0.0, cooling_starts_min=25) == []
    # A tank whose first milkings cool 2 °C within 15 min (10 min to start,
    # 5 min to drop 2 °C), five times: a dead compressor is raised after 2 x that
    # (plus the alert's own few minutes of confirmation), before the unlearnt 45 min.
    eng, _ = engine()
    day = 86400.0
    for k in range(5):
        assert _wash_then_first_milk(eng, k * day, cooling_starts_min=10) == [], k
    raised = _wash_then_first_milk(eng, 5 * day, cooling_starts_min=None)
    assert raised and "first milking" in raised[0].message
    delay = raised[0].stamp.mono_ns / 1e9 - (5 * day + 50 * 60)
    assert 15 * 60 < delay <= 2 * 15 * 60 + 300 < 45 * 60


def test_a_new_temperature_only_tank_whose_first_milking_never_cools_is_raised() -> None:
    eng, _ = engine()
    raised = _wash_then_first_milk(eng, 0.0, cooling_starts_min=None)
    assert raised, "a first milking that never cools must raise"
    delay = raised[0].stamp.mono_ns / 1e9 - 50 * 60
    assert 30 * 60 <= delay <= 50 * 60


def _thermostat(eng, t0: float, hours: float, fail_at_h: float | None = None,
                band: tuple[float, float] = (3.0, 4.0),
                states: tuple[str, ...] = ("raised",)) -> list:
    """Cooled milk in storage, temperature only (no level, no agitator): it
    warms 0.7 °C/h until the band's top (4.0 °C) calls the compressor, which
    pulls it to the bottom (3.0 °C) at 6 °C/h. From ``fail_at_h`` the compressor
    is called and does not cool. The cooling alerts in ``states``."""
    out, temp, cooling = [], 3.5, False
    for minute in range(int(hours * 60)):
        t = t0 + minute * 60.0
        failed = fail_at_h is not None and minute >= fail_at_h * 60
        if temp >= band[1]:
            cooling = True
        elif temp <= band[0]:
            cooling = False
        temp += (-0.1 if cooling and not failed else 0.7 / 60)
        noise = 0.1 * ((minute * 7) % 3 - 1)  # a probe's jitter, deterministic
        out += eng.on_reading(reading("tank-s", "bulk-tank", t,
                                      {"milk_temp_c": round(temp + noise, 2)}))
    return [a for a in out if a.rule == "cooling" and a.state in states]


def test_cooled_milk_warming_above_its_thermostat_band_is_a_cooler_failure() -> None:
    from agent.config.rules import RulesConfig

    # Also for tanks that stir all the time (no stalled-cooler check).
    for cfg in (RulesConfig(), RulesConfig.model_validate({"cooling": {"stalled_run_s": None}})):
        eng, _ = engine(cfg)
        # Three days heard first: before that the barn's milking times are unknown.
        assert _thermostat(eng, 0.0, 72.0) == [], "a working thermostat's swings raise nothing"
        day3 = 3 * 86400.0
        raised = _thermostat(eng, day3, 12.0, fail_at_h=2.0)
        assert raised and "thermostat band" in raised[0].message
        # Called at 4.0 °C, seen 0.6 °C above the band's top: about an hour at
        # 0.7 °C/h, hours before the milk reaches the 8 °C limit (6 h).
        delay = raised[0].stamp.mono_ns / 1e9 - (day3 + 2 * 3600)
        assert 0 < delay <= 2.5 * 3600


def _first_milking(eng, t0: float, tau_min: float) -> list:
    """Washed, then a first milking at 33 °C cooled towards 3.5 °C with time
    constant ``tau_min`` (51 min: at 7.7 °C in about 100 min)."""
    import math

    out = []

    def send(t: float, temp: float, wash: float = 0.0) -> None:
        out.extend(eng.on_reading(reading("tank-w", "bulk-tank", t,
                                          {"milk_temp_c": round(temp, 2), "wash": wash,
                                           "level_l": 0.0 if wash else 800.0})))

    for minute in range(30):
        send(t0 + minute * 60, 58.0, 1.0)
    t = t0 + 30 * 60
    for minute in range(8 * 60):
        send(t + minute * 60, 3.5 + 29.5 * math.exp(-minute / tau_min))
    return [a for a in out if a.rule == "cooling" and a.state == "raised"]


def test_a_cooler_that_cools_too_slowly_is_raised_before_the_time_limit() -> None:
    eng, _ = engine()
    day = 86400.0
    for k in range(3):  # its usual first milking: about 100 min to target
        assert _first_milking(eng, k * day, tau_min=51) == [], k
    raised = _first_milking(eng, 3 * day, tau_min=102)  # half the cooling power
    assert raised and "more slowly than usual" in raised[0].message
    assert raised[0].severity == "warning"
    at = raised[0].stamp.mono_ns / 1e9 - (3 * day + 30 * 60)
    # 1.5 x its usual ~100 min, before the profile's 3 h limit.
    assert 140 * 60 <= at < 180 * 60


def test_a_collar_burst_keeps_its_window_bounded() -> None:
    # Collars send no timestamp: a backlog of hours arrives within seconds and is
    # judged at arrival. Readings closer than MIN_INTERVAL_S to the window's last
    # item are merged into it (sums kept), so each reading of the burst costs the
    # same, not more than the last.
    from agent.detect.rules.collar import MIN_INTERVAL_S, Window

    w = Window(4 * 3600.0)
    w.add(0.0, 10.0, 0)
    for i in range(1, 5001):
        w.add(1000.0 + i * 1e-3, 10.0, 0)  # 5 s of burst
    assert len(w.items) <= 2
    assert w.total() == 10.0 * 5000
    # Live, collars every 15 min or every 30 s keep every reading of the span.
    for every in (900.0, 30.0):
        assert every > MIN_INTERVAL_S
        live = Window(4 * 3600.0)
        for i in range(2000):
            live.add(i * every, 10.0, 0)
        assert len(live.items) == int(4 * 3600.0 / every)


def test_slow_blends_at_the_barns_milking_times_are_not_cooler_failures() -> None:
    # A large, temperature-only tank: each milking (06:00 and 17:00) warms the
    # blend 1 °C/h for 2.5 h, well above the thermostat band, before the cooler
    # wins. Learnt as the barn's routine: nothing is raised on days 3-5.
    eng, _ = engine()
    temp, cooling, out = 3.5, False, []
    for minute in range(6 * 24 * 60):
        t = minute * 60.0
        h = (t % 86400) / 3600
        if any(0 <= h - m < 2.5 for m in (6.0, 17.0)):
            temp, cooling = temp + 1.0 / 60, True
        else:
            if temp >= 4.0:
                cooling = True
            elif temp <= 3.0:
                cooling = False
            temp += -0.1 if cooling else 0.7 / 60
        noise = 0.1 * ((minute * 7) % 3 - 1)
        out += eng.on_reading(reading("tank-b", "bulk-tank", t,
                                      {"milk_temp_c": round(temp + noise, 2)}))
    raised = [a for a in out if a.rule == "cooling" and a.state == "raised"]
    assert raised == []


def test_a_raised_thermostat_setpoint_becomes_the_band() -> None:
    # The farmer moves the band from 3-4 °C to 4-5 °C: the first swings up there
    # look like warming (at most three raises, each cleared when the swing turns),
    # then three turns in a row at the new top are the band, and all is quiet.
    eng, _ = engine()
    assert _thermostat(eng, 0.0, 72.0) == []
    cooling_alerts = _thermostat(eng, 3 * 86400.0, 72.0, band=(4.0, 5.0),
                                 states=("raised", "cleared"))
    raised = [a for a in cooling_alerts if a.state == "raised"]
    assert len(raised) <= 3
    assert all(a.stamp.mono_ns / 1e9 < 4 * 86400.0 for a in raised), "quiet after a day"
    assert cooling_alerts and cooling_alerts[-1].state == "cleared"


def _robot_tank(eng, t0: float, hours: float, fail_at_h: float | None = None) -> list:
    """A robot's temperature-only tank that stirs without a break: milk trickles
    in (110 L/h at 33 °C) and warms the cooled milk ever more slowly as the tank
    fills, the thermostat cools it from 4.0 back to 3.0 °C (a compressor of
    100 °C·L/min). From ``fail_at_h``
    the compressor is called and does not cool. The raised cooling alerts."""
    out, temp, litres, cooling = [], 3.5, 500.0, False
    for minute in range(int(hours * 60)):
        failed = fail_at_h is not None and minute >= fail_at_h * 60
        if temp >= 4.0:
            cooling = True
        elif temp <= 3.0:
            cooling = False
        flow = 110.0 / 60
        temp = (temp * litres + 33.0 * flow) / (litres + flow)
        litres += flow
        if cooling and not failed:
            temp -= 100.0 / litres
        out += eng.on_reading(reading("tank-r", "bulk-tank", t0 + minute * 60.0,
                                      {"milk_temp_c": round(temp, 2), "agitator": 1.0}))
    return [a for a in out if a.rule == "cooling" and a.state == "raised"]


def test_a_tank_that_stirs_for_days_is_not_a_stalled_cooler() -> None:
    eng, _ = engine()
    # Three days filling: the warm halves of the swings outlast the stalled
    # check's span once the tank is full, and the agitator never stops.
    assert _robot_tank(eng, 0.0, 72.0) == []
    # Past the tank's first three days (the storage-warming check learns its
    # band first), a compressor that stops cooling while the tank stirs.
    raised = _robot_tank(eng, 72 * 3600.0, 24.0, fail_at_h=12.0)
    assert raised and "thermostat band" in raised[0].message
    assert raised[0].stamp.mono_ns / 1e9 - 84 * 3600 <= 4 * 3600


def test_a_tank_backlog_judged_on_arrival_keeps_its_windows_bounded() -> None:
    """Readings without a usable time are judged on arrival; a backlog of them
    arrives within seconds. The cooling windows keep at most MAX_KEPT readings,
    so each reading costs the same however long the backlog is."""
    from agent.detect.rules.cooling import MAX_KEPT

    eng, _ = engine()
    for i in range(3 * MAX_KEPT):
        _tank(eng, 100.0 + i * 0.6, 3.5 + 0.1 * (i % 3), agitator=0.0)
    rule = next(r for r in eng.rules if hasattr(r, "tanks"))
    tank = rule.tanks["tank-1"]
    assert len(tank.run) == MAX_KEPT and len(tank.window) == MAX_KEPT
