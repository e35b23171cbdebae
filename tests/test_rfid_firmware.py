"""The RFID/EID reader firmware: a read through the real Ingestor keeps its EID as text,
and the vision pipeline's tracker takes it from there."""

from __future__ import annotations

import pytest

from agent.config.model import EartagConfig
from agent.errors import InvalidPayload
from agent.ingest.firmware import load_firmware
from agent.records.types import Stamp
from agent.vision.eartag.register import Animal, HerdRegister
from agent.vision.eartag.types import TagReading
from agent.vision.eartag.visit import VisitTracker
from tests.helpers_ingest import FIRMWARE_DIR, FakeClock, make_ingestor

SPEC = FIRMWARE_DIR / "rfid_reader.yaml"


def test_spec_loads() -> None:
    spec = load_firmware(SPEC)
    assert spec.kind == "rfid" and spec.topic == "barn/rfid/{sensor_id}"
    assert [f.name for f in spec.msg_id_fields] == ["boot", "seq"]
    assert "barn/rfid/+" in make_ingestor().subscriptions()


def test_sample_payload_keeps_the_eid_as_text() -> None:
    clock = FakeClock(wall=1_780_000_000.0, mono_ns=42_000_000_000, synced=True)
    payload = b'{"boot": 4, "seq": 1022, "ts": 1748753940, "eid": "040000123456789", "ant": 1, "rssi": -52}'
    reading = make_ingestor(clock=clock).parse("barn/rfid/lane-1", payload)
    assert reading.firmware == "rfid-reader" and reading.sensor_id == "lane-1"
    assert reading.attributes == {"eid": "040000123456789"}  # leading zero kept
    assert reading.values == {"antenna": 1.0, "rssi_dbm": -52.0}
    assert reading.msg_id == "4:1022" and reading.source_ts == 1748753940.0
    assert reading.stamp.mono_ns == 42_000_000_000


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"boot": 4, "seq": 1}', "missing_field"),
        (b'{"boot": 4, "seq": 1, "eid": "982 000123456789"}', "bad_id"),
        (b'{"boot": 4, "seq": 1, "eid": 9.8e14}', "bad_type"),
        (b'{"boot": 4, "seq": 1, "eid": "982000123456789", "ant": 99}', "out_of_range"),
    ],
)
def test_bad_reads_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidPayload) as err:
        make_ingestor().parse("barn/rfid/lane-1", payload)
    assert err.value.reason == reason


def test_a_read_through_ingest_cross_checks_a_visit() -> None:
    """How the runtime wires it: a reading from firmware rfid-reader goes to the
    tracker of the camera whose ``station`` is the reading's sensor id."""
    S = 1_000_000_000
    clock = FakeClock(wall=1_780_000_000.0, mono_ns=100 * S, synced=True)
    # A reader that sends the EID as a JSON number loses the leading zero: restored.
    reading = make_ingestor(clock=clock).parse(
        "barn/rfid/lane-1", b'{"boot": 4, "seq": 7, "eid": 40000123456789}'
    )
    assert reading.attributes["eid"] == "40000123456789"
    register = HerdRegister([Animal("AT-1", "2386", "040000123456789")])
    tracker = VisitTracker(
        EartagConfig(),
        "lane-cam",
        boot_id="b",
        stamp=lambda: Stamp(clock.wall_ts, clock.mono_ns, "b", True),
        station=reading.sensor_id,
        register=register,
    )
    tracker.note_rfid(reading.attributes["eid"], reading.stamp.mono_ns, reading.stamp.wall_ts)
    for i in range(3):
        tracker.add(100 * S + i * S // 5, clock.wall_ts, i, [TagReading("2386", 0.95, (0, 0, 9, 9))])
    (result,) = tracker.flush()
    ident = result.identification
    assert ident.status == "identified" and ident.animal_id == "AT-1"
    assert ident.rfid_agrees is True and ident.rfid_eid == "040000123456789"
