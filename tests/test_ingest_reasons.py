"""Every reason code Ingestor.parse gives, and the readings it makes."""

from __future__ import annotations

import json
import math

import pytest

from agent.errors import InvalidPayload
from agent.ingest import REASONS, record_id_for
from agent.ingest.decode import crc16_ccitt_false
from agent.records.types import stable_id
from tests.helpers_ingest import BOOT, FIXTURES, FakeClock, make_ingestor

ING = make_ingestor()
CLIMATE = "barn/climate/climate-01"
GOOD = {"boot": 1, "seq": 7, "t": 18.5, "rh": 70.0}


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _reason(topic: str, payload: bytes, ingestor=ING) -> str:
    with pytest.raises(InvalidPayload) as info:
        ingestor.parse(topic, payload)
    return info.value.reason


def test_fixture_payloads_parse_to_expected_values() -> None:
    cases = json.loads((FIXTURES / "cases.json").read_text())
    assert {c["firmware"] for c in cases} == {s.firmware for s in ING.specs}
    for case in cases:
        reading = ING.parse(case["topic"], (FIXTURES / case["file"]).read_bytes())
        assert reading.firmware == case["firmware"]
        assert reading.msg_id == case["msg_id"]
        assert reading.animal_id == case.get("animal_id")
        assert reading.values == pytest.approx(case["values"])
        assert reading.raw == reading.values  # nothing calibrated here
        kind = next(s.kind for s in ING.specs if s.firmware == case["firmware"])
        assert reading.record_id == record_id_for(kind, reading.sensor_id, case["msg_id"])
        assert set(reading.units) == set(reading.values)
        if case["firmware"] == "rfid-reader":  # the EID stays text: leading zeros kept
            assert reading.attributes["eid"] == "040000123456789"


def test_stamp_comes_from_the_injected_clock() -> None:
    clock = FakeClock(wall=99.0, mono_ns=123, synced=False)
    reading = make_ingestor(clock=clock).parse(CLIMATE, _j(GOOD))
    assert (reading.stamp.wall_ts, reading.stamp.mono_ns) == (99.0, 123)
    assert reading.stamp.boot_id == BOOT and reading.stamp.clock_synced is False
    clock.is_synced = True
    assert make_ingestor(clock=clock).parse(CLIMATE, _j(GOOD)).stamp.clock_synced is True


def test_record_id_is_stable_and_per_kind() -> None:
    a = ING.parse(CLIMATE, _j(GOOD))
    # Same message id, other key order and an extra key: the same record (a redelivery).
    b = ING.parse(CLIMATE, b'{"rh": 70.0, "t": 18.5, "seq": 7, "boot": 1, "x": 1}')
    assert a.record_id == b.record_id
    assert ING.parse(CLIMATE, _j({**GOOD, "seq": 8})).record_id != a.record_id
    assert ING.parse(CLIMATE, _j({**GOOD, "boot": 2})).record_id != a.record_id
    water = ING.parse("barn/water/climate-01", b'{"boot":1,"seq":7,"flow":1,"total":2}')
    assert water.record_id != a.record_id


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (CLIMATE, b"{" + b" " * 70_000 + b"}", "too_large"),
        ("barn/stable/climate-01", _j(GOOD), "unknown_topic"),
        ("other/climate/climate-01", _j(GOOD), "unknown_topic"),
        ("", b"{}", "unknown_topic"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":18.5,"rh":70,"n":"\xff"}', "bad_encoding"),
        (CLIMATE, b'{"boot":1,', "bad_json"),
        (CLIMATE, b'{"boot":1} x', "bad_json"),
        (CLIMATE, b"", "bad_json"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":18.5,"rh":70,"x":[[[[[[[[[1]]]]]]]]]}', "too_deep"),
        (CLIMATE, b"[" * 5000 + b"]" * 5000, "too_deep"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":18.5,"t":19.0,"rh":70}', "duplicate_key"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":NaN,"rh":70}', "non_finite"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":-Infinity,"rh":70}', "non_finite"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":1e400,"rh":70}', "non_finite"),
        (CLIMATE, b"[1, 2]", "bad_type"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":"18.5","rh":70}', "bad_type"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":true,"rh":70}', "bad_type"),
        (CLIMATE, b'{"boot":1,"seq":7.5,"t":18.5,"rh":70}', "bad_type"),
        (CLIMATE, b'{"boot":1,"seq":7,"rh":70}', "missing_field"),
        (CLIMATE, b'{"boot":1,"t":18.5,"rh":70}', "missing_field"),
        (CLIMATE, b'{"boot":1,"seq":7,"t":null,"rh":70}', "missing_field"),
        ("barn/climate/..", _j(GOOD), "bad_id"),
        ("barn/climate/a/b", _j(GOOD), "bad_id"),
        ("barn/climate/a+b", _j(GOOD), "bad_id"),
        ("barn/climate/#", _j(GOOD), "bad_id"),
        ("barn/climate/a\x00b", _j(GOOD), "bad_id"),
        ("barn/climate/<script>", _j(GOOD), "bad_id"),
        ("barn/climate/" + "x" * 65, _j(GOOD), "bad_id"),
        ("barn/climate/", _j(GOOD), "bad_id"),
        (CLIMATE, _j({**GOOD, "t": 60.5}), "out_of_range"),
        (CLIMATE, _j({**GOOD, "rh": -0.1}), "out_of_range"),
        (CLIMATE, _j({**GOOD, "seq": -1}), "out_of_range"),
        (CLIMATE, _j({**GOOD, "t": 10**400}), "out_of_range"),
    ],
)
def test_json_reasons(topic: str, payload: bytes, reason: str) -> None:
    assert _reason(topic, payload) == reason


