"""The rules read what the shipped firmware really sends: barn simulator ->
Ingestor.parse -> RuleEngine.on_reading (+ tick every simulated minute), with
the default role mapping. A normal barn raises nothing, cooling included; a
compressor failure injected into the simulated tank is caught."""

from __future__ import annotations

from collections import Counter

from agent.config.rules import RulesConfig
from agent.detect.rules import RuleEngine
from agent.records import Alert
from agent.sources.simulator import DEFAULT_START, BarnSimulator
from tests.helpers_ingest import FakeClock as IngestClock
from tests.helpers_ingest import make_ingestor
from tests.helpers_rules import FakeClock

DAY = 86400.0
MONO0 = 10.0  # the ingestor's monotonic seconds at the simulation's start


class _Run:
    """One simulated barn through the real ingest path into one RuleEngine."""

    def __init__(self, days: float, seed: int = 4, herd_size: int = 60,
                 sensors_per_kind: int = 2, **sim: object) -> None:
        self.ing_clock = IngestClock(synced=True)
        self.ing = make_ingestor(clock=self.ing_clock)
        self.sim = BarnSimulator(self.ing.specs, seed=seed, herd_size=herd_size,  # type: ignore[arg-type]
                                 sensors_per_kind=sensors_per_kind, **sim)
        self.clock = FakeClock()
        self.engine = RuleEngine(RulesConfig(), self.clock)
        self.alerts: list[Alert] = []
        self.roles: Counter[str] = Counter()
        self.firmware_of: dict[str, str] = {}
        self._go(days)

    def _go(self, days: float) -> None:
        eng, start = self.engine, DEFAULT_START
        next_tick = MONO0 + 60.0
        for msg in self.sim:
            mono = msg.sim_ts - start + MONO0
            while next_tick <= mono:  # the agent ticks every minute, on the same clock
                self.clock.now = next_tick
                self.alerts += eng.tick(next_tick)
                next_tick += 60.0
            if msg.sim_ts - start > days * DAY:
                break
            # The ingestor stamps readings with its clock: let it follow the simulation.
            self.ing_clock.wall_ts = msg.sim_ts
            self.ing_clock.mono_ns = int(mono * 1e9)
            reading = self.ing.parse(msg.topic, msg.payload)
            role = eng.role_of(reading)
            self.roles[role] += 1
            self.firmware_of[reading.firmware] = role
            self.clock.now = mono
            self.alerts += eng.on_reading(reading)

    def raised(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "raised"]


def _heat_cows(run: _Run, days: int) -> set[str]:
    """Cows the simulator puts in heat (a whole day at 2.5x) in the run's first days."""
    first = int(DEFAULT_START // 86400)
    return {str(c["number"]) for c in run.sim._cows  # type: ignore[attr-defined]
            if c["heat_day"] in {(first + d) % 21 for d in range(days)}}


def test_normal_barn_over_two_days_raises_nothing() -> None:
    run = _Run(days=2.2)
    eng = run.engine
    assert run.firmware_of == {"barn-climate": "climate", "bulk-tank": "bulk_tank",
                               "milk-meter": "milk_meter", "neck-collar": "collar",
                               "water-flow": "water", "rfid-reader": "rfid"}
    # RFID readers have a role of their own (a long allowed silence) but no dairy rule.
    # Each rule holds state for what it was fed: the keys matched.
    cooling = eng.rules[0]
    assert cooling.tanks and eng.rules[1].barns  # type: ignore[attr-defined]
    assert eng.rules[2].cows and eng.rules[3].cows  # type: ignore[attr-defined]
    assert eng.rumination.cows
    assert all(len(c.quarters) == 4 for c in eng.rules[2].cows.values())  # type: ignore[attr-defined]
    # The tanks went through every phase: pickup and wash, a first milking into
    # the empty tank, blends onto cooled milk, thermostat storage; and each
    # milking cooled to target (times are recorded when an episode ends).
    for tank in cooling.tanks.values():  # type: ignore[attr-defined]
        assert len(tank.times_to_target) >= 4
        assert max(tank.times_to_target) < 3 * 3600
    # A normal barn raises no alert of any rule: cooling, animal or sensor.
    assert set(eng.rule_names()) >= {"cooling", "sensor.erratic", "sensor.dropout"}
    # Except heats: the simulator gives each cow a whole day at 2.5x activity once in
    # 21 days, and a new cow is judged against the herd after 4 h.
    heat = _heat_cows(run, days=3)
    assert [(a.rule, a.sensor_id, a.message) for a in run.raised()
            if not (a.rule == "estrus" and a.animal_id in heat)] == []


def test_a_compressor_failure_in_storage_is_caught() -> None:
    # Tank-01's compressor dies at 07:58 on day 1, with cooled milk in storage.
    fail_at = DEFAULT_START + 27 * 3600
    run = _Run(days=1.6, herd_size=30, compressor_fails_at=fail_at)
    cooling = [a for a in run.raised() if a.rule == "cooling"]
    assert [a.sensor_id for a in cooling] == ["tank-01"]
    heat = _heat_cows(run, days=2)  # a new cow's heat is judged after 4 h
    assert [a.rule for a in run.raised() if a.rule != "cooling"
            and not (a.rule == "estrus" and a.animal_id in heat)] == []
    at = DEFAULT_START + cooling[0].stamp.mono_ns / 1e9 - MONO0
    # Seen once the thermostat calls for cooling that never comes (~20 min of
    # running without the milk getting colder), hours before the next milking.
    assert fail_at < at < DEFAULT_START + (24 + 17) * 3600
    assert "does not cool" in cooling[0].message


def test_a_compressor_failure_at_a_new_tanks_first_milking_is_caught() -> None:
    fail_at = DEFAULT_START + 12 * 3600  # 16:58: the first milking into the empty tank
    # One tank for 30 cows: it passes the rule's 50 L "not empty" level ~11 min in.
    # A new tank's first milkings get 45 min before "not cooling" (many coolers
    # wait until the milk covers the evaporator); later, twice this tank's usual.
    run = _Run(days=0.8, herd_size=30, sensors_per_kind=1, compressor_fails_at=fail_at)
    cooling = [a for a in run.raised() if a.rule == "cooling"]
    assert [a.sensor_id for a in cooling] == ["tank-01"]
    delay = DEFAULT_START + cooling[0].stamp.mono_ns / 1e9 - MONO0 - fail_at
    assert 0 < delay < 75 * 60  # 61.5 min: 11 to 50 L, 45 of grace, the alert policy
