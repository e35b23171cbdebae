"""Cooling on tanks as other makers build them, and with what the herd system
records: a probe that reads air until the milk covers it, a cooler that waits
for enough milk, the milking schedule and recorded collections."""

from __future__ import annotations

import pytest

from agent.detect.farm_events import FarmEvent
from tests.helpers_rules import WALL0, engine, reading

DAY = 86400.0


def _tank(eng, t, values):
    return [a for a in eng.on_reading(reading("tank-1", "bulk-tank", t, values))
            if a.rule == "cooling" and a.state == "raised"]


@pytest.mark.parametrize("air", [14.0, 7.5])
def test_a_probe_in_air_until_the_milk_covers_it_is_no_failure(air: float) -> None:
    """A first milking into an empty tank: the level rises from the start, the
    probe reads the air (14 °C, or 7.5 °C: below the 8 °C target) until 400 L
    cover it, then the milk (30 °C), and the cooler starts at 420 L, 35 min after
    the milk began: all normal."""
    eng, _ = engine()
    t, raised = 0.0, []
    for _ in range(60):  # empty after a wash
        raised += _tank(eng, t, {"milk_temp_c": air, "level_l": 0.0})
        t += 60
    level, temp = 0.0, air
    for _ in range(240):
        level += 12.0 if level < 1400 else 0.0
        if level >= 400 and temp < 30.0 and level < 420:
            temp = 30.0  # the milk reaches the probe
        elif level >= 420:
            temp = max(4.0, temp - 0.25)  # cooling
        raised += _tank(eng, t, {"milk_temp_c": temp, "level_l": level})
        t += 60
    assert raised == []


def test_a_first_milking_that_never_cools_is_still_raised() -> None:
    eng, _ = engine()
    t, raised = 0.0, []
    for _ in range(60):
        raised += _tank(eng, t, {"milk_temp_c": 14.0, "level_l": 0.0})
        t += 60
    level, first = 0.0, None
    for _ in range(120):
        level += 12.0
        new = _tank(eng, t, {"milk_temp_c": 30.0 if level >= 400 else 14.0, "level_l": level})
        if new and first is None:
            first = t
        raised += new
        t += 60
    assert raised and "not cooling" in raised[0].message
    assert first is not None and first - 3600 <= 60 * 60


def _air_after_wash(eng, t0: float) -> list:
    """A temperature-only tank after its wash: the empty tank's probe warms in
    the air from 18 to 28 °C over two hours, with the agitator off."""
    raised, t = [], t0
    for _ in range(30):
        raised += _tank(eng, t, {"milk_temp_c": 60.0, "wash": 1.0, "agitator": 1.0})
        t += 60
    for i in range(150):
        raised += _tank(eng, t, {"milk_temp_c": 18.0 + 10.0 * min(i, 120) / 120,
                                 "wash": 0.0, "agitator": 0.0})
        t += 60
    return raised


