"""Runtime profiles: config validation (every profile merged and checked, the bad
key named), the schedule on a fake clock, explicit switches that last until the
next scheduled change, thresholds that really change a rule's outcome while its
learnt state stays, the MQTT command topic on the real broker, the page's
switch (technician yes, viewer no), and an event for every switch."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers_mqtt import Peer, unique, wait_for
from helpers_rules import WALL0, FakeClock, reading
from helpers_web import csrf_of, logged_in, web_client

from agent.cli.main import main
from agent.config.loader import load_config
from agent.config.model import Config
from agent.config.rules import RulesConfig
from agent.detect.rules import RuleEngine
from agent.errors import ConfigError
from agent.runtime.daemon import Agent
from agent.runtime.profiles import ProfileManager, Switch, UnknownProfile

HEAT_WAVE = {"description": "hot spell: heat stress from THI 68",
             "rules": {"heat_stress": {"profiles": {"classic": {"raise_thi": 68.0,
                                                                "clear_thi": 66.0}}}}}
WASHING = {"description": "tank wash", "rules": {"cooling": {"wash_detect_c": 30.0}}}


def _config(**over: Any) -> Config:
    base: dict[str, Any] = {"profiles": {"heat_wave": HEAT_WAVE, "washing": WASHING}}
    base.update(over)
    return load_config(overrides=base)


# -- config ------------------------------------------------------------------------


def test_profiles_merge_onto_the_base_rules() -> None:
    cfg = _config(detect={"rules": {"heat_stress": {"profiles": {"classic": {
        "critical_thi": 80.0}}}}})
    mgr = ProfileManager(cfg, FakeClock(), lambda p: None)
    hot = mgr.profiles["heat_wave"].rules.heat_stress.profiles["classic"]
    assert (hot.raise_thi, hot.clear_thi, hot.critical_thi) == (68.0, 66.0, 80.0)
    normal = mgr.profiles["normal"].rules
    assert normal.heat_stress.profiles["classic"].raise_thi == 72.0
    assert mgr.profiles["washing"].rules.cooling.wash_detect_c == 30.0
    assert mgr.profiles["washing"].rules.heat_stress == normal.heat_stress


@pytest.mark.parametrize(("profile", "schedule", "named"), [
    ({"rules": {"heat_stress": {"profiles": {"classic": {"raise_thi": "hot"}}}}}, [],
     "profiles.p.rules.heat_stress.profiles.classic.raise_thi"),
    ({"rules": {"cooling": {"no_such_key": 1}}}, [], "profiles.p.rules.cooling.no_such_key"),
    ({"rules": {"heat_stress": {"profile": "missing"}}}, [],
     "profiles.p.rules.heat_stress"),
    ({"rules": {"mapping": {"climate": ["x"]}}}, [], "profiles.p.rules.mapping"),
    ({"cameras": {"nope": {"infer_fps": 1.0}}}, [], "profiles.p.cameras.nope"),
    ({}, [{"at": "06:00", "profile": "other"}], "profile_schedule.0.profile"),
    ({}, [{"at": "25:00", "profile": "p"}], "profile_schedule.0.at"),
])
def test_a_bad_profile_is_refused_naming_the_key(profile: dict[str, Any],
                                                 schedule: list[Any], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"profiles": {"p": profile}, "profile_schedule": schedule})
    assert named in str(err.value)


def test_normal_cannot_be_redefined() -> None:
    with pytest.raises(ConfigError, match="profiles.normal"):
        load_config(overrides={"profiles": {"normal": {}}})


def test_config_check_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "k" * 32)
    good = tmp_path / "good.yaml"
    good.write_text(f"gateway:\n  data_dir: {tmp_path / 'data'}\n"
                    "profiles:\n  night:\n    rules: {estrus: {raise_z: 5.0}}\n"
                    "profile_schedule:\n  - {at: '22:00', profile: night}\n"
                    "  - {at: '05:30', profile: normal}\n")
    assert main(["config", "check", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  night:\n    rules: {estrus: {raise_z: -1}}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "profiles.night.rules.estrus.raise_z" in capsys.readouterr().err


# -- the manager on a fake clock -------------------------------------------------------


def _utc(hh: int, mm: int = 0, day: int = 2) -> float:
    return datetime(2025, 6, day, hh, mm, tzinfo=UTC).timestamp()


class Clock(FakeClock):
    def __init__(self, wall: float) -> None:
        super().__init__()
        self.t = wall
        self.is_synced = True

    def wall(self) -> float:
        return self.t

    def synced(self) -> bool:
        return self.is_synced


def _manager(clock: Clock, schedule: list[dict[str, str]]) -> tuple[
        ProfileManager, list[str], list[Switch], list[tuple[str, str, str]]]:
    cfg = _config(profile_schedule=schedule, profile_clock="utc",
                  profiles={"milking": {}, "night": {}, "heat_wave": HEAT_WAVE})
    applied: list[str] = []
    switches: list[Switch] = []
    refused: list[tuple[str, str, str]] = []
    mgr = ProfileManager(cfg, clock, lambda p: applied.append(p.name), switches.append,
                         lambda *a: refused.append(a))
    return mgr, applied, switches, refused


def test_the_schedule_switches_daily_on_the_fake_clock() -> None:
    clock = Clock(_utc(4, 0))
    mgr, applied, switches, _ = _manager(clock, [
        {"at": "05:00", "profile": "milking"}, {"at": "07:30", "profile": "normal"},
        {"at": "22:00", "profile": "night"}])
    assert mgr.tick() is not None and mgr.active == "night"  # since 22:00 yesterday
    clock.t = _utc(4, 59)
    assert mgr.tick() is None
    clock.t = _utc(5, 0)
    assert mgr.tick() == Switch("night", "milking", "schedule", _utc(5, 0))
    clock.t = _utc(7, 31)
    mgr.tick()
    clock.t = _utc(22, 5)
    mgr.tick()
    clock.t = _utc(5, 1, day=3)
    mgr.tick()
    assert applied == ["night", "milking", "normal", "night", "milking"]
    assert [s.by for s in switches] == ["schedule"] * 5
    assert mgr.status()["next"] == {"at": "07:30", "profile": "normal",
                                    "ts": _utc(7, 30, day=3)}


def test_local_clock_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Prague")
    time.tzset()
    try:
        cfg = _config(profile_schedule=[{"at": "05:00", "profile": "washing"}])
        clock = Clock(_utc(3, 1))  # 05:01 in Prague (summer time, UTC+2)
        mgr = ProfileManager(cfg, clock, lambda p: None)
        assert mgr.tick() is not None and mgr.active == "washing"
        assert mgr.scheduled(_utc(3, 1)) == ("washing", _utc(3, 0))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_an_explicit_switch_lasts_until_the_next_scheduled_change() -> None:
    clock = Clock(_utc(8, 0))
    mgr, _, switches, refused = _manager(clock, [
        {"at": "05:00", "profile": "milking"}, {"at": "07:30", "profile": "normal"}])
    mgr.tick()
    assert mgr.active == "normal"
    clock.t = _utc(12, 0)
    assert mgr.request("heat_wave", "mqtt") is not None
    assert mgr.request("heat_wave", "web:tech") is None  # already active: no switch
    for hh in (13, 20, 23):
        clock.t = _utc(hh)
        assert mgr.tick() is None and mgr.active == "heat_wave"
    clock.t = _utc(5, 0, day=3)
    assert mgr.tick() == Switch("heat_wave", "milking", "schedule", _utc(5, 0, day=3))
    with pytest.raises(UnknownProfile):
        mgr.request("heatwave", "mqtt")
    assert mgr.active == "milking"
    assert refused and refused[0][:2] == ("heatwave", "mqtt") and "heat_wave" in refused[0][2]
    assert [(s.old, s.new, s.by) for s in switches] == [
        ("normal", "heat_wave", "mqtt"), ("heat_wave", "milking", "schedule")]


def test_no_schedule_before_the_clock_is_synced_and_a_restored_switch() -> None:
    clock = Clock(_utc(6, 0))
    clock.is_synced = False
    mgr, _, _, _ = _manager(clock, [{"at": "05:00", "profile": "milking"}])
    assert mgr.tick() is None and mgr.active == "normal"
    clock.is_synced = True
    assert mgr.tick() is not None and mgr.active == "milking"
    mgr.request("night", "web:tech")
    state = json.loads(json.dumps(mgr.to_state()))
    # a restart: the explicit switch made after 05:00 still wins
    again, _, switches2, _ = _manager(clock, [{"at": "05:00", "profile": "milking"}])
    again.from_state(state)
    again.tick()
    assert again.active == "night" and switches2[0].by == "restart"
    clock.t = _utc(5, 0, day=3)
    again.tick()
    assert again.active == "milking"


# -- thresholds change the outcome, learnt state stays ---------------------------------


def _climate(eng: RuleEngine, t0: float, hours: float, temp: float = 26.0,
             rh: float = 40.0) -> list[str]:
    """Readings every 5 min; the heat stress alert states raised."""
    out = []
    steps = int(hours * 12)
    for i in range(steps):
        t = t0 + i * 300.0
        for a in eng.on_reading(reading("clim1", "barn-climate", t,
                                        {"temperature_c": temp, "humidity_pct": rh})):
            if a.rule == "heat_stress":
                out.append(a.state)
    return out


def test_a_heat_wave_profile_raises_what_normal_does_not_and_keeps_learnt_state() -> None:
    cfg = _config()
    mgr = ProfileManager(cfg, FakeClock(), lambda p: None)
    # THI about 70: below the classic 72, above the heat wave's 68.
    base = RuleEngine(cfg.detect.rules, FakeClock())
    switched = RuleEngine(cfg.detect.rules, FakeClock())
    assert _climate(base, 0.0, 3) == [] and _climate(switched, 0.0, 3) == []
    load_before = switched.heat_stress.to_state()["clim1"]["load"]
    barn = switched.heat_stress.barns["clim1"]
    switched.reconfigure(mgr.profiles["heat_wave"].rules)
    assert switched.heat_stress.barns["clim1"] is barn  # the same learnt state
    assert switched.heat_stress.to_state()["clim1"]["load"] == load_before
    assert _climate(base, 3 * 3600.0, 4) == []
    assert _climate(switched, 3 * 3600.0, 4) == ["raised"]
    # the 24 h load went on from the readings before the switch
    assert len(switched.heat_stress.barns["clim1"].load) == 7 * 12 - 1
    # back to normal: the open alert clears under the normal thresholds' hysteresis
    switched.reconfigure(mgr.profiles["normal"].rules)
    assert switched.cfg is cfg.detect.rules


def test_learnt_baselines_survive_a_switch() -> None:
    cfg = _config(profiles={"strict": {"rules": {"mastitis": {"rel_rise": 0.05},
                                                "rumination": {"drop_min": 20.0}}}})
    eng = RuleEngine(cfg.detect.rules, FakeClock())
    for i in range(10):
        eng.on_reading(reading("m1", "milk-meter", i * 43200.0,
                               {"conductivity_lf": 5.0, "conductivity_rf": 5.0,
                                "conductivity_lr": 5.0, "conductivity_rr": 5.0,
                                "yield_kg": 15.0}, animal="1042"))
    before = json.dumps(eng.to_state()["rules"], sort_keys=True)
    eng.reconfigure(ProfileManager(cfg, FakeClock(), lambda p: None).profiles["strict"].rules)
    assert json.dumps(eng.to_state()["rules"], sort_keys=True) == before
    assert eng.mastitis.cfg.rel_rise == 0.05 and eng.rumination.cfg.drop_min == 20.0
    with pytest.raises(ValueError, match="mapping"):
        eng.reconfigure(RulesConfig(mapping={"climate": ["other"]}))  # type: ignore[arg-type]


# -- the page ------------------------------------------------------------------------


class Backend:
    def __init__(self, mgr: ProfileManager) -> None:
        self.mgr = mgr

    def profile_status(self) -> dict[str, Any]:
        return self.mgr.status()

    def switch_profile(self, name: str, by: str) -> dict[str, Any]:
        try:
            self.mgr.request(name, by)
        except UnknownProfile as err:
            raise KeyError(str(err)) from None
        return self.mgr.status()


async def test_a_technician_switches_from_the_page_and_a_viewer_cannot(tmp_path: Path) -> None:
    switches: list[Switch] = []
    mgr = ProfileManager(_config(), Clock(WALL0), lambda p: None, switches.append)
    backend = Backend(mgr)
    client, _, actions = await web_client(
        tmp_path, provider=lambda: {"version": "t", "uptime_s": 1.0,
                                    "profile": mgr.status()}, profiles=backend)
    try:
        assert (await client.get("/api/profile")).status == 401  # no session: nothing
        assert (await client.post("/api/profile", json={"profile": "heat_wave"})).status \
            in (401, 403)
        csrf = await logged_in(client, "view")
        page = await (await client.get("/")).text()
        assert "<b>normal</b>" in page and 'class="profile"' not in page
        resp = await client.post("/api/profile", json={"profile": "heat_wave"},
                                 headers={"X-CSRF-Token": csrf})
        assert resp.status == 403 and mgr.active == "normal"
        assert (await client.get("/api/profile")).status == 200  # but may look
        await client.post("/logout", data={"csrf": csrf})
        client.session.cookie_jar.clear()

        csrf = await logged_in(client, "tech")
        page = await (await client.get("/")).text()
        assert 'class="profile"' in page and 'value="heat_wave"' in page
        resp = await client.post("/api/profile", json={"profile": "heat_wave"})
        assert resp.status == 403 and mgr.active == "normal"  # no CSRF token
        resp = await client.post("/api/profile", json={"profile": "heat_wave"},
                                 headers={"X-CSRF-Token": csrf})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["active"] == "heat_wave"
        # the page's form, without script
        resp = await client.post("/api/profile", data={"profile": "washing",
                                                       "csrf": csrf_of(page)},
                                 allow_redirects=False)
        assert resp.status == 303 and mgr.active == "washing"
        resp = await client.post("/api/profile", json={"profile": "bogus"},
                                 headers={"X-CSRF-Token": csrf})
        assert resp.status == 404 and mgr.active == "washing"
    finally:
        await client.close()
    assert [(s.new, s.by) for s in switches] == [("heat_wave", "web:tech"),
                                                 ("washing", "web:tech")]
    assert [a.get("profile") for a in actions.items if a["action"] == "profile_switch"] \
        == ["heat_wave", "washing"]


# -- the running agent, on the real broker ------------------------------------------------


def _events(path: Path, name: str) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        rows = [json.loads(body) for (body,) in conn.execute("SELECT body FROM events")]
    return [r for r in rows if r.get("event") == name]


async def _until(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.to_thread(cond):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_mqtt_command_topic_switches_and_refuses(tmp_path: Path) -> None:
    prefix = unique("prof")
    config = load_config(overrides={
        "gateway": {"id": "gw-prof", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60, "status_prefix": prefix},
        "sync": {"enabled": False},
        "web": {"enabled": False},
        "profiles": {"heat_wave": HEAT_WAVE},
        # in this process: the test looks into the rule engine (the worker process
        # of detect.worker: process is tested in tests/test_detect_worker.py)
        "detect": {"worker": "inline"},
    })
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    command = f"{prefix}/gw-prof/profile/set"
    watcher = Peer()
    try:
        assert await _until(lambda: command in agent.mqtt.subscriptions(), 20)
        watcher.subscribe(f"{prefix}/gw-prof/profile")
        # the active profile is announced (retained) on connect, then on every switch
        assert await asyncio.to_thread(wait_for, lambda: any(
            m.payload == b"normal" for m in watcher.received), 5)
        heat = agent.detection.rules.heat_stress
        barns = heat.barns
        assert heat.profile.raise_thi == 72.0
        await asyncio.to_thread(watcher.publish, command, b"heat_wave\n")
        assert await _until(lambda: agent.profiles.active == "heat_wave", 10)
        assert heat.profile.raise_thi == 68.0 and heat.barns is barns
        await asyncio.to_thread(watcher.publish, command, b"heatwave")
        assert await _until(lambda: _events(config.store_path, "profile_refused"), 10)
        assert agent.profiles.active == "heat_wave"
        # the active profile is published (retained) for the farm system
        assert await asyncio.to_thread(wait_for, lambda: any(
            m.payload == b"heat_wave" for m in watcher.received), 5)
        status = agent.status().to_dict()["profile"]
        assert status["active"] == "heat_wave" and status["by"] == "mqtt"
    finally:
        watcher.close()
        stop.set()
        await asyncio.wait_for(task, 60)
    switch = _events(config.store_path, "profile_switch")
    assert [(e["data"]["from"], e["data"]["to"], e["data"]["by"]) for e in switch] == [
        ("normal", "heat_wave", "mqtt")]
    refused = _events(config.store_path, "profile_refused")
    assert refused[0]["data"]["requested"] == "heatwave"

    # a restart keeps the explicit switch (no schedule overrides it)
    again = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    try:
        assert await _until(lambda: again.profiles.active == "heat_wave", 10)
        assert again.detection.rules.heat_stress.profile.raise_thi == 68.0
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    # cleanup the retained state message
    cleaner = Peer()
    cleaner.publish(f"{prefix}/gw-prof/profile", b"", retain=True)
    cleaner.close()


def test_the_example_profiles_validate_and_an_unquoted_time_is_read_right() -> None:
    from agent.config.example import EXAMPLE_CAMERAS, EXAMPLE_PROFILES, EXAMPLE_SCHEDULE

    cfg = Config.model_validate({"cameras": EXAMPLE_CAMERAS, "profiles": EXAMPLE_PROFILES,
                                 "profile_schedule": EXAMPLE_SCHEDULE})
    mgr = ProfileManager(cfg, FakeClock(), lambda p: None)
    assert mgr.profiles["heat_wave"].rules.heat_stress.profile == "high_yield"
    assert mgr.profiles["washing"].rules.cooling.alerts.min_duration_s == 3600
    import yaml

    loaded = yaml.safe_load("profile_schedule:\n  - {at: 16:00, profile: night}\n"
                            "profiles: {night: {}}\n")
    assert loaded["profile_schedule"][0]["at"] == 960  # what YAML 1.1 makes of it
    assert Config.model_validate(loaded).profile_schedule[0].at == "16:00"


# -- camera sampling -----------------------------------------------------------------------


class _Gate:
    def check(self, image: Any, mono_ns: int) -> Any:
        from agent.vision.gate import GateResult

        return GateResult(True, 1.0, "test")


class _Frame:
    def __init__(self, camera_id: str, mono_ns: int) -> None:
        import numpy as np

        self.camera_id, self.mono_ns = camera_id, mono_ns
        self.image = np.zeros((4, 4, 3), dtype=np.uint8)


def test_a_profile_changes_a_cameras_budget_and_pauses_it() -> None:
    from agent.config.model import CameraConfig
    from agent.vision.scheduler import InferenceScheduler

    cam = CameraConfig(id="lane1", source="synthetic", infer_fps=1.0)
    sched: InferenceScheduler[Any] = InferenceScheduler([cam], lambda cid, f: None,
                                                        gates={"lane1": _Gate()})
    sched.start()
    try:
        def offered(fps_frames: int, start_s: float) -> int:
            """Frames at 10 fps for one second (spaced past the worker): how many taken."""
            taken = 0
            for i in range(fps_frames):
                if sched.offer(_Frame("lane1", int((start_s + i / 10) * 1e9))):
                    taken += 1
                    done = sched.stats()["lane1"]["offered"] - sched.stats()["lane1"]["budget"]
                    assert wait_for(lambda d=done: sched.stats()["lane1"]["inferred"] >= d, 2)
            return taken

        assert offered(10, 0.0) == 1  # 1 frame/s
        sched.set_budget("lane1", 5.0)
        assert offered(10, 10.0) == 5
        sched.set_budget("lane1", 5.0, enabled=False)
        assert offered(10, 20.0) == 0
        sched.set_budget("lane1", 1.0)
        assert offered(10, 30.0) == 1
        assert sched.stats()["lane1"]["budget"] == 9 + 5 + 10 + 9
    finally:
        sched.stop()


def test_the_agent_applies_a_profiles_camera_sampling(tmp_path: Path) -> None:
    config = load_config(overrides={
        "gateway": {"data_dir": str(tmp_path)}, "sync": {"enabled": False},
        "web": {"enabled": False},
        "cameras": [{"id": "lane1", "source": "synthetic", "infer_fps": 2.0}],
        "profiles": {"night": {"cameras": {"lane1": {"enabled": False}}},
                     "milking": {"cameras": {"lane1": {"infer_fps": 8.0}}}},
    })
    agent = Agent(config, hmac_key=b"k" * 32)
    cams = agent.vision.scheduler._cams
    agent.profiles.request("night", "test")
    assert cams["lane1"].paused
    agent.profiles.request("milking", "test")
    assert not cams["lane1"].paused and cams["lane1"].period_ns == int(1e9 / 8 * 0.95)
    agent.profiles.request("normal", "test")
    assert cams["lane1"].period_ns == int(1e9 / 2 * 0.95)
    agent.writer.close()
