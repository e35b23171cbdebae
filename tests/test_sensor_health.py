"""Sensor health through `dairy-edge replay`'s code path (shipped firmware payloads ->
Ingestor.parse -> rules on the data's clock): each fault injected at a known time
is alerted on its sensor within the goal delay, and the same barn without the
fault raises no sensor alert at all."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from agent.config.model import Config
from agent.config.rules import RulesConfig
from agent.detect.rules import RuleEngine
from agent.runtime.replay import Replayer, parse_ts, replay_lines
from agent.sources.sensor_faults import FaultBarn
from tests.helpers_rules import reading

HOUR, DAY = 3600.0, 86400.0


def replay(barn: FaultBarn) -> list[dict[str, object]]:
    return list(replay_lines(Replayer(Config()), barn.lines()))


def sensor_alerts(alerts: list[dict[str, object]]) -> list[tuple[str, str, float]]:
    return [(str(a["rule"]), str(a["subject"]), parse_ts(a["ts"])) for a in alerts
            if str(a["rule"]).startswith("sensor.")]


@pytest.fixture(scope="module")
def clean() -> list[tuple[str, str, float]]:
    return sensor_alerts(replay(FaultBarn(seed=11)))


def test_the_barn_without_a_fault_raises_no_sensor_alert(clean) -> None:
    assert clean == []


@pytest.mark.parametrize(
    ("fault", "sensor", "goal_s"),
    [("spike", "c2", HOUR), ("spike", "tank-1", HOUR), ("range_spike", "c2", HOUR),
     ("range", "c3", HOUR), ("stuck", "tank-1", HOUR), ("stuck", "c3", HOUR),
     # A 15-minute collar that loses ~1 % of its messages: three lost in a row
     # (an hour of silence) must not be called a dropout, so it takes 4.5
     # intervals when its loss estimate reads 1.6 % (sensor_health.loss_factor).
     ("dropout", "c2", HOUR), ("dropout", "k2", 75 * 60.0), ("dropout", "tank-1", HOUR),
     # A collar sending the same window's counts again: two hours of them
     # (stuck_min_s_by_key; small night counts repeat for an hour by chance).
     ("stuck", "k2", 150 * 60.0),
     ("drift", "c2", DAY)],
)
def test_fault_is_alerted_on_its_sensor_in_time(clean, fault: str, sensor: str,
                                                goal_s: float) -> None:
    barn = FaultBarn(seed=11, fault=fault, fault_sensor=sensor)
    got = sensor_alerts(replay(barn))
    (rule, subject, start, _end), = barn.episodes
    hits = [ts for r, s, ts in got if r == rule and s == subject and ts >= start]
    assert hits, (fault, got)
    assert hits[0] - start <= goal_s, (fault, (hits[0] - start) / 60)
    # Nothing else: no other sensor, no other sensor rule.
    assert [(r, s) for r, s, _ in got if (r, s) != (rule, subject)] == [], got


@pytest.mark.parametrize("barn", [
    FaultBarn(seed=12, climate_gaps=True),  # irregular radios: 16-25 min gaps are normal
    FaultBarn(seed=13, outage=(2.2 * DAY, 2 * HOUR)),  # uplink down, backlog in a burst
    FaultBarn(seed=14, resolution=0.0, climate_period_s=60.0, loss=0.05),
], ids=["gappy-climate", "backlog-burst", "fine-values-lossy"])
def test_other_barns_without_faults_stay_quiet(barn: FaultBarn) -> None:
    assert sensor_alerts(replay(barn)) == []


def test_drift_is_not_blamed_on_the_neighbours() -> None:
    barn = FaultBarn(seed=15, fault="drift", fault_sensor="c4", drift_per_h=0.3)
    got = sensor_alerts(replay(barn))
    assert {s for r, s, _ in got if r == "sensor.drift"} == {"c4"}


def test_a_burst_of_stored_readings_is_judged_on_the_sensor_clock() -> None:
    # The same stuck tank, delivered live and as a backlog after a 6 h outage that
    # covers the fault: the same alert, at the same sensor time.
    live = FaultBarn(seed=16, fault="stuck", fault_sensor="tank-1", fault_at=2.5 * DAY)
    burst = FaultBarn(seed=16, fault="stuck", fault_sensor="tank-1", fault_at=2.5 * DAY,
                      outage=(2.45 * DAY, 6 * HOUR))
    a = [x for x in sensor_alerts(replay(live)) if x[0] == "sensor.stuck"]
    b = [x for x in sensor_alerts(replay(burst)) if x[0] == "sensor.stuck"]
    assert a and b and abs(a[0][2] - b[0][2]) <= 120, (a, b)
    # ...and the outage itself is not a dropout of every sensor.
    assert not [x for x in sensor_alerts(replay(burst)) if x[0] == "sensor.dropout"]


def test_range_alert_clears_and_one_alert_per_flapping_spell() -> None:
    eng = RuleEngine(RulesConfig(), _Clock())
    out = []
    t = 0.0
    for i in range(400):  # 33 h of good values, every 5 min
        out += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": 15 + (i % 7) * 0.13,
                                                                "humidity_pct": 60 + i % 5}))
        t += 300
    for i in range(24):  # two hours: every other value impossible
        temp = 90.0 if i % 2 else 15.3
        out += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": temp,
                                                                "humidity_pct": 61}))
        t += 300
    for i in range(30):
        out += eng.on_reading(reading("c1", "barn-climate", t, {"temperature_c": 15 + (i % 7) * 0.13,
                                                                "humidity_pct": 60 + i % 5}))
        t += 300
    states = [(a.rule, a.state) for a in out]
    assert states.count(("sensor.spike", "raised")) == 1, states
    assert ("sensor.spike", "cleared") in states
    assert out[-1].state == "cleared" or ("sensor.spike", "cleared") in states


def test_state_round_trip_keeps_what_was_learnt() -> None:
    barn = FaultBarn(seed=17, days=2.0)
    rep = Replayer(Config())
    list(replay_lines(rep, barn.lines()))
    sensors = rep.detection.rules.sensors
    state = json.loads(json.dumps(sensors.to_state()))
    before = {sid: sensors.timeout(sid) for sid in sensors.sensors}
    sensors.from_state(state)
    assert {sid: sensors.timeout(sid) for sid in sensors.sensors} == before
    assert before["c1"] is not None and before["c1"] < before["k1"]  # per device rhythm


class _Clock:
    now = 0.0

    def wall(self) -> float:
        return 1_748_736_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return int(self.now * 1e9)

    def synced(self) -> bool:
        return True


def _three_climate_nodes(glitch: tuple[str, float], drift_from: float | None = None,
                         gap_before_glitch: float = 0.0) -> list:
    """Three climate nodes every 10 min for three days with a daily swing; node
    ``glitch[0]`` reads +22 °C once at ``glitch[1]`` (after ``gap_before_glitch``
    s of silence); from ``drift_from`` c3 drifts up 0.3 °C/h, to 5 °C at most.
    The drift alerts raised."""
    import math

    eng = RuleEngine(RulesConfig(), _Clock())
    out = []
    offsets = {"c1": 0.0, "c2": 0.4, "c3": -0.3}
    sid_g, t_g = glitch
    for i in range(int(3 * DAY / 600)):
        t = i * 600.0
        for sid, off in offsets.items():
            if sid == sid_g and t_g - gap_before_glitch < t < t_g:
                continue  # a radio gap
            temp = 18 + 5 * math.sin(2 * math.pi * t / DAY) + off + 0.2 * ((i * 7) % 3 - 1)
            if sid == sid_g and t == t_g:
                temp += 22.0
            if sid == "c3" and drift_from is not None and t > drift_from:
                temp += min(5.0, 0.3 * (t - drift_from) / HOUR)
            out += eng.on_reading(reading(sid, "barn-climate", t,
                                          {"temperature_c": round(temp, 2),
                                           "humidity_pct": 70.0 + (i % 5)}))
    return [a for a in out if a.rule == "sensor.drift" and a.state == "raised"]


def test_a_spike_too_late_to_judge_does_not_look_like_drift() -> None:
    """A node silent for 40 min whose next value is a glitch (+22 °C) cannot
    have that value judged a spike (its level is too old); the neighbour
    comparison must not take one wild value for the node drifting away."""
    assert _three_climate_nodes(("c2", 2.5 * DAY), gap_before_glitch=2400.0) == []


def test_a_glitch_as_a_nodes_first_reading_does_not_blind_the_drift_check() -> None:
    """A node's very first reading is a glitch, while its pairs are still
    learning: a drift of another node later is still found within a day."""
    raised = _three_climate_nodes(("c1", 0.0), drift_from=1.5 * DAY)
    assert [a.sensor_id for a in raised] == ["c3"]
    assert raised[0].stamp.mono_ns / 1e9 - 1.5 * DAY <= DAY



def test_a_robot_milk_meter_that_reports_when_cows_come_is_not_a_dropout() -> None:
    """A robot's milk meter reports when a cow comes, in clusters, and waits out
    the tank's wash: its gaps are spread wide. Over 21 days of a generated robot
    farm (its second robot, 9 cows), no normal gap reaches the timeout; judged
    on the median alone, a 308-min gap at day 4.6 did (timeout 303 min)."""
    from agent.config.sensor_health import SensorHealthConfig
    from agent.detect.rules.sensor_health import Rhythm
    from agent.detect.scenarios import generate, sample

    cfg = SensorHealthConfig()
    farm = generate("mixed", 150, days=21, params=sample("heldout", 150))
    ts = [r.stamp.mono_ns / 1e9 for r in farm.readings if r.sensor_id == "robot-1"]
    rhythm = Rhythm(ts[0], ts[0])
    late = []
    for a, b in itertools.pairwise(ts):
        timeout = rhythm.timeout(cfg, 16 * HOUR)
        if b - a > timeout:
            late.append((a, b - a, timeout))
        rhythm.add(b, timeout, cfg.dropout_memory_s)
    assert len(ts) > 400 and late == []

    # A regular device losing a fifth of its messages at random is judged on
    # its median and its loss, as before, at every reading.
    import random

    r = random.Random(3)
    collar = Rhythm(0.0, 0.0)
    t = 0.0
    for _ in range(2000):
        t += 900.0
        if r.random() < 0.2:
            continue
        timeout = collar.timeout(cfg, 3 * HOUR)
        collar.add(t, timeout, cfg.dropout_memory_s)
        assert collar.high == 0.0
    assert collar.median == 900.0
    # A saved state from before the tail was kept gets it back on restore.
    state = rhythm.to_state()
    assert Rhythm(*state[:-1]).high == rhythm.high


def _collar_day(rng: random.Random, t: float, heat: float = 1.0) -> float:
    """A cow's activity counts for the 15-minute window at ``t``: quiet at night,
    bouts of 150-270 when she gets up and feeds, heavy-tailed noise; ``heat``
    multiplies all of it (estrus: 2-4 times her level)."""
    hour = (t % DAY) / HOUR
    base = 25.0 if hour < 5 or hour >= 22 else 90.0
    if hour % 6 < 1.0:  # milking and feeding
        base = 210.0
    return round(heat * base * rng.lognormvariate(0.0, 0.35))


def _collar_spikes(values: list[float], t0: float = 0.0) -> list[tuple[float, str]]:
    from agent.config.rules import PlausibilityConfig
    from agent.detect.rules.plausibility import SPIKE, PlausibilityRule
    rule = PlausibilityRule(PlausibilityConfig())
    out = []
    for i, v in enumerate(values):
        t = t0 + i * 900.0 + (i * 7919) % 40  # jitter: a one-window spike spans > 30 min
        findings, _bad = rule.check(reading("col-1", "collar_v1", t, {"activity": v}),
                                    "collar", t, t)
        out += [(t, f.status) for f in findings if f.rule == SPIKE]
    return out


def test_an_in_range_collar_spike_that_comes_back_is_a_spike() -> None:
    rng = random.Random(5)
    values = [_collar_day(rng, i * 900.0) for i in range(4 * 96)]
    at = 2 * 96 + 70  # day 3, 17:30: one window at the firmware's range, then her usual
    values[at] = 9000.0
    values[at + 40] = 9999.0
    got = [(t, s) for t, s in _collar_spikes(values) if s == "raise"]
    assert len(got) == 2, got
    assert got[0][0] == pytest.approx((at + 1) * 900.0, abs=60)
    assert got[1][0] == pytest.approx((at + 41) * 900.0, abs=60)


def test_a_collar_in_heat_or_active_is_no_spike() -> None:
    """Her normal days, a heat (3-4x her level for 12 h, ramping over 2 h), a
    burst that stays high, and a quiet first day (nothing learnt) raise nothing."""
    rng = random.Random(6)
    values = []
    for i in range(8 * 96):
        t = i * 900.0
        heat = 1.0
        if 4 * DAY + 20 * HOUR <= t < 5 * DAY + 10 * HOUR:
            heat = 1.0 + 3.0 * min(1.0, (t - 4 * DAY - 20 * HOUR) / (2 * HOUR))
        values.append(_collar_day(rng, t, heat))
    values[6 * 96 + 40] = 4000.0  # very high, then still above her high: a rise
    values[6 * 96 + 41] = 1500.0
    values[20] = 9000.0  # its first day: the high is not known yet
    assert _collar_spikes(values) == []


def _climate_nodes(days: float, temp_of, rh_of, nodes=("c1", "c2", "c3"),
                   engine: RuleEngine | None = None) -> list:
    """Climate nodes (three unless told) every 10 min; ``temp_of(sid, t)`` and
    ``rh_of(sid, t)`` give their values. The sensor
    alerts raised (rule, sensor, time)."""
    eng = engine or RuleEngine(RulesConfig(), _Clock())
    out = []
    for i in range(int(days * DAY / 600)):
        t = i * 600.0
        for sid in nodes:
            out += eng.on_reading(reading(sid, "barn-climate", t,
                                          {"temperature_c": round(temp_of(sid, t), 2),
                                           "humidity_pct": round(rh_of(sid, t), 1)}))
    return [(a.rule, a.sensor_id, a.stamp.mono_ns / 1e9) for a in out
            if a.rule.startswith("sensor.") and a.state == "raised"]


def _temp(sid: str, t: float) -> float:
    import math

    i = int(t // 600)
    return 18 + 5 * math.sin(2 * math.pi * t / DAY) + 0.2 * ((i * 7 + len(sid)) % 3 - 1)


def _humid(sid: str, t: float, fog_h: float = 9.0, fog_nodes: tuple[str, ...] = ("c1",),
           stuck_at: float | None = None) -> float:
    """Damp air: 80-95 % with some wobble; in ``fog_nodes`` the first ``fog_h``
    hours of every day read 100 % (condensing air); from ``stuck_at`` c3
    stays where it is."""
    i = int(t // 600)
    if stuck_at is not None and sid == "c3" and t >= stuck_at:
        return _humid(sid, stuck_at)
    if sid in fog_nodes and (t % DAY) < fog_h * HOUR:
        return 100.0
    return 80.0 + 10 * ((t % DAY) / DAY) + (i * 5 + len(sid)) % 4


def test_a_humidity_sensor_saturated_by_night_fog_is_not_stuck() -> None:
    """Condensing air pins a humidity sensor at 100 % for hours while its
    neighbours, elsewhere in the barn, still move: saturation, not a fault."""
    assert _climate_nodes(4, _temp, _humid) == []


def test_a_humidity_sensor_pinned_at_100_for_a_day_and_one_stuck_lower_are_stuck() -> None:
    def pinned(sid: str, t: float) -> float:  # c1 at 100 % from day 1, for good
        return 100.0 if sid == "c1" and t >= DAY else _humid(sid, t, fog_nodes=())

    raised = _climate_nodes(3, _temp, pinned)
    assert {sid for _, sid, _ in raised} == {"c1"}  # (its drift from the others too)
    stuck = [t for rule, _, t in raised if rule == "sensor.stuck"]
    assert len(stuck) == 1 and 12 * HOUR <= stuck[0] - DAY <= 15 * HOUR
    raised = _climate_nodes(3, _temp, lambda sid, t: _humid(sid, t, fog_nodes=(),
                                                            stuck_at=1.5 * DAY))
    assert [(rule, sid) for rule, sid, _ in raised] == [("sensor.stuck", "c3")]
    assert raised[0][2] - 1.5 * DAY <= 2 * HOUR


def test_a_node_in_the_afternoon_sun_is_not_drifting() -> None:
    """One node gets the afternoon sun through a window: its difference to the
    others swings by 1-2.5 °C each afternoon, more on clear days than on
    cloudy ones. That is its usual relation to them, not drift."""
    import math

    sun = [1.0, 2.5, 0.6, 2.2, 1.4, 2.5, 0.8]  # the day's peak, °C

    def temp(sid: str, t: float) -> float:
        hour = (t % DAY) / HOUR
        bump = (sun[int(t // DAY)] * math.sin(math.pi * (hour - 12) / 6)
                if sid == "c1" and 12 <= hour < 18 else 0.0)
        return _temp(sid, t) + bump

    raised = _climate_nodes(7, temp, lambda sid, t: _humid(sid, t, fog_nodes=()))
    assert raised == []


def test_two_nodes_drifting_apart_are_both_told_and_both_still_used() -> None:
    """A barn with just two climate nodes: when one drifts (2 °C a day from day
    3), their difference shows it but not which one. Both are alerted, each
    naming the other, within a day of being 1 °C off; neither is taken out of
    use (one of them is right, and heat stress needs it)."""
    def temp(sid: str, t: float) -> float:
        ramp = 2.0 * max(0.0, t - 3 * DAY) / DAY if sid == "c2" else 0.0
        return _temp(sid, t) - ramp

    eng = RuleEngine(RulesConfig(), _Clock())
    raised = _climate_nodes(5, temp, lambda sid, t: _humid(sid, t, fog_nodes=()),
                            nodes=("c1", "c2"), engine=eng)
    drift = {sid: t for rule, sid, t in raised if rule == "sensor.drift"}
    assert set(drift) == {"c1", "c2"}, raised
    one_degree_off = 3.5 * DAY
    assert all(t - one_degree_off <= DAY for t in drift.values()), drift
    assert not eng.sensors.faulty("c1") and not eng.sensors.faulty("c2")
    assert [r for r, _, _ in raised if r != "sensor.drift"] == []


def test_a_drift_while_the_third_node_is_stuck_is_not_blamed_on_the_other() -> None:
    """Three nodes, c3's thermometer stuck from day 2 (out of the comparison),
    c1 drifting from day 3: c2 is not the barn's only other node, so it is
    never told it drifts."""
    def temp(sid: str, t: float) -> float:
        if sid == "c3":
            return _temp(sid, min(t, 2 * DAY))
        return _temp(sid, t) - (2.0 * max(0.0, t - 3 * DAY) / DAY if sid == "c1" else 0.0)

    raised = _climate_nodes(5, temp, lambda sid, t: _humid(sid, t, fog_nodes=()))
    assert ("sensor.stuck", "c3") in {(rule, sid) for rule, sid, _ in raised}
    assert [sid for rule, sid, _ in raised if rule == "sensor.drift" and sid != "c1"] == []


def test_two_nodes_one_in_the_afternoon_sun_are_not_drifting() -> None:
    sun = [1.0, 2.5, 0.6, 2.2, 1.4, 2.5, 0.8]

    def temp(sid: str, t: float) -> float:
        import math

        hour = (t % DAY) / HOUR
        bump = (sun[int(t // DAY)] * math.sin(math.pi * (hour - 12) / 6)
                if sid == "c1" and 12 <= hour < 18 else 0.0)
        return _temp(sid, t) + bump

    assert _climate_nodes(7, temp, lambda sid, t: _humid(sid, t, fog_nodes=()),
                          nodes=("c1", "c2")) == []


def _water_meter(days: float, flow_of) -> list:
    eng = RuleEngine(RulesConfig(), _Clock())
    out = []
    for i in range(int(days * DAY / 120)):
        t = i * 120.0
        out += eng.on_reading(reading("water-1", "water-flow", t,
                                      {"flow_lpm": round(flow_of(t), 2)}))
    return [(a.rule, a.sensor_id, a.stamp.mono_ns / 1e9) for a in out
            if a.rule.startswith("sensor.") and a.state == "raised"]


def _drinking(t: float) -> float:
    """By day the flow wanders; at night a cow drinks every 20 min or so, except
    on the third night, when nobody drinks from 01:00 to 04:00."""
    hour = (t % DAY) / HOUR
    i = int(t // 120)
    if hour >= 23 or hour < 5:
        quiet = int(t // DAY) == 2 and 1 <= hour < 4
        return 0.0 if quiet or i % 10 else 3.5
    return 2.0 + (i * 37 % 11) * 1.3


def test_a_water_meter_at_rest_for_hours_is_not_stuck() -> None:
    """Nobody drinks for three hours one night: a flow of 0, the bottom of the
    meter's scale, is the meter at rest, not a fault."""
    assert _water_meter(4, _drinking) == []


