"""Calibration: applied at ingest, raw kept beside the corrected value, due dates."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.ingest.calibration import load_calibration_dir
from tests.helpers_ingest import CALIBRATION_DIR, make_ingestor

CLIMATE = b'{"boot":1,"seq":7,"t":20.0,"rh":50.0}'


def _write(folder: Path, text: str, name: str = "cal.yaml") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_offset_gain_and_polynomial_keep_raw(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "cal",
        """
devices:
  - firmware: barn-climate
    sensor_id: c1
    calibrated_on: 2025-01-01
    due: 2026-01-01
    fields:
      temperature_c: {offset: -0.5}
      humidity_pct: {gain: 0.9, offset: 2}
  - firmware: bulk-tank
    sensor_id: t1
    calibrated_on: 2025-01-01
    due: 2030-01-01
    fields:
      milk_temp_c: {polynomial: [0.1, 1.01, 0.002]}
""",
    )
    ing = make_ingestor(calibration_dir=folder)
    reading = ing.parse("barn/climate/c1", CLIMATE)
    assert reading.raw == {"temperature_c": 20.0, "humidity_pct": 50.0}
    assert reading.values == pytest.approx({"temperature_c": 19.5, "humidity_pct": 47.0})
    assert (
        reading.attributes["calibration_due_ts"]
        == dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    )
    tank = {"msg_id": "x-1", "temp": 4.0, "agitator": "on", "level_l": 100}
    tank_reading = ing.parse("barn/tank/t1", json.dumps(tank).encode())
    assert tank_reading.raw["milk_temp_c"] == 4.0
    assert tank_reading.values["milk_temp_c"] == pytest.approx(0.1 + 1.01 * 4 + 0.002 * 16)
    assert tank_reading.values["level_l"] == 100  # uncalibrated field passes through
    # Another sensor on the same firmware is not touched.
    other = ing.parse("barn/climate/c2", CLIMATE)
    assert other.values == other.raw and "calibration_due_ts" not in other.attributes


def test_overdue_query() -> None:
    table = load_calibration_dir(CALIBRATION_DIR)
    assert len(table) == 2
    early = dt.datetime(2025, 12, 1, tzinfo=dt.UTC).timestamp()
    late = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    assert table.overdue(early) == []
    assert [(e.firmware, e.sensor_id) for e in table.overdue(late)] == [
        ("barn-climate", "climate-01")
    ]
    assert make_ingestor(calibration_dir=CALIBRATION_DIR).overdue(late) == table.overdue(late)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("devices: [{firmware: barn-climate}]", "devices.0.sensor_id"),
        (
            (
                "devices: [{firmware: barn-climate, sensor_id: a, calibrated_on: 2025-01-01,"
                " due: 2024-01-01, fields: {temperature_c: {offset: 1}}}]"
            ),
            "due is before calibrated_on",
        ),
        (
            (
                "devices: [{firmware: barn-climate, sensor_id: a, calibrated_on: 2025-01-01,"
                " due: 2026-01-01, fields: {temperature_c: {offset: 1, polynomial: [1]}}}]"
            ),
            "devices.0.fields.temperature_c",
        ),
        ("devices: [{: }", "not valid YAML"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    folder = _write(tmp_path / "cal", text, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_calibration_dir(folder)
    assert "bad.yaml" in str(info.value) and needle in str(info.value)


def test_unknown_firmware_or_field_is_a_config_error(tmp_path: Path) -> None:
    base = "devices: [{{firmware: {fw}, sensor_id: a, calibrated_on: 2025-01-01, due: 2026-01-01, fields: {{{field}: {{offset: 1}}}}}}]"
    folder = _write(tmp_path / "a", base.format(fw="nope", field="temperature_c"))
    with pytest.raises(ConfigError, match="unknown firmware"):
        make_ingestor(calibration_dir=folder)
    folder = _write(tmp_path / "b", base.format(fw="barn-climate", field="wind"))
    with pytest.raises(ConfigError, match="wind"):
        make_ingestor(calibration_dir=folder)
    folder = _write(tmp_path / "c", base.format(fw="barn-climate", field="seq"))
    with pytest.raises(ConfigError, match="seq"):
        make_ingestor(calibration_dir=folder)


def test_duplicate_device_across_files(tmp_path: Path) -> None:
    text = "devices: [{firmware: barn-climate, sensor_id: a, calibrated_on: 2025-01-01, due: 2026-01-01, fields: {temperature_c: {offset: 1}}}]"
    folder = _write(tmp_path / "cal", text, "one.yaml")
    _write(folder, text, "two.yaml")
    with pytest.raises(ConfigError, match="also calibrated in"):
        load_calibration_dir(folder)