def test_the_milking_schedule_tells_an_empty_tank_warming_in_air_from_a_milking() -> None:
    # 09:00 UTC: no milking is scheduled near it.
    t0 = (WALL0 // DAY + 1) * DAY + 9 * 3600 - WALL0
    without = _air_after_wash(engine()[0], t0)
    assert without  # on temperature alone it looks like a first milking not cooling
    eng, _ = engine()
    eng.on_farm_event(FarmEvent(t0 - 3600 + WALL0, "milking_schedule", None,
                                {"times": ["04:30", "16:30"], "tank": "tank-1"}),
                      now_mono=t0 - 3600)
    assert _air_after_wash(eng, t0) == []


def test_a_recorded_collection_leaves_a_temperature_only_tank_empty() -> None:
    eng, _ = engine()
    t, raised = 0.0, []
    for i in range(180):  # cooled milk in storage, thermostat swings
        raised += _tank(eng, t, {"milk_temp_c": 3.6 + 0.4 * ((i // 15) % 2), "agitator": 0.0})
        t += 60
    eng.on_farm_event(FarmEvent(t + WALL0, "collection", None, {"tank": "tank-1"}),
                      now_mono=t)
    for i in range(40):  # drained: the probe warms in the air, 0.5 °C a minute
        raised += _tank(eng, t, {"milk_temp_c": min(3.8 + 0.5 * i, 14.0), "agitator": 0.0})
        t += 60
    assert raised == []


@pytest.mark.parametrize("times", [500, True, "04:30", ["x", "99:99", 7, "1e999:00"], None])
def test_an_odd_schedule_or_milking_length_breaks_nothing(times) -> None:
    eng, _ = engine()
    eng.on_farm_event(FarmEvent(WALL0, "milking_schedule", None, {"times": times}), now_mono=0.0)
    eng.on_farm_event(FarmEvent(WALL0, "milking", None, {"tank": "tank-1",
                                                         "duration_s": 10 ** 400}), now_mono=0.0)
    assert eng.farm.milking_s["tank-1"] == 7200.0  # the default, not 10**400 s
    eng.on_farm_event(FarmEvent(WALL0, "milking", None, {"tank": "tank-1",
                                                         "duration_s": 5_400_000}), now_mono=0.0)
    assert eng.farm.milking_s["tank-1"] == 7200.0  # milliseconds sent as seconds
    assert _tank(eng, 60.0, {"milk_temp_c": 3.8}) == []


def test_the_schedule_is_read_on_the_wall_clock() -> None:
    """The engine's time is the monotonic clock's; the schedule's times of day are
    UTC wall time. With the wall clock 5 h ahead of engine time + WALL0, 09:00 wall
    is 04:00 by the engine's count: near no 04:30 milking."""
    def run(shift: float) -> list:
        eng, clock = engine()
        clock.wall = lambda: WALL0 + shift + clock.now  # type: ignore[method-assign]
        t0 = (WALL0 // DAY + 1) * DAY + 9 * 3600 - WALL0 - shift  # 09:00 on the wall
        eng.on_farm_event(FarmEvent(WALL0 + shift + t0 - 3600, "milking_schedule", None,
                                    {"times": ["04:30", "16:30"]}), now_mono=t0 - 3600)
        return _air_after_wash(eng, t0)
    assert run(5 * 3600.0) == []


def test_a_dead_cooler_soon_after_a_recorded_collection_is_still_raised() -> None:
    """Collected, washed and milked again within the hour: the rise held back
    while the tank was taken for empty is milk once the wash is over."""
    eng, _ = engine()
    t, raised = 0.0, []
    for i in range(120):
        raised += _tank(eng, t, {"milk_temp_c": 3.6 + 0.4 * ((i // 15) % 2)})
        t += 60
    eng.on_farm_event(FarmEvent(t + WALL0, "collection", None, {"tank": "tank-1"}),
                      now_mono=t)
    for _ in range(15):  # wash
        raised += _tank(eng, t, {"milk_temp_c": 60.0, "wash": 1.0})
        t += 60
    for i in range(240):  # milk at 30 °C 25 min after the collection; nothing cools it
        raised += _tank(eng, t, {"milk_temp_c": 30.0 if i >= 10 else 18.0, "wash": 0.0})
        t += 60
    assert raised and "not cooling" in raised[0].message


def test_a_collection_recorded_late_leaves_new_milk_alone() -> None:
    eng, _ = engine()
    t = 0.0
    for i in range(120):
        _tank(eng, t, {"milk_temp_c": 3.6 + 0.4 * ((i // 15) % 2)})
        t += 60
    for _ in range(20):  # the next milking blends in: warmer, an episode
        _tank(eng, t, {"milk_temp_c": 9.0})
        t += 60
    tank = eng.cooling.tanks["tank-1"]
    assert tank.phase == "episode"
    # The collection of the morning is only now recorded: the milk is new.
    eng.on_farm_event(FarmEvent(WALL0 + 3000, "collection", None, {"tank": "tank-1"}),
                      late_s=t - 3000, now_mono=t)
    _tank(eng, t, {"milk_temp_c": 9.0})
    assert tank.phase == "episode"


# -- the barn's milk meters: when they report, milk is arriving ----------------

def _meter(eng, t, cow: int = 1) -> None:
    eng.on_reading(reading("mm-1", "milk-meter", t, {
        "yield_kg": 14.0, "conductivity_lf": 5.0, "conductivity_rf": 5.0,
        "conductivity_lr": 5.0, "conductivity_rr": 5.0, "duration_s": 400.0}, animal=str(cow)))


def _parlour_day(eng, t0: float, drain_at: float | None, dead_from: float | None,
                 meters: bool = True) -> list:
    """A day of a 2x parlour, temperature-only tank with agitator, a reading a
    minute: milkings 05:00-07:00 and 16:00-18:00 (a meter reading every 2 min,
    warm milk blending in and cooled back), and, from ``drain_at`` (minutes),
    a collection drain: the probe warms in the barn air (18 °C) and stays there
    until the evening milking fills the tank again. From ``dead_from`` the
    compressor is dead. Returns (time, alert) of each alert raised."""
    raised, temp, drained = [], 3.8, False
    for m in range(24 * 60):
        t = t0 + m * 60
        milking = 300 <= m < 420 or 960 <= m < 1080
        dead = dead_from is not None and m >= dead_from
        if meters and milking and m % 2 == 0:
            _meter(eng, t, cow=m)
        if drain_at is not None and m == drain_at:
            drained = True
        if drained and not milking:
            temp += (18.0 - temp) * 0.08  # probe in the air
        elif drained and milking:
            temp = min(temp + 3.0, 30.0)  # the first milk of the evening covers it
            drained = temp < 30.0
        elif milking:
            temp += 0.08 if dead else (0.06 if temp < 6.5 else -0.1)
        elif not dead:
            temp = max(3.6, temp - 0.05)
        else:
            temp += 0.002
        if not drained and temp > 20 and not dead:
            temp -= 0.4  # the first milking being cooled
        stir = milking or temp > 4.0
        raised += [(t, a) for a in _tank(eng, t, {"milk_temp_c": round(temp, 2),
                                                  "agitator": 1.0 if stir else 0.0})]
    return raised


def test_a_drain_while_the_milk_meters_are_silent_is_no_failure() -> None:
    """Temperature-only tank, no farm events: collected at 10:00, between the
    metered milkings. Its probe warming in the air is no milk being warmed."""
    eng, _ = engine()
    raised = _parlour_day(eng, 0.0, None, None)
    raised += _parlour_day(eng, DAY, drain_at=600, dead_from=None)
    assert raised == []
    assert eng.cooling.meters.known(DAY * 2) and not eng.cooling.meters.robots()


def test_without_meters_the_same_drain_is_raised() -> None:
    """The check above judges something: with no meter heard, the drain looks
    like warm milk that is not cooled."""
    eng, _ = engine()
    _parlour_day(eng, 0.0, None, None, meters=False)
    raised = _parlour_day(eng, DAY, drain_at=600, dead_from=None, meters=False)
    assert any(DAY + 600 * 60 <= t < DAY + 960 * 60 for t, _ in raised)


def test_a_dead_cooler_at_the_metered_milking_after_a_drain_is_raised() -> None:
    eng, _ = engine()
    _parlour_day(eng, 0.0, None, None)
    raised = _parlour_day(eng, DAY, drain_at=600, dead_from=900)
    # found within the first milking's allowance (45 min) of its first milk
    assert raised and DAY + 960 * 60 <= raised[0][0] <= DAY + 1010 * 60
    assert "not cooling" in raised[0][1].message


def test_robots_milking_all_day_tell_no_milking_times() -> None:
    from agent.detect.rules.cooling import MeterMilkings

    m = MeterMilkings()
    for k in range(int(10 * 3600 / 300)):  # a robot milking every 5 min for 10 h
        m.note(k * 300.0)
    assert m.robots() and not m.milking(0.0, 3600.0) and not m.quiet(36000.0)
    parlour = MeterMilkings()
    for k in range(60):  # 05:00-07:00
        parlour.note(5 * 3600 + k * 120.0)
    assert parlour.milking(6 * 3600, 6 * 3600) and not parlour.milking(9 * 3600, 10 * 3600)
    assert parlour.quiet(10 * 3600) and not parlour.quiet(7 * 3600)
    restored = MeterMilkings.from_state(parlour.to_state())
    assert restored == parlour


def _robot_drain(eng, dead: bool) -> list:
    """A robot barn (a meter reading every 5 min, all day) and its temperature-only
    tank, no agitator signal: two days of storage, then collected: the probe
    warms in the air (to 25 °C), a hot wash, and the robots' trickle fills it
    again; the cooler starts once enough milk covers it, 70 min later (unless
    ``dead``). Returns (time, alert) of each alert raised."""
    raised, t = [], 0.0
    def tank(temp: float, wash: bool = False) -> None:
        nonlocal t
        if int(t) % 300 == 0:
            _meter(eng, t, cow=int(t // 300) % 60)
        raised.extend((t, a) for a in _tank(eng, t, {"milk_temp_c": round(temp, 2),
                                                      "wash": 1.0 if wash else 0.0}))
        t += 60
    for i in range(2 * 24 * 60):  # storage, thermostat swings
        tank(3.6 + 0.4 * ((i // 20) % 2))
    temp = 3.8
    for _ in range(60):  # drained
        temp += (25.0 - temp) * 0.1
        tank(temp)
    for _ in range(30):
        tank(60.0, wash=True)
    temp = 25.0
    for i in range(240):  # the robots' milk at 33 °C, cooled from minute 70
        temp = min(temp + 0.5, 33.0) if i < 70 or dead else max(temp - 0.3, 3.8)
        tank(temp + 0.05 * (i % 3))  # probe noise (a flat line is a stuck probe)
    return raised


def test_a_robot_barns_drain_and_slow_first_fill_are_no_failure() -> None:
    eng, _ = engine()
    assert _robot_drain(eng, dead=False) == []
    assert eng.cooling.meters.robots()


def test_a_robot_barns_dead_cooler_after_a_drain_is_raised() -> None:
    eng, _ = engine()
    raised = _robot_drain(eng, dead=True)
    milk_from = (2 * 24 * 60 + 90) * 60.0
    assert raised and milk_from < raised[0][0] <= milk_from + 2.5 * 3600


def _lagged_day(eng, t0: float, lag: int, state: dict, dead_at: int | None = None) -> list:
    """2x parlour: each milking's first warm milk lifts the probe 1.3 °C in 8 min,
    then the cooler brings it back; the meters' first reading comes ``lag`` min
    after the milk starts (a cow is reported when her cluster comes off). From
    ``dead_at`` (min) the compressor is dead: stored milk warms 0.5 °C/h."""
    raised, temp = [], state["temp"]
    for m in range(24 * 60):
        t = t0 + m * 60
        milking = 300 <= m < 420 or 960 <= m < 1080
        if ((300 + lag <= m < 420 + lag) or (960 + lag <= m < 1080 + lag)) and m % 2 == 0:
            _meter(eng, t, cow=m)
        dead = dead_at is not None and m >= dead_at
        if milking and ((m - 300) < 8 or 0 <= (m - 960) < 8):
            temp += 1.3 / 8
        elif dead:
            temp += 0.5 / 60
        else:
            temp = max(3.6, temp - 0.03)
        raised += [(t, a) for a in _tank(eng, t, {
            "milk_temp_c": round(temp + 0.02 * (m % 3), 2),
            "agitator": 1.0 if milking or temp > 4.0 else 0.0})]
    state["temp"] = temp
    return raised


@pytest.mark.parametrize("lag", [0, 15, 25])
def test_meters_that_report_late_do_not_turn_a_milking_into_a_drain(lag: int) -> None:
    """A milking whose meters speak only when the first cow is done is not a
    drain: the tank keeps its milk, and a compressor that dies at 10:00 is
    raised as soon as with meters on time (not at the evening milking)."""
    eng, _ = engine()
    state = {"temp": 3.8}
    assert _lagged_day(eng, 0.0, lag, state) == []
    raised = _lagged_day(eng, DAY, lag, state, dead_at=600)
    assert raised and raised[0][0] <= DAY + 720 * 60


def test_a_robot_barns_drain_with_no_wash_is_judged_again() -> None:
    """Robots: a steep rise is taken for a drain, but with no wash within two
    hours and the milk above target the tank is judged as milk again."""
    eng, _ = engine()
    t, raised = 0.0, []
    for i in range(2 * 24 * 60):
        if i % 5 == 0:
            _meter(eng, t, cow=i % 60)
        temp = 3.6 + 0.4 * ((i // 20) % 2) if i < 2 * 24 * 60 - 600 else None
        if temp is None:  # the compressor dies: a jump, then the milk warms
            k = i - (2 * 24 * 60 - 600)
            temp = 3.8 + min(k, 20) * 0.22 + max(0, k - 20) * 0.03
        raised += [(t, a) for a in _tank(eng, t, {"milk_temp_c": round(temp, 2)})]
        t += 60
    assert raised and raised[0][0] <= t - 600 * 60 + 5 * 3600


def test_a_meter_that_sends_milk_temperature_is_no_tank() -> None:
    eng, _ = engine()
    for k in range(30):
        eng.on_reading(reading("mm-1", "milk-meter", k * 120.0, {
            "yield_kg": 14.0, "milk_temp_c": 35.0, "conductivity_lf": 5.0,
            "conductivity_rf": 5.0, "conductivity_lr": 5.0, "conductivity_rr": 5.0},
            animal=str(k)))
    assert eng.cooling.tanks == {} and eng.cooling.meters.known(3600.0)


def _day_of_first_milking(eng, t0: float, wait_min: float | None) -> list[tuple[float, str]]:
    """One day of a tank collected daily: the wash, an hour empty, then one
    milking (1,440 L over two hours at 32 °C) whose cooler starts ``wait_min``
    after the milk began (None: never), then cooled milk until the day ends.
    The cooling alerts raised, as (minutes after the milk began, message)."""
    raised: list[tuple[float, str]] = []
    t = t0
    for _ in range(30):
        eng.on_reading(reading("tank-1", "bulk-tank", t,
                               {"milk_temp_c": 60.0, "level_l": 0.0, "wash": 1.0}))
        t += 60
    for _ in range(60):
        eng.on_reading(reading("tank-1", "bulk-tank", t,
                               {"milk_temp_c": 16.0, "level_l": 0.0, "wash": 0.0}))
        t += 60
    start, level, temp = t, 0.0, 32.0
    for i in range(1440 - 90):
        level = min(1440.0, level + 12.0)
        if wait_min is not None and i >= wait_min:
            temp = max(3.8 + 0.1 * (i % 3), temp - 0.3)
        raised += [((t - start) / 60, a.message) for a in
                   _tank(eng, t, {"milk_temp_c": temp, "level_l": level, "wash": 0.0})]
        t += 60
    return raised


def test_a_cooler_that_always_waits_an_hour_for_the_milk_to_cover_it_is_learnt() -> None:
    """A big tank whose cooler waits an hour at every first milking until the milk
    covers its evaporator (compliant: 4 h to cool). The first days may be
    alerted (nothing is known of this tank yet); once the wait is learnt
    (FIRST_WAIT_LEARNT first milkings, alerted ones included, as they cooled
    in the end) it is not; and a cooler that then never starts is still
    raised within 1.25 x its usual wait (to the first drop of first_drop_c,
    about 67 min here) plus 15 minutes, and the alert's debounce."""
    from agent.detect.rules.cooling import FIRST_WAIT_LEARNT

    eng, _ = engine()
    days = [_day_of_first_milking(eng, d * DAY, 60) for d in range(7)]
    assert all(not raised for raised in days[FIRST_WAIT_LEARNT:]), days
    failed = _day_of_first_milking(eng, 7 * DAY, None)
    assert failed and "not cooling" in failed[0][1]
    assert failed[0][0] <= 1.25 * 67 + 15 + 12, failed[0]


def test_repaired_failures_on_a_tank_that_cools_at_once_are_not_learnt_as_waits() -> None:
    """A tank whose cooler starts 12 min into every first milking; then three
    first milkings whose cooler failed and was put right after 80 min (each
    alerted); then one that never cools. The repairs are not this tank's
    usual wait: the last failure is raised as soon as the first was."""
    eng, _ = engine()
    for d in range(5):
        assert _day_of_first_milking(eng, d * DAY, 12) == [], d
    repaired = [_day_of_first_milking(eng, d * DAY, 80) for d in range(5, 8)]
    assert all(raised for raised in repaired), repaired
    failed = _day_of_first_milking(eng, 8 * DAY, None)
    assert failed and failed[0][0] <= repaired[0][0][0] + 2, (failed[0], repaired[0][0])
