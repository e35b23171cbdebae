"""Firmware specs: the shipped ones load; bad ones name the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.ingest.firmware import load_firmware_dir
from tests.helpers_ingest import FIRMWARE_DIR, make_ingestor


def test_shipped_firmware() -> None:
    specs = {s.kind: s for s in load_firmware_dir(FIRMWARE_DIR)}
    assert set(specs) == {"climate", "tank", "milk", "collar", "water", "rfid"}
    assert {s.format for s in specs.values()} == {"json", "csv", "binary"}
    for spec in specs.values():
        assert spec.msg_id_fields, f"{spec.firmware} has no device message id (R1)"
    collar = specs["collar"].binary
    assert collar is not None and collar.length == 22


def test_subscriptions_cover_every_firmware_and_follow_prefix() -> None:
    assert sorted(make_ingestor().subscriptions()) == [
        "barn/climate/+",
        "barn/collar/+",
        "barn/milk/+",
        "barn/rfid/+",
        "barn/tank/+",
        "barn/water/+",
    ]
    ing = make_ingestor(topic_prefix="t-123")
    assert all(s.startswith("t-123/") for s in ing.subscriptions())
    payload = b'{"boot":1,"seq":7,"t":18.5,"rh":70}'
    assert ing.parse("t-123/climate/c1", payload).sensor_id == "c1"


def _copy_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    folder = tmp_path / "fw"
    shutil.copytree(FIRMWARE_DIR, folder)
    path = folder / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return folder


@pytest.mark.parametrize(
    ("name", "old", "new", "needles"),
    [
        (
            "barn_climate.yaml",
            "sampling_period_s: 60",
            "sampling_period_s: -1",
            ["sampling_period_s"],
        ),
        (
            "barn_climate.yaml",
            "unit: degC, range: [-40, 60]",
            "unit: degC, range: [60, -40]",
            ["fields.3", "range"],
        ),
        (
            "barn_climate.yaml",
            "topic: barn/climate/{sensor_id}",
            "topic: barn/climate/x",
            ["sensor_id"],
        ),
        ("barn_climate.yaml", "format: json", "format: xml", ["format"]),
        ("barn_climate.yaml", "kind: climate", "kind: climate\ncolour: red", ["colour"]),
        (
            "neck_collar.yaml",
            "{name: crc, struct: H, offset: 20}",
            "{name: crc, struct: H, offset: 21}",
            ["binary", "offset"],
        ),
        (
            "neck_collar.yaml",
            "{name: cow, struct: I, offset: 10}",
            "{name: cow, struct: Z, offset: 10}",
            ["binary.layout.5", "struct code"],
        ),
        (
            "milk_meter.yaml",
            "columns: [boot, seq, ts, cow,",
            "columns: [boot, seq, ts,",
            ["csv columns", "cow"],
        ),
        ("bulk_tank.yaml", "firmware: bulk-tank", "firmware: barn-climate", ["also defined"]),
        (
            "water_flow.yaml",
            "topic: barn/water/{sensor_id}",
            "topic: barn/climate/{sensor_id}",
            ["also used"],
        ),
    ],
)
def test_bad_specs_name_file_and_key(
    tmp_path: Path, name: str, old: str, new: str, needles: list[str]
) -> None:
    folder = _copy_with(tmp_path, name, old, new)
    with pytest.raises(ConfigError) as info:
        load_firmware_dir(folder)
    message = str(info.value)
    assert str(folder) in message
    for needle in needles:
        assert needle in message


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no firmware"):
        load_firmware_dir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_firmware_dir(tmp_path / "nope")


def test_shipped_yaml_parses_the_same_with_and_without_libyaml() -> None:
    """The ingest parses firmware and calibration YAML with libyaml where PyYAML
    has it; every shipped file must give the same data as the pure loader."""
    from pathlib import Path

    import yaml

    from agent.ingest.firmware import safe_load

    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "firmware_configs").glob("*.yaml")) + sorted(
        (root / "calibration").glob("*.yaml"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert safe_load(text) == yaml.load(text, Loader=yaml.SafeLoader), path
