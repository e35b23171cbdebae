"""The barn simulator: every firmware round-trips through Ingestor.parse."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import pytest

from agent.errors import InvalidPayload
from agent.ingest import REASONS
from agent.sources.simulator import BarnSimulator
from tests.helpers_ingest import FIRMWARE_DIR, make_ingestor

ING = make_ingestor()


def _sim(**kwargs: object) -> BarnSimulator:
    return BarnSimulator(ING.specs, **kwargs)  # type: ignore[arg-type]


def test_every_firmware_round_trips_with_its_key() -> None:
    seen: Counter[str] = Counter()
    for msg in _sim(seed=1).take(1500):
        assert msg.valid and msg.expected_reason is None
        reading = ING.parse(msg.topic, msg.payload)
        assert reading.record_id == msg.key
        assert reading.firmware == msg.firmware
        seen[reading.firmware] += 1
    assert set(seen) == {s.firmware for s in ING.specs}


def test_bad_messages_give_their_expected_reason_and_key() -> None:
    msgs = _sim(seed=2, bad_ratio=0.3).take(2000)
    bad = [m for m in msgs if not m.valid]
    assert 450 < len(bad) < 750
    got: Counter[str] = Counter()
    for msg in bad:
        with pytest.raises(InvalidPayload) as info:
            ING.parse(msg.topic, msg.payload)
        assert info.value.reason == msg.expected_reason, (msg.topic, msg.payload[:80])
        assert ING.quarantine(msg.topic, msg.payload, info.value).record_id == msg.key
        got[info.value.reason] += 1
    assert set(got) == set(REASONS)
    assert len({m.key for m in msgs}) == len(msgs)  # every message has its own key


def test_seeded_runs_repeat_and_differ() -> None:
    a = [(m.topic, m.payload) for m in _sim(seed=5, bad_ratio=0.1).take(300)]
    b = [(m.topic, m.payload) for m in _sim(seed=5, bad_ratio=0.1).take(300)]
    c = [(m.topic, m.payload) for m in _sim(seed=6, bad_ratio=0.1).take(300)]
    assert a == b and a != c


def test_topic_prefix() -> None:
    ing = make_ingestor(topic_prefix="run-42")
    for msg in _sim(seed=3, topic_prefix="run-42").take(200):
        assert msg.topic.startswith("run-42/")
        assert ing.parse(msg.topic, msg.payload).record_id == msg.key


@pytest.mark.parametrize("seed", [4, 7, 13])
def test_values_are_realistic_over_two_days(seed: int) -> None:
    sim = BarnSimulator.from_dir(FIRMWARE_DIR, seed=seed, herd_size=30, sensors_per_kind=1)
    by_hour: dict[str, defaultdict[int, list[float]]] = {
        k: defaultdict(list) for k in ("air", "tank", "rum", "water")
    }
    milk: list[tuple[float, float]] = []
    cows: dict[str, list[float]] = defaultdict(list)
    msg = sim.next()
    while msg.sim_ts < 1_748_753_880 + 2 * 86400:
        r = ING.parse(msg.topic, msg.payload)
        hour = int((msg.sim_ts % 86400) // 3600)
        if r.firmware == "barn-climate":
            by_hour["air"][hour].append(r.values["temperature_c"])
            assert 20 <= r.values["humidity_pct"] <= 100
        elif r.firmware == "bulk-tank":
            if not r.values["wash"] and r.values["level_l"] >= 50:
                by_hour["tank"][hour].append(r.values["milk_temp_c"])
        elif r.firmware == "neck-collar":
            by_hour["rum"][hour].append(r.values["rumination_min"])
        elif r.firmware == "water-flow":
            by_hour["water"][hour].append(r.values["flow_lpm"])
        elif r.firmware == "milk-meter":
            assert r.animal_id is not None
            cows[r.animal_id].append(r.values["yield_kg"])
            ecs = [r.values[f"conductivity_{q}"] for q in ("lf", "rf", "lr", "rr")]
            milk.append((r.values["yield_kg"], max(ecs)))
            assert 120 < r.values["duration_s"] < 1200
        msg = sim.next()
    mean = {k: {h: statistics.fmean(v) for h, v in d.items()} for k, d in by_hour.items()}
    assert mean["air"][15] > mean["air"][3] + 8  # afternoon warmer than night
    assert mean["tank"][3] < 4.0  # cooled overnight
    assert max(mean["tank"][5], mean["tank"][6]) > mean["tank"][3] + 0.5  # milking warms it
    assert mean["rum"][2] > mean["rum"][12]  # more rumination at night
    assert mean["water"][7] > 2 * mean["water"][2]  # drinking after milking
    assert len(cows) == 30 and all(len(v) == 4 for v in cows.values())  # 2 milkings a day
    assert 8 < statistics.fmean(y for y, _ in milk) < 20
    assert any(ec > 6.5 for _, ec in milk)  # some subclinical quarters
    assert statistics.median(ec for _, ec in milk) < 6.0


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        _sim(bad_ratio=1.5)
    with pytest.raises(ValueError):
        _sim(herd_size=0)


def test_bulk_tank_is_a_plausible_dx_cooler() -> None:
    """EN 13732 / PMO / EU: first milking into an empty tank, blend <= 10 degC,
    <= 4 degC within 3 h of each milking's start, thermostat 3.5-4 degC, wash
    right after the tanker."""
    sim = BarnSimulator.from_dir(FIRMWARE_DIR, seed=9, herd_size=60, sensors_per_kind=1)
    rows: list[tuple[float, dict[str, float]]] = []
    msg = sim.next()
    while msg.sim_ts < 1_748_753_880 + 2.2 * 86400:
        if msg.firmware == "bulk-tank":
            rows.append((msg.sim_ts, ING.parse(msg.topic, msg.payload).values))
        msg = sim.next()
    day0 = 1_748_736_000  # midnight of the first (even: tanker) day
    starts = [day0 + d * 86400 + h * 3600 for d in range(3) for h in (5.0, 17.0)]
    washes = [ts for ts, v in rows if v["wash"]]
    assert washes and all(v["level_l"] == 0 for _, v in rows if v["wash"])
    assert max(v["milk_temp_c"] for _, v in rows if v["wash"]) > 60  # hot alkaline wash
    assert 10 * 3600 <= washes[0] - day0 < 11 * 3600  # right after the 10:00 tanker
    for start in starts:
        if start > rows[-1][0] - 3 * 3600:
            break
        before = [v for ts, v in rows if ts < start][-1]
        during = [v for ts, v in rows if start <= ts < start + 5400]
        after = [v for ts, v in rows if start + 3 * 3600 - 300 <= ts < start + 3 * 3600]
        assert during[-1]["level_l"] > before["level_l"] + 300  # milk flowed in
        assert all(v["milk_temp_c"] <= 4.1 for v in after)  # cooled within 3 h
        if before["level_l"] == 0:  # first milking: warm milk, cooled while it comes
            assert max(v["milk_temp_c"] for v in during) > 30
        else:  # blend onto cooled milk stays below 10 degC
            assert max(v["milk_temp_c"] for v in during) < 10
    # Storage between milkings: the thermostat holds 3.5-4 degC; the agitator
    # runs with the compressor for minutes, not continuously.
    store = [v for ts, v in rows if (ts - day0) % 86400 > 21 * 3600 and v["level_l"] > 0]
    temps = [v["milk_temp_c"] for v in store]
    assert 3.3 < min(temps) and max(temps) < 4.2
    assert 0.05 < statistics.fmean(v["agitator"] for v in store) < 0.5
