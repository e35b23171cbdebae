"""Records' to_dict: the same dict dataclasses.asdict gives (keys in the same
order, nothing shared with the record), built without asdict's deep copies."""

from __future__ import annotations

import json
from collections import namedtuple
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from agent.records import Alert, Event, Identification, Reading, Stamp
from agent.records.types import BodyCondition, Inference, MilkCheck, stable_id
from agent.store.inserts import encode, encode_body

STAMP = Stamp(1_700_000_000.25, 123_456_789, "boot-1", True)
Point = namedtuple("Point", "x y")


@dataclass
class Box:
    name: str
    sizes: list[float]


def reference(record: Any) -> dict[str, Any]:
    data = asdict(record)
    data.update(data.pop("stamp"))
    data["kind"] = str(record.kind)
    return data


def records() -> list[Any]:
    return [
        Reading("r1", "collar-0001", "neck-collar", "barn/collar/collar-0001",
                {"activity": 82.0, "battery_v": 3.555}, {"activity": 82.0, "battery_v": 3.5},
                {"activity": "counts", "battery_v": "V"}, STAMP, animal_id="1001",
                msg_id="25:4583", attributes={"flags": 0, "mode": "eco", "calibration_due_ts": 1.5}),
        Reading("r2", "tank-01", "bulk-tank", "barn/tank/tank-01", {}, {}, {}, STAMP),
        Alert("a1", "cooling", "critical", "raised", "tank warm", STAMP, sensor_id="tank-01",
              details={"nested": {"deep": [1, 2.5, {"x": None}]}, "pair": (1, "a"),
                       "point": Point(1, 2), "box": Box("b", [1.0, 2.0]), "set": {3}}),
        Event("e1", "restart", "after a crash", STAMP, data={"list": [[1], [2, [3]]]}),
        Inference("i1", "m", "1.0", "cam-1", {"p": [0.1, 0.9]}, STAMP, latency_ms=3.5),
        Identification("id1", "cam-1", "v1", "identified", 0.9, STAMP, 1.0, 2.0,
                       tag_number="1234", flags=["rfid"], evidence={"reads": [("1234", 0.9)]},
                       model_versions={"det": "1"}),
        BodyCondition("b1", "cam-2", "v2", 3.25, 3.0, 3.5, 0.8, STAMP, "bcs", "1.0",
                      details={"rump": 0.3}),
        MilkCheck("m1", "cam-3", "normal", 0.97, STAMP, "milk", "1.0", quarter="LF",
                  scores={"normal": 0.97, "blood": 0.03}),
    ]


@pytest.mark.parametrize("record", records(), ids=lambda r: type(r).__name__)
def test_to_dict_equals_asdict_form(record: Any) -> None:
    got = record.to_dict()
    want = reference(record)
    assert got == want
    assert list(got) == list(want)  # key order, so stored bodies are byte-identical
    assert json.dumps(got, default=str) == json.dumps(want, default=str)
    assert encode_body(record) == json.dumps(want, separators=(",", ":"), default=str)


def test_to_dict_shares_nothing_mutable_with_the_record() -> None:
    alert = records()[2]
    data = alert.to_dict()
    data["details"]["nested"]["deep"][2]["x"] = "changed"
    data["details"]["box"]["sizes"].append(9.0)
    assert alert.details["nested"]["deep"][2]["x"] is None
    assert alert.details["box"].sizes == [1.0, 2.0]
    reading = records()[0]
    rd = reading.to_dict()
    rd["values"]["activity"] = -1.0
    assert reading.values["activity"] == 82.0


def test_encode_size_is_the_body_bytes_with_non_ascii_text() -> None:
    reading = Reading("r3", "s", "f", "t", {"v": 1.0}, {"v": 1.0}, {"v": "°C"}, STAMP,
                      attributes={"note": "Kuh Ärmel"})
    enc = encode(reading)
    assert enc.body is not None
    assert enc.size == len(enc.body.encode())
    assert "Kuh" in enc.body


def test_stable_id_is_length_prefixed_sha256() -> None:
    import hashlib

    digest = hashlib.sha256()
    for part in (b"topic", b"payload"):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    assert stable_id("topic", b"payload") == digest.hexdigest()[:32]
    assert stable_id("ab", "c") != stable_id("a", "bc")