def test_a_water_meter_that_rests_at_night_and_then_sticks_is_stuck_soon() -> None:
    """Quiet hours at 0 are not learnt as the meter's normal flat stretch: a
    meter that sticks at a flow by day is found within the hour."""
    stuck_at = 3 * DAY + 10 * HOUR

    def flow(t: float) -> float:
        return _drinking(stuck_at) if t >= stuck_at else _drinking(t)

    raised = _water_meter(4, flow)
    assert [(rule, sid) for rule, sid, _ in raised] == [("sensor.stuck", "water-1")]
    assert raised[0][2] - stuck_at <= HOUR


def test_a_thermometer_pinned_at_the_bottom_of_its_range_is_stuck_soon() -> None:
    """An open thermistor reads the end of its scale: temperature is not a key
    that rests there, so it is stuck within the usual time."""
    def temp(sid: str, t: float) -> float:
        return -40.0 if sid == "c3" and t >= 1.5 * DAY else _temp(sid, t)

    raised = _climate_nodes(3, temp, lambda sid, t: _humid(sid, t, fog_nodes=()))
    assert {sid for _, sid, _ in raised} == {"c3"}
    stuck = [t for rule, _, t in raised if rule == "sensor.stuck"]
    assert stuck and stuck[0] - 1.5 * DAY <= 2 * HOUR


def test_a_node_drifting_from_several_neighbours_is_out_of_use_whatever_its_other_keys() -> None:
    """Three nodes measure temperature, only two of them humidity. c1 drifts in
    both from day 3: its temperature drifts from two neighbours (it is the
    one: out of use), though its humidity has only c2 to be compared with."""
    eng = RuleEngine(RulesConfig(), _Clock())
    raised = []
    for i in range(int(5 * DAY / 600)):
        t = i * 600.0
        ramp = max(0.0, t - 3 * DAY) / DAY
        for sid in ("c1", "c2", "c3"):
            values = {"temperature_c": round(_temp(sid, t) - (2.0 * ramp if sid == "c1" else 0), 2)}
            if sid != "c3":
                values["humidity_pct"] = round(_humid(sid, t, fog_nodes=())
                                               - (8.0 * ramp if sid == "c1" else 0), 1)
            raised += [a for a in eng.on_reading(reading(sid, "barn-climate", t, values))
                       if a.rule == "sensor.drift" and a.state == "raised"]
    assert [a.sensor_id for a in raised][:1] == ["c1"], [(a.sensor_id, a.message) for a in raised]
    assert eng.sensors.faulty("c1")