def test_size_is_checked_before_anything_else() -> None:
    big = b"\xff" * 70_000  # not UTF-8 either, and the topic is unknown
    assert _reason("no/such/topic", big) == "too_large"
    small = make_ingestor(max_payload_bytes=64)
    assert _reason(CLIMATE, _j({**GOOD, "note": "x" * 40}), small) == "too_large"
    assert small.parse(CLIMATE, b'{"boot":1,"seq":7,"t":1,"rh":2}').values["temperature_c"] == 1


def test_depth_limit_follows_config() -> None:
    payload = b'{"boot":1,"seq":7,"t":18.5,"rh":70,"x":[[1]]}'  # depth 3
    assert make_ingestor(max_json_depth=3).parse(CLIMATE, payload).msg_id == "1:7"
    assert _reason(CLIMATE, payload, make_ingestor(max_json_depth=2)) == "too_deep"


def test_tank_enum_and_string_ids() -> None:
    topic = "barn/tank/tank-01"
    base = {"msg_id": "a81f-000001", "temp": 3.9, "agitator": "off", "level_l": 10}
    reading = ING.parse(topic, _j(base))
    assert reading.values["agitator"] == 0.0 and reading.attributes["agitator"] == "off"
    assert _reason(topic, _j({**base, "agitator": "spinning"})) == "bad_type"
    assert _reason(topic, _j({**base, "msg_id": "../../etc"})) == "bad_id"
    assert _reason(topic, _j({**base, "msg_id": "<b>x</b>"})) == "bad_id"
    assert _reason(topic, _j({**base, "msg_id": "a" * 65})) == "bad_id"
    assert _reason(topic, _j({**base, "msg_id": True})) == "bad_type"
    assert _reason(topic, _j({**base, "wash": 1})) == "bad_type"


