"""The family of farms: split ranges, determinism, and whole farms written as
firmware messages going through the replay path without a refused message."""

from __future__ import annotations

from dataclasses import replace

from agent.config.model import Config
from agent.detect.scenarios import HELDOUT, TRAIN, FarmParams, generate, sample, score_raised
from agent.runtime.replay import Replayer, replay_lines
from agent.runtime.scenario_replay import cow_number, lines, scenario_alerts


def test_splits_are_seeded_and_differ() -> None:
    assert sample("train", 3) == sample("train", 3)
    assert sample("train", 3) != sample("train", 4)
    assert set(TRAIN) == set(HELDOUT)
    trains = [sample("train", s) for s in range(40)]
    helds = [sample("heldout", s) for s in range(40)]
    assert all(f.milking == "parlour" and f.first_event_day >= 8 for f in trains)
    assert any(f.milking == "robot" for f in helds)
    assert any(not f.tank_agitator for f in helds) and any(not f.tank_level for f in trains)
    assert max(f.cows for f in trains) <= 60 <= min(f.cows for f in helds)


def test_farm_params_change_the_data() -> None:
    base = FarmParams(cows=6)
    a = generate("normal", 5, days=3, params=base)
    b = generate("normal", 5, days=3, params=replace(base, tank_level=False, tank_period_s=120.0))
    tank_a = [r for r in a.readings if r.sensor_id == "tank-1"]
    tank_b = [r for r in b.readings if r.sensor_id == "tank-1"]
    assert all("level_l" in r.values for r in tank_a)
    assert not any("level_l" in r.values for r in tank_b)
    assert len(tank_a) == 2 * len(tank_b)
    robot = generate("normal", 5, days=3, params=replace(base, milking="robot"))
    meters = {r.sensor_id for r in robot.readings if r.firmware == "milk-meter"}
    assert meters == {"robot-0"}


def test_a_heldout_farm_replays_without_refused_messages() -> None:
    farm = replace(sample("heldout", 1), cows=8, milking="robot", tank_level=False,
                   tank_agitator=False, loss=0.0)
    scenario = generate("mixed", 1, days=6, params=farm)
    rep = Replayer(Config())
    list(replay_lines(rep, lines(scenario)))
    assert rep.stats.bad_lines == 0 and rep.stats.quarantined == {}
    assert rep.stats.readings == len(scenario.readings)
    assert cow_number("cow-000") == "1001"


def test_cooling_failure_found_through_the_replay_path() -> None:
    scenario = generate("mixed", 2, days=7, params=replace(sample("train", 2), cows=6))
    scores = score_raised(scenario, scenario_alerts(scenario))
    assert scores["cooling"].episodes >= 1
    assert scores["cooling"].recall == 1.0, scores["cooling"]


def test_every_spike_to_find_has_its_reading() -> None:
    # Radio gaps and lost messages swallow some glitches: those labels count
    # neither way (a detector cannot be blamed for a reading it never got).
    farm = replace(sample("heldout", 102), climate_gaps=0.05, loss=0.05)
    sc = generate("mixed", 102, days=6, params=farm)
    seen = {(r.sensor_id, round(r.stamp.mono_ns / 1e9 - sc.mono0_s, 3)) for r in sc.readings}
    spikes = [ep for ep in sc.episodes if ep.rule == "sensor.spike"]
    for ep in spikes:
        assert ep.ignore == ((ep.subject, round(ep.start, 3)) not in seen), ep
    assert {ep.ignore for ep in spikes} == {True, False}  # both kinds occur here
