"""Detection in the runtime: scores ride with each reading, skipped keys get none,
and learnt state survives a restart through the buffer."""

from __future__ import annotations

import math
from pathlib import Path

from helpers_store import make_writer

from agent.clock import SystemClock
from agent.config.model import DetectConfig
from agent.records import Reading, Stamp
from agent.runtime.detection import Detection


def _reading(i: int) -> Reading:
    temp = 4.0 + 0.5 * math.sin(i / 10.0) + (6.0 if i == 380 else 0.0)
    return Reading(
        record_id=f"r{i}", sensor_id="tank-1", firmware="bulk-tank", topic="barn/tank/tank-1",
        values={"milk_temp_c": temp, "agitator": float(i % 2)},
        raw={"milk_temp_c": temp, "agitator": float(i % 2)},
        units={"milk_temp_c": "degC", "agitator": ""},
        stamp=Stamp(1_800_000_000.0 + 60 * i, i * 60_000_000_000, "boot", True),
        source_ts=1_800_000_000.0 + 60 * i,
    )


def test_scores_attach_to_readings_and_skip_states() -> None:
    detection = Detection(DetectConfig(), SystemClock())
    readings = [_reading(i) for i in range(400)]
    for r in readings:
        detection.on_reading(r)
    scores = [r.attributes["anomaly"]["milk_temp_c"] for r in readings]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all("agitator" not in r.attributes["anomaly"] for r in readings)
    # The one spike stands out from the readings around it.
    assert scores[380] > 0.5 > max(scores[300:379])


def test_state_survives_a_restart_through_the_buffer(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    writer = make_writer(path)
    first = Detection(DetectConfig(), SystemClock())
    for i in range(300):
        first.on_reading(_reading(i))
    first.save(writer, "boot")
    writer.close()

    second = Detection(DetectConfig(), SystemClock())
    second.restore(path)
    fresh = Detection(DetectConfig(), SystemClock())
    later = [_reading(i) for i in range(300, 400)]
    for r in later:
        first.on_reading(r)
        expected = r.attributes["anomaly"]
        twin = _reading(int(r.record_id[1:]))
        second.on_reading(twin)
        assert twin.attributes["anomaly"] == expected  # restored: identical scores
    cold = _reading(300)
    fresh.on_reading(cold)
    assert cold.attributes["anomaly"]["milk_temp_c"] == 0.0  # a cold start is still warming up


def test_cad_ose_streams_are_binned_by_the_firmware_range() -> None:
    asked: list[tuple[str, str, str]] = []

    def value_range(firmware: str, sensor_id: str, metric: str) -> tuple[float, float]:
        asked.append((firmware, sensor_id, metric))
        return (2.0, 7.0)

    detection = Detection(DetectConfig(anomaly_detector="cad_ose"), SystemClock(),
                          value_range=value_range)
    readings = [_reading(i) for i in range(400)]
    for r in readings:
        detection.on_reading(r)
    cad = detection.anomaly._detectors[("tank-1", "milk_temp_c")].cad  # type: ignore[union-attr]
    assert (cad.lo, cad.hi) == (2.0, 7.0)
    assert ("bulk-tank", "tank-1", "milk_temp_c") in asked
    assert all(0.0 <= r.attributes["anomaly"]["milk_temp_c"] <= 1.0 for r in readings)
