"""Readings checked by hand (agent.central.validate._plain_reading) give exactly
the answers of the general pydantic path: the same accept / reject, the same
row (types included), the same reason."""

from __future__ import annotations

import copy
import random
from typing import Any

from agent.central.validate import (
    InvalidRecord,
    ValidRecord,
    _plain_reading,
    validate_record,
    validate_with_model,
)


def plain() -> dict[str, Any]:
    return {
        "record_id": "0123456789abcdef0123456789abcdef", "kind": "reading",
        "sensor_id": "collar-0007", "firmware": "neck-collar", "topic": "barn/collar/7",
        "values": {"activity": 251.0, "rumination_min": 7},
        "raw": {"activity": 250.5, "rumination_min": 7.0},
        "units": {"activity": "count", "rumination_min": "min"},
        "wall_ts": 1_764_000_000.25, "mono_ns": 123_456_789, "boot_id": "b-1",
        "clock_synced": True, "animal_id": "1007", "source_ts": 1_764_000_000,
        "msg_id": "m-1", "attributes": {"rssi": -61, "tags": ["a", {"b": None}]},
    }


# Values to put in a field (or a dict value / key): plain ones and every shape
# pydantic or the JSON check treats specially.
ODD: list[Any] = [
    None, True, False, 0, 1, -3, 2**63 - 1, 2**63, -(2**63) - 1, 1.5, float("nan"),
    float("inf"), "", "x", "x" * 128, "x" * 129, "x" * 257, "x" * 1025, "a\x00b", "\ud800",
    "é" * 128, "é" * 129, "1.5", "true", "a\n", [], [1.0], {}, {"k": 1.0}, {"k": "v"},
    {"k": True}, {"k": None}, {"k": float("nan")}, {"\x00": 1.0}, {"\udc00": "v"},
    {"k": {"deep": [1, 2]}}, {"k": 2**64}, 5.0, -0.0, 1e308,
]
FIELDS = ["record_id", "kind", "sensor_id", "firmware", "topic", "values", "raw", "units",
          "wall_ts", "mono_ns", "boot_id", "clock_synced", "animal_id", "source_ts", "msg_id",
          "attributes", "extra_field"]


def both(record: dict[str, Any]) -> tuple[str, str]:
    rid = record.get("record_id")
    record_id = rid if isinstance(rid, str) and rid and len(rid) <= 256 else "fallback"
    if record_id == "fallback":
        record = {**record, "record_id": record_id}
    fast = validate_record(3, copy.deepcopy(record))
    slow = validate_with_model(3, record_id, copy.deepcopy(record))
    return repr(fast), repr(slow)


def test_a_plain_reading_takes_the_fast_path_and_matches() -> None:
    record = plain()
    assert _plain_reading(record) is not None  # not vacuous: the hand-checked path ran
    fast, slow = both(record)
    assert fast == slow
    result = validate_record(0, plain())
    assert isinstance(result, ValidRecord)
    # ints in float fields become floats, as pydantic makes them
    assert repr(result.row["values"]["rumination_min"]) == "7.0"
    assert repr(result.row["source_ts"]) == "1764000000.0"


def test_every_field_with_every_odd_value_matches() -> None:
    seen_invalid = seen_valid = 0
    for field in FIELDS:
        for value in ODD:
            record = plain()
            record[field] = value
            fast, slow = both(record)
            assert fast == slow, (field, value)
            seen_invalid += "InvalidRecord" in fast
            seen_valid += "ValidRecord(" in fast and "InvalidRecord" not in fast
        record = plain()
        record.pop(field, None)
        fast, slow = both(record)
        assert fast == slow, ("missing", field)
    assert seen_invalid > 100 and seen_valid > 50


def test_dict_values_and_keys_match() -> None:
    for field in ("values", "raw", "units", "attributes"):
        for value in ODD:
            for key in ("k", "", "\x00", "\ud800", "é"):
                record = plain()
                record[field] = {**record[field], key: value}
                fast, slow = both(record)
                assert fast == slow, (field, key, value)


def test_random_mutations_match() -> None:
    rng = random.Random(10)
    for _ in range(3000):
        record = plain()
        for _ in range(rng.randint(1, 3)):
            field = rng.choice(FIELDS)
            if rng.random() < 0.15:
                record.pop(field, None)
            else:
                record[field] = rng.choice(ODD)
        fast, slow = both(record)
        assert fast == slow, record


def test_an_invalid_reading_keeps_the_pydantic_reason() -> None:
    record = plain()
    record["sensor_id"] = ""
    result = validate_record(0, record)
    assert isinstance(result, InvalidRecord)
    assert result.reason.startswith("invalid reading: sensor_id:")
