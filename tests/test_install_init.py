"""`dairy-edge init DIR`: a starting config that passes `config check`, the farm's
own firmware copies, a sample calibration that is not active by accident, and
nothing overwritten without --force."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config.loader import load_config
from agent.config.model import BUNDLED
from agent.ingest.calibration import load_calibration_dir


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "k" * 32)


def _init(tmp_path: Path, *extra: str) -> int:
    return main(["init", str(tmp_path / "farm"), "--gateway-id", "barn-7",
                 "--data-dir", str(tmp_path / "data"), *extra])


def test_init_writes_a_config_that_passes_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _init(tmp_path, "--mqtt-host", "broker.lan", "--central-url",
                 "https://central.example.org/api/v1/batches") == 0
    farm = tmp_path / "farm"
    config = load_config(farm / "dairy-edge.yaml")
    assert config.gateway.id == "barn-7" and config.sync.key_id == "barn-7"
    assert config.mqtt.host == "broker.lan" and config.sync.enabled
    assert config.gateway.firmware_dir == farm / "firmware_configs"
    assert config.gateway.calibration_dir == farm / "calibration"
    shipped = sorted(p.name for p in (BUNDLED / "firmware_configs").glob("*.yaml"))
    assert sorted(p.name for p in (farm / "firmware_configs").glob("*.yaml")) == shipped
    assert (farm / "dairy-edge.example.yaml").read_text() == (
        BUNDLED / "examples" / "dairy-edge.yaml").read_text()
    capsys.readouterr()
    assert main(["config", "check", str(farm / "dairy-edge.yaml")]) == 0
    assert "OK   firmware: 6 formats" in capsys.readouterr().out


def test_the_sample_calibration_is_not_active_and_not_overdue(tmp_path: Path) -> None:
    assert _init(tmp_path) == 0
    calibration = tmp_path / "farm" / "calibration"
    assert load_calibration_dir(calibration).entries() == []  # nothing applied by accident
    sample = calibration / "barn.yaml.sample"
    active = calibration / "barn.yaml"
    sample.rename(active)  # what the farm does once it has entered its devices
    table = load_calibration_dir(calibration)
    assert table.entries() and table.overdue(time.time()) == []
    assert f"calibrated_on: {dt.date.today().isoformat()}" in active.read_text()


def test_init_keeps_existing_files_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _init(tmp_path) == 0
    config = tmp_path / "farm" / "dairy-edge.yaml"
    config.write_text(config.read_text() + "# the farm's own edit\n")
    capsys.readouterr()
    assert _init(tmp_path) == 1
    assert "already there; nothing written" in capsys.readouterr().err
    assert config.read_text().endswith("# the farm's own edit\n")
    assert _init(tmp_path, "--force") == 0
    assert "the farm's own edit" not in config.read_text()


def test_a_bad_gateway_id_is_refused_and_leaves_no_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["init", str(tmp_path / "farm"), "--gateway-id", "barn 7!"])
    assert code == 2
    assert "gateway.id" in capsys.readouterr().err
    assert not (tmp_path / "farm" / "dairy-edge.yaml").exists()
    assert not (tmp_path / "farm").exists()  # nothing at all: checked before writing


@pytest.mark.parametrize("username", ["gw #1", "gw: one", "'quoted'", "yes", "0123", "null"])
def test_option_values_read_back_as_given(tmp_path: Path, username: str) -> None:
    assert _init(tmp_path, "--mqtt-username", username, "--mqtt-host", "broker #2.lan") == 0
    config = load_config(tmp_path / "farm" / "dairy-edge.yaml")
    assert config.mqtt.username == username and config.mqtt.host == "broker #2.lan"


def test_a_data_dir_with_odd_characters_reads_back(tmp_path: Path) -> None:
    data = tmp_path / "da ta #1: x"
    assert main(["init", str(tmp_path / "farm"), "--data-dir", str(data)]) == 0
    assert load_config(tmp_path / "farm" / "dairy-edge.yaml").gateway.data_dir == data


def test_a_failed_init_takes_back_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.cli.init

    monkeypatch.setattr(agent.cli.init, "EXAMPLES", tmp_path / "no-such-folder")
    with pytest.raises(FileNotFoundError):
        _init(tmp_path)
    assert not (tmp_path / "farm").exists()
    (tmp_path / "farm").mkdir()  # a folder that was there stays, empty as it was
    with pytest.raises(FileNotFoundError):
        _init(tmp_path)
    assert list((tmp_path / "farm").iterdir()) == []
