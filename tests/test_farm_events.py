"""Farm events as rule input: the one format (file and topic), the rules that use
them, and the running agent taking a calving from the farm events topic on the
real broker (Mosquitto on 127.0.0.1:1883)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_mqtt import Peer, unique
from helpers_rules import WALL0, engine, reading

from agent.config.loader import load_config
from agent.detect.farm_events import (
    FarmEvent,
    FarmEventError,
    parse_lines,
)
from agent.errors import ConfigError
from agent.records import Reading, Stamp
from agent.records.types import stable_id
from agent.runtime.daemon import Agent
from agent.runtime.detection import farm_events_topic
from agent.runtime.replay import load_farm_events

DAY = 86400.0

# -- the format ---------------------------------------------------------------


def test_one_event_a_line_with_times_aliases_and_detail() -> None:
    events = parse_lines([
        '{"ts": "2025-06-02T06:00:00Z", "type": "pen_move", "animal": 1042, "pen": "fresh"}',
        "",
        "# the herd system's export",
        '{"ts": 1748736000, "type": "calving", "animal": "1042"}',
        '{"ts": "2025-05-31T23:00:00", "type": "milking", "tank": "tank-1"}',
        '{"ts": "2025-06-03T00:00:00+02:00", "type": "move", "animal": "7"}',
    ])
    assert [e.type for e in events] == ["milking", "calving", "pen_move", "pen_move"]
    assert events[0].ts == WALL0 - 3600 and events[0].animal is None
    assert events[0].detail == {"tank": "tank-1"}
    assert events[1].ts == WALL0 and events[1].animal == "1042"
    assert events[2].detail == {"pen": "fresh"} and events[2].animal == "1042"
    assert events[3].ts == WALL0 + 2 * DAY - 2 * 3600
    assert events[2].to_dict() == {"ts": "2025-06-02T06:00:00Z", "type": "pen_move",
                                   "animal": "1042", "pen": "fresh"}


@pytest.mark.parametrize(("line", "why"), [
    ('{"ts": 1, "type": "calving"', "not JSON"),
    ('["calving"]', "JSON object"),
    ('{"ts": 1, "type": "birthday", "animal": "1"}', "'birthday' is not one of"),
    ('{"ts": 1, "type": "calving"}', "needs the animal"),
    ('{"ts": "yesterday", "type": "heat", "animal": "1"}', "not ISO 8601"),
    ('{"type": "heat", "animal": "1"}', "ts is missing"),
    ('{"ts": 1, "type": "heat", "animal": true}', "animal is not"),
])
def test_a_bad_event_names_file_and_line(line: str, why: str) -> None:
    good = '{"ts": 1, "type": "heat", "animal": "1"}'
    with pytest.raises(FarmEventError) as err:
        parse_lines([good, "", line], source="farm.jsonl")
    assert str(err.value).startswith("farm.jsonl:3: ") and why in str(err.value)


def test_the_replay_loader_reads_the_file_and_reports_where(tmp_path: Path) -> None:
    path = tmp_path / "farm.jsonl"
    path.write_text('{"ts": 5, "type": "heat", "animal": "1"}\n'
                    '{"ts": 2, "type": "dry_off", "animal": "2"}\n')
    assert [(e.ts, e.type) for e in load_farm_events(path)] == [(2, "dry_off"), (5, "heat")]
    array = tmp_path / "farm.json"
    array.write_text('[{"ts": 5, "type": "heat", "animal": "1"}, {"ts": 1, "type": "x"}]')
    with pytest.raises(ConfigError, match=r"farm\.json: event 2: type 'x'"):
        load_farm_events(array)
    path.write_text('{"ts": 5, "type": "heat", "animal": "1"}\n{"ts": 5}\n')
    with pytest.raises(ConfigError, match=r"farm\.jsonl:2: type None"):
        load_farm_events(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_farm_events(tmp_path / "missing.jsonl")


def test_the_topic_follows_the_prefix_unless_configured() -> None:
    assert farm_events_topic(load_config(overrides={})) == "barn/farm/events"
    assert farm_events_topic(load_config(overrides={"ingest": {"topic_prefix": "b2"}})) \
        == "b2/farm/events"
    cfg = load_config(overrides={"detect": {"rules": {"farm_events_topic": "herd/ev"}}})
    assert farm_events_topic(cfg) == "herd/ev"


# -- the rules ----------------------------------------------------------------


def _collar(eng: Any, t: float, cow: str, act: float, rum: float = 20.0) -> list[Any]:
    # Counts that move a little, as a collar's do: the same counts for 2 h are a
    # stuck collar, whose readings feed no rule.
    act += int(t // 3600) % 3
    return eng.on_reading(reading(f"col-{cow}", "neck-collar", t,
                                  {"activity": act, "rumination_min": rum}, animal=cow))


def _event(eng: Any, now: float, kind: str, cow: str, ago: float = 0.0) -> None:
    """The herd system tells at ``now`` of an event ``ago`` seconds earlier."""
    eng.on_farm_event(FarmEvent(WALL0 + now - ago, kind, cow), late_s=ago, now_mono=now)


def _herd_baseline(eng: Any, cows: list[str], hours: int, t: float = 0.0) -> float:
    for _ in range(hours):
        for cow in cows:
            _collar(eng, t, cow, 60)
        t += 3600
    return t


def _rumination_raised(eng: Any, cows: list[str], t: float, hours: int,
                       rum: dict[str, float]) -> dict[str, int]:
    raised = dict.fromkeys(cows, 0)
    for _ in range(hours):
        for cow in cows:
            for a in _collar(eng, t, cow, 60, rum=rum.get(cow, 20.0)):
                if a.rule == "rumination" and a.state == "raised":
                    raised[cow] += 1
        t += 3600
    return raised


@pytest.mark.parametrize("kind", ["calving", "pen_move"])
def test_rumination_drop_after_a_calving_or_a_move_is_not_alerted(kind: str) -> None:
    eng, _ = engine()
    cows = ["a", "b"]
    t = _herd_baseline(eng, cows, 10 * 24)
    _event(eng, t, kind, "a", ago=600)
    # Both cows ruminate at 30 % for a day and a half: only b is unexplained.
    raised = _rumination_raised(eng, cows, t, 36, {"a": 6.0, "b": 6.0})
    assert raised == {"a": 0, "b": 1}


def test_a_calving_restarts_her_baseline_and_a_move_does_not() -> None:
    eng, _ = engine()
    cows = ["fresh", "moved"]
    t = _herd_baseline(eng, cows, 10 * 24)
    _event(eng, t, "calving", "fresh")
    _event(eng, t, "pen_move", "moved")
    # Both ruminate at half their old level from now on, for a week.
    raised = _rumination_raised(eng, cows, t, 7 * 24, {"fresh": 10.0, "moved": 10.0})
    # The fresh cow's new normal is the lower level; the moved cow's drop lasts
    # past her quiet spell, so it is hers and alerted.
    assert raised == {"fresh": 0, "moved": 1}


def test_a_recorded_heat_confirms_and_a_calving_holds_an_estrus_alert() -> None:
    eng, _ = engine()
    cows = ["h", "c", "i"]
    t = _herd_baseline(eng, cows, 10 * 24)
    _event(eng, t, "insemination", "i", ago=21 * DAY)
    _event(eng, t, "heat", "h")
    _event(eng, t, "calving", "c", ago=3600)
    out: list[Any] = []
    for _ in range(8):  # all three at 3.5x their own activity
        for cow in cows:
            out += _collar(eng, t, cow, 210)
        t += 3600
    raised = {a.animal_id: a for a in out if a.rule == "estrus" and a.state == "raised"}
    assert set(raised) == {"h", "i"}  # not the cow that has just calved
    assert raised["h"].details.get("confirmed_by_herd_system") is True
    assert raised["i"].details.get("expected_return") is True
    assert "confirmed_by_herd_system" not in raised["i"].details


def _milking(eng: Any, t: float, cow: str, ec_lf: float, yield_kg: float = 15.0) -> list[Any]:
    values = {"conductivity_lf": ec_lf, "conductivity_rf": 5.0, "conductivity_lr": 5.0,
              "conductivity_rr": 5.0, "yield_kg": yield_kg}
    return eng.on_reading(reading(f"mm-{cow}", "milk-meter", t, values, animal=cow))


def test_a_dry_cow_gets_no_mastitis_alert_until_she_calves() -> None:
    eng, _ = engine()
    t = 0.0
    for _ in range(14):
        for cow in ("dry", "milking"):
            _milking(eng, t, cow, 5.0)
        t += 12 * 3600
    _event(eng, t, "dry_off", "dry")
    out = []
    for k in (60, 60 + 12 * 3600):  # the same two mastitis milkings for both
        for cow in ("dry", "milking"):
            out += _milking(eng, t + k, cow, 7.5, yield_kg=9.0)
    assert [a.animal_id for a in out if a.state == "raised"] == ["milking"]
    _event(eng, t + 60 * DAY, "calving", "dry")
    assert "dry" not in eng.mastitis.dry and "dry" not in eng.mastitis.cows


def test_farm_context_survives_the_saved_state() -> None:
    eng, _ = engine()
    t = _herd_baseline(eng, ["a"], 4 * 24)
    _event(eng, t, "pen_move", "a")
    _event(eng, t, "dry_off", "b")
    state = json.loads(json.dumps(eng.to_state()))
    twin, _ = engine()
    twin.from_state(state)
    assert twin.farm.since("a", "pen_move", t) == 0.0
    assert twin.rumination.quiet == eng.rumination.quiet and "b" in twin.mastitis.dry


# -- the running agent, on the real broker -----------------------------------


class StepClock:
    """The real clock plus a jump the test sets (days of collar data in seconds)."""

    def __init__(self) -> None:
        self.skip = 0.0

    def wall(self) -> float:
        return time.time() + self.skip

    def monotonic(self) -> float:
        return time.monotonic() + self.skip

    def monotonic_ns(self) -> int:
        return int(self.monotonic() * 1e9)

    def synced(self) -> bool:
        return True


def _collar_now(clock: StepClock, cow: str, rum: float) -> Reading:
    stamp = Stamp(clock.wall(), clock.monotonic_ns(), "boot-test", True)
    values = {"activity": 60.0, "rumination_min": rum}
    return Reading(record_id=stable_id(cow, str(stamp.mono_ns)), sensor_id=f"col-{cow}",
                   firmware="neck-collar", topic=f"barn/collar/col-{cow}", values=values,
                   raw=dict(values), units={}, stamp=stamp, animal_id=cow)


def _farm_rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return [(body, synced) for body, synced in
                conn.execute("SELECT body, synced FROM events") if "farm_event" in body]


async def _until(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.to_thread(cond):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_calving_on_the_topic_keeps_her_post_calving_drop_quiet(
        tmp_path: Path) -> None:
    prefix = unique("farm")
    config = load_config(overrides={
        "gateway": {"id": "gw-farm", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60},
        "sync": {"enabled": False},
        "web": {"enabled": False},
    })
    clock = StepClock()
    agent = Agent(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    detection = agent.detection
    cows = ["1042", "1043"]  # 1043: the same drop, no calving recorded
    raised: dict[str, int] = dict.fromkeys(cows, 0)
    try:
        assert await _until(lambda: agent.mqtt.connected and agent.mqtt.subscriptions(), 20)
        for _ in range(10 * 24):  # ten days of normal rumination
            clock.skip += 3600
            for cow in cows:
                detection.on_reading(_collar_now(clock, cow, 20.0))
        pub = Peer()
        try:
            topic = f"{prefix}/farm/events"
            calved = time.time() + clock.skip - 1800  # recorded half an hour late
            await asyncio.to_thread(pub.publish, topic, json.dumps(
                {"ts": calved, "type": "calving", "animal": "1042"}).encode())
            await asyncio.to_thread(pub.publish, topic, b'{"type": "calving"}')
            await asyncio.to_thread(pub.publish, topic, json.dumps(  # delivered twice
                {"ts": calved, "type": "calving", "animal": "1042"}).encode())
            await asyncio.to_thread(pub.publish, topic, json.dumps(
                {"ts": calved, "type": "milking", "tank": "tank-1"}).encode())
        finally:
            pub.close()
        stored = await _until(
            lambda: len(_farm_rows(config.store_path)) == 2
            and agent.reader.counts()["quarantine_by_reason"].get("bad_farm_event") == 1, 20)
        assert stored, (_farm_rows(config.store_path), agent.reader.counts())
        for _ in range(36):  # both cows ruminate at 30 % of their normal
            clock.skip += 3600
            for cow in cows:
                for alert in detection.on_reading(_collar_now(clock, cow, 6.0)):
                    if alert.rule == "rumination" and alert.state == "raised":
                        raised[cow] += 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert raised == {"1042": 0, "1043": 1}
    rows = _farm_rows(config.store_path)
    calvings = [json.loads(body) for body, _ in rows if "calving 1042" in body]
    assert len(rows) == 2 and len(calvings) == 1  # the repeat is the same record
    assert all(synced == 0 for _, synced in rows)  # in the outbox, for the central store