MILK = "barn/milk/mm-01"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"MM1,3,1877,1748754012,1042,1432,512,498,530,505,412\r\n", None),
        (b"MM1,3,1877,,1042,1432,512,498,530,505,412", None),  # ts is optional
        (b"MM2,3,1877,1748754012,1042,1432,512,498,530,505,412", "bad_frame"),
        (b"MM1,3,1877,1748754012,1042,1432,512,498,530,505,412,9", "bad_frame"),
        (b"MM1,3,1877,1748754012,1042,1432,512,498,530,505", "missing_field"),
        (b"MM1,3,1877,1748754012,1042,,512,498,530,505,412", "missing_field"),
        (b"MM1,3,1877,1748754012,1042,1432,nan,498,530,505,412", "non_finite"),
        (b"MM1,3,1877,1748754012,1042,1432,5.12,498,530,505,412", "bad_type"),
        (b"MM1,3,1877,1748754012,1042,1432, 512,498,530,505,412", "bad_type"),
        (b"MM1,3,1877,1748754012,1042,1432,\xd9\xa5,498,530,505,412", "bad_type"),
        (b"MM1,3,1877,1748754012,10.42,1432,512,498,530,505,412", "bad_id"),
        (b"MM1,3,1877,1748754012,1042,6001,512,498,530,505,412", "out_of_range"),
        (b"MM1,3,1877,1748754012,1042\xff,1432,512,498,530,505,412", "bad_encoding"),
    ],
)
def test_csv_reasons(payload: bytes, reason: str | None) -> None:
    if reason is None:
        assert ING.parse(MILK, payload).animal_id == "1042"
    else:
        assert _reason(MILK, payload) == reason


COLLAR = "barn/collar/collar-0001"


def _frame(**changes: int) -> bytes:
    from agent.ingest.decode import encode_binary

    spec = next(s for s in ING.specs if s.format == "binary")
    assert spec.binary is not None
    values = {"flags": 1, "boot": 3, "seq": 99, "cow": 1001, "activity": 250, "rumination": 6}
    values["battery"] = 3300
    values.update(changes)
    return encode_binary(spec.binary, values)


def test_binary_frame_and_reasons() -> None:
    reading = ING.parse(COLLAR, _frame())
    assert reading.values == pytest.approx({"activity": 250, "rumination_min": 6, "battery_v": 3.3})
    assert reading.animal_id == "1001" and reading.msg_id == "3:99"
    assert reading.attributes["flags"] == 1
    good = _frame()
    assert _reason(COLLAR, good[:-1]) == "bad_frame"
    assert _reason(COLLAR, good + b"\0") == "bad_frame"
    assert _reason(COLLAR, b"XX" + good[2:]) == "bad_frame"
    flipped = bytearray(good)
    flipped[14] ^= 0x01
    assert _reason(COLLAR, bytes(flipped)) == "bad_frame"  # CRC catches one bit
    assert _reason(COLLAR, _frame(version=2)) == "bad_frame"
    assert _reason(COLLAR, _frame(rumination=16)) == "out_of_range"
    assert _reason(COLLAR, _frame(cow=0)) == "out_of_range"
    # The CRC is the standard CRC-16/CCITT-FALSE: check value of "123456789".
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_every_reason_is_covered_here() -> None:
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    for reason in REASONS:
        assert f'"{reason}"' in source


def test_quarantine_keeps_payload_and_never_raises() -> None:
    payload = b'{"boot":1,"seq":7,"t":NaN,"rh":70}'
    try:
        ING.parse(CLIMATE, payload)
    except InvalidPayload as err:
        entry = ING.quarantine(CLIMATE, payload, err)
    assert entry.reason == "non_finite" and entry.payload == payload
    assert entry.record_id == stable_id(CLIMATE, payload) and entry.stamp.boot_id == BOOT
    internal = ING.quarantine(CLIMATE, payload, KeyError("boom"))
    assert internal.reason == "internal" and "KeyError" in internal.detail
    big = b"x" * 200_000
    entry = ING.quarantine(CLIMATE, big, InvalidPayload("too_large", "big"))
    assert len(entry.payload) == 64 * 1024 and "200000" in entry.detail
    weird = ING.quarantine("a\udcffb", None, ValueError("x"))  # type: ignore[arg-type]
    assert weird.reason == "internal" and weird.payload == b""


def test_parse_is_fast_enough() -> None:
    import time

    payload = _j({**GOOD, "ts": 1748753940, "bat": 3.0})
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        ING.parse(CLIMATE, payload)
    per = (time.perf_counter() - start) / n
    assert per < 200e-6, f"{per * 1e6:.1f} us per message"  # bench target is 50 us
    assert not math.isnan(per)
