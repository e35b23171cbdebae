"""The batch body splices stored bodies in as they are: the receiver must read the
same records, and compute the same resend digest, as from the model's encoding
that every record took before (validate with ``Batch``, dump, encode)."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from typing import Any

from helpers_store import stamp

from agent.records import Alert, Event, Reading, Stamp
from agent.records.protocol import PROTOCOL_VERSION, Batch, dump_record
from agent.store.inserts import encode
from agent.store.outbox import wire_text
from agent.sync.signing import encode_body, splice_body

ENVELOPE: dict[str, Any] = {
    "protocol": PROTOCOL_VERSION, "device_id": "gw-1", "epoch": "e1", "seq": 3,
    "batch_id": "gw-1:e1:3", "created_mono_ns": 12, "sent_wall_ts": 1.5e9,
    "clock_synced": True,
}


def model_body(bodies: list[str]) -> bytes:
    """The batch body as the uploader built it before splicing."""
    records = [dump_record(json.loads(b)) for b in bodies]
    wire = Batch.model_validate({**ENVELOPE, "records": records})
    return encode_body(wire.model_dump(mode="json"))


def spliced_body(bodies: list[str]) -> bytes:
    envelope = Batch.model_validate({**ENVELOPE, "records": []}).model_dump(mode="json")
    return splice_body(envelope, [wire_text(b) for b in bodies])


def central_view(body: bytes) -> tuple[Any, str]:
    """What the receiver parses, and its resend digest (agent/central/app.py)."""
    data = json.loads(gzip.decompress(body))
    text = json.dumps([data["epoch"], data["seq"], data["records"]], sort_keys=True,
                      separators=(",", ":"), allow_nan=True)
    return data, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def typed(value: Any) -> Any:
    """``value`` with every number tagged by its type (1 == 1.0 in Python)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def bodies() -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(60):
        st = Stamp(1.7e9 + rng.random() * 1e6, rng.randrange(1 << 60), "boot-1", i % 3 != 0)
        out.append(encode(Reading(
            record_id=f"r-{i}", sensor_id=f"s{i % 5}", firmware="collar", topic="t/é/ü",
            values={"temp": rng.uniform(35, 41), "n": float(i)}, raw={"temp": 38.5},
            units={"temp": "°C"}, stamp=st,
            animal_id=None if i % 2 else f"cow-{i}",
            source_ts=None if i % 4 else 1.7e9 + i,
            msg_id=None if i % 3 else f"m{i}",
            attributes={"nested_null": None, "list": [1, None, "x\"{}[]"]} if i % 5 == 0
            else {},
        ), {"boot-1": 5.0} if i % 7 == 0 else None).body or "")
    out.append(encode(Alert(record_id="a-1", rule="cooling", severity="warning",
                            state="raised", message="tank {warm}", stamp=stamp(),
                            sensor_id=None, animal_id="cow-1")).body or "")
    out.append(encode(Event(record_id="e-1", event="x", detail="d", stamp=stamp(),
                            data={"k": None, "v": 1})).body or "")
    # Stored text the model would change: NaN (stored when validation let it past),
    # an integral wall time, a bad envelope type. Those take the model's path.
    out.append('{"record_id":"q-1","kind":"reading","values":{"t":NaN},"wall_ts":1.0,'
               '"mono_ns":1,"boot_id":"b","clock_synced":true,"animal_id":null}')
    out.append('{"record_id":"q-2","kind":"reading","values":{},"wall_ts":1700000000,'
               '"mono_ns":1,"boot_id":"b","clock_synced":false}')
    out.append('{"record_id":"q-3","kind":"reading","values":{},"wall_ts":1.5,'
               '"mono_ns":1.0,"boot_id":"b","clock_synced":1}')
    return out


def test_receiver_reads_the_same_batch_and_digest() -> None:
    stored = bodies()
    old, new = central_view(model_body(stored)), central_view(spliced_body(stored))
    assert typed(new[0]) == typed(old[0])
    assert new[1] == old[1]


def test_plain_bodies_are_spliced_verbatim_and_nulls_dropped() -> None:
    stored = bodies()
    plain = [b for b in stored if ":null" not in b and "NaN" not in b and '"q-' not in b]
    assert plain, "the sample has bodies without nulls"
    for body in plain:
        assert wire_text(body) is body  # not decoded and encoded again
    with_null = next(b for b in stored if '"animal_id":null' in b)
    wire = wire_text(with_null)
    assert '"animal_id":null' not in wire
    assert json.loads(wire) == dump_record(json.loads(with_null))
    # Nested nulls are data, not absent fields: kept.
    nested = next(b for b in stored if '"nested_null":null' in b)
    assert '"nested_null":null' in wire_text(nested)


def test_nulls_cut_from_the_text_equal_the_reencoded_record() -> None:
    cases = [
        '{"a":null}',
        '{"a":null,"b":1}',
        '{"b":1,"a":null}',
        '{"b":1,"a":null,"c":{"a":null}}',  # the same member nested: encoded again
        '{"b":"\\"a\\":null","a":null}',  # inside a string
        '{"x\\"a":{"y\\"a":null},"a":null,"\\u00e9":null}',
    ]
    envelope = ',"record_id":"r","kind":"k","wall_ts":1.5,"mono_ns":1,"boot_id":"b",' \
               '"clock_synced":true}'
    for case in cases:
        body = case[:-1] + ("," if case != "{}" else "") + envelope[1:]
        body = body.replace("{,", "{")
        assert wire_text(body) == json.dumps(dump_record(json.loads(body)),
                                             separators=(",", ":")), body


def test_a_number_that_overflows_to_infinity_takes_the_models_path() -> None:
    # SQLite's JSON functions write infinity as 9e999: spliced as it is, central
    # would read inf and refuse the record; the model's path sends null.
    stored = next(b for b in bodies() if ":null" not in b and "NaN" not in b)
    data = json.loads(stored)
    data["attributes"] = {"x": 1.0}
    body = json.dumps(data, separators=(",", ":")).replace('"x":1.0', '"x":9e999')
    wire = json.loads(wire_text(body))
    assert wire["attributes"]["x"] is None
    assert central_view(spliced_body([body]))[0]["records"][0]["attributes"]["x"] is None


def test_a_huge_number_in_any_number_position_takes_the_models_path() -> None:
    stored = next(b for b in bodies() if ":null" not in b and "NaN" not in b)
    data = json.loads(stored)
    for spelled in ('{"x":9e999}', '{"x": -1.5E+400}', '{"x":[1,2e308]}'):
        data["attributes"] = {"x": 0.0}
        body = json.dumps(data, separators=(",", ":")).replace('{"x":0.0}', spelled)
        assert "null" in wire_text(body), spelled


def test_a_hex_id_that_looks_like_an_exponent_is_spliced_as_stored() -> None:
    # "...5e712..." inside a string is not a number: the stored text goes as it is
    # (the model's path re-encodes, which costs several times as much).
    stored = next(b for b in bodies() if ":null" not in b and "NaN" not in b)
    data = json.loads(stored)
    data["record_id"] = "de3cc12b3357182211465e712dc24e02"
    body = json.dumps(data, separators=(",", ":"))
    assert wire_text(body) is body
