"""`dairy-edge config check` refuses what `dairy-edge run --strict-config` refuses.

Each broken config below is refused by both, for the same reason: the check
and the agent's start run the same list (agent/runtime/preflight.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config.loader import load_config
from agent.config.model import BUNDLED
from agent.errors import ConfigError
from agent.runtime.daemon import Agent

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "k" * 32)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("DAIRY_EDGE_MQTT_PASSWORD", raising=False)


def _farm(tmp_path: Path) -> Path:
    """A farm folder with its own firmware and calibration copies."""
    shutil.copytree(BUNDLED / "firmware_configs", tmp_path / "firmware")
    (tmp_path / "calibration").mkdir()
    return tmp_path


def _write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "dairy-edge.yaml"
    path.write_text(
        "gateway:\n"
        f"  data_dir: {tmp_path / 'data'}\n"
        f"  firmware_dir: {tmp_path / 'firmware'}\n"
        f"  calibration_dir: {tmp_path / 'calibration'}\n" + extra
    )
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["config", "check", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def _run_refuses(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        Agent(load_config(path))
    return str(err.value)


def test_a_good_config_passes_and_the_agent_accepts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(_farm(tmp_path))
    code, out = _check(path, capsys)
    assert code == 0, out
    assert f"{path}: OK" in out and "OK   firmware: 6 formats" in out
    Agent(load_config(path)).writer.close()


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("missing firmware folder", "firmware folder does not exist"),
        ("missing calibration folder", "calibration folder does not exist"),
        ("broken firmware file", "not valid YAML"),
        ("calibration of an unknown firmware", "unknown firmware 'no-such'"),
        ("missing TLS CA file", "mqtt.tls: cannot load certificates or key"),
        ("missing sync CA file", "sync.ca_file: cannot load"),
        ("missing HMAC key", "no HMAC key was given"),
        ("missing web TLS files", "web.tls: cannot load"),
        ("unreadable web users file", "web.users_file: cannot read"),
    ],
)
def test_check_and_run_refuse_the_same_broken_configs(
    case: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    farm = _farm(tmp_path)
    extra = ""
    if case == "missing firmware folder":
        shutil.rmtree(farm / "firmware")
    elif case == "missing calibration folder":
        (farm / "calibration").rmdir()
    elif case == "broken firmware file":
        (farm / "firmware" / "bulk_tank.yaml").write_text("firmware: [bulk\n")
    elif case == "calibration of an unknown firmware":
        (farm / "calibration" / "x.yaml").write_text(
            "devices:\n  - firmware: no-such\n    sensor_id: s1\n"
            "    calibrated_on: 2026-01-01\n    due: 2027-01-01\n"
            "    fields: {temperature_c: {offset: 0.1}}\n")
    elif case == "missing TLS CA file":
        extra = f"mqtt:\n  port: 8883\n  tls:\n    enabled: true\n    ca_file: {farm}/ca.pem\n"
    elif case == "missing sync CA file":
        extra = f"sync:\n  ca_file: {farm}/central-ca.pem\n"
    elif case == "missing HMAC key":
        monkeypatch.delenv("DAIRY_EDGE_HMAC_KEY")
    elif case == "missing web TLS files":
        extra = f"web:\n  tls_cert: {farm}/web.pem\n  tls_key: {farm}/web.key\n"
    elif case == "unreadable web users file":
        (farm / "users.json").mkdir()  # read as root too: a folder cannot be read as a file
        extra = f"web:\n  users_file: {farm}/users.json\n"
    path = _write(farm, extra)
    code, out = _check(path, capsys)
    assert code == 2, out
    assert "NOT OK" in out and expect in out and "fix:" in out
    assert expect in _run_refuses(path)


def test_run_strict_config_exits_2_where_check_does(tmp_path: Path) -> None:
    farm = _farm(tmp_path)
    (farm / "calibration").rmdir()
    path = _write(farm)
    for args in (["config", "check", str(path)], ["run", "--strict-config", "-c", str(path)]):
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli.main", *args], check=False, cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
            env={"PYTHONPATH": str(ROOT), "DAIRY_EDGE_HMAC_KEY": "k" * 32, "PATH": "/usr/bin"},
        )
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "calibration folder does not exist" in result.stdout + result.stderr


def test_warnings_do_not_fail_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    farm = _farm(tmp_path)
    (farm / "calibration" / "old.yaml").write_text(
        "devices:\n  - firmware: bulk-tank\n    sensor_id: tank-09\n"
        "    calibrated_on: 2020-01-01\n    due: 2021-01-01\n"
        "    fields: {milk_temp_c: {offset: 0.1}}\n")
    path = _write(farm, "mqtt:\n  username: gw\n")
    code, out = _check(path, capsys)
    assert code == 0, out
    assert "WARN calibration due: overdue: tank-09 (due 2021-01-01)" in out
    assert "WARN secret mqtt_password" in out


def test_an_empty_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# only a comment\n")
    code, out = _check(path, capsys)
    assert code == 2
    assert f"{path}: the file is empty" in out


def test_a_yaml_error_names_the_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  host: [a\nsync: {}\n")
    code, out = _check(path, capsys)
    assert code == 2
    assert f"{path}:3:5: not valid YAML" in out
    assert "<unicode string>" not in out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_a_good_web_certificate_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    farm = _farm(tmp_path)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(farm / "web.key"), "-out", str(farm / "web.pem"), "-days", "2",
                    "-subj", "/CN=gateway"], check=True, capture_output=True)
    path = _write(farm, f"web:\n  tls_cert: {farm}/web.pem\n  tls_key: {farm}/web.key\n")
    code, out = _check(path, capsys)
    assert code == 0, out
    assert f"OK   web.tls: loaded {farm}/web.pem" in out


def test_by_default_no_calibration_is_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped sample names climate-01 and tank-01: a farm's real sensors of
    those names must not get its corrections, nor its "overdue" warning."""
    from agent.clock import SystemClock
    from agent.config.model import Config
    from agent.ingest.pipeline import Ingestor

    config = Config()
    assert not config.gateway.calibration_dir.is_relative_to(BUNDLED)
    if config.gateway.calibration_dir.exists():
        pytest.skip(f"{config.gateway.calibration_dir} exists on this machine")
    gw = config.gateway
    ingestor = Ingestor(gw.firmware_dir, gw.calibration_dir, config.ingest, SystemClock(), "t")
    assert ingestor.calibrations.entries() == []
    path = tmp_path / "dairy-edge.yaml"
    path.write_text(f"gateway:\n  data_dir: {tmp_path / 'data'}\n")
    code, out = _check(path, capsys)
    assert code == 0, out
    assert "OK   calibration: none" in out and "overdue" not in out
    Agent(load_config(path)).writer.close()
