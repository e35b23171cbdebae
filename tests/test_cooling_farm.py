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
