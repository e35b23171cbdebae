"""scripts/install_gateway.sh, staged with --root: the venv with the wheel, the users,
the folders and their modes, the config from `dairy-edge init` with the paths it
will have, the credentials root's alone, the units and the camera drop-in.

Slow (a fresh virtual environment with every dependency: about 20 s here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.ci_wheel_demo import build_wheel

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_gateway.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers"),
]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_install_script_staged(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheel")  # from a copy: no build/ in the checkout
    key = tmp_path / "gw.key"
    key.write_text("k" * 32 + "\n")
    web_password = tmp_path / "web.pw"
    web_password.write_text("first-password-1\n")
    stage = tmp_path / "stage"
    args = [str(SCRIPT), "--root", str(stage), "--gateway-id", "barn-7", "--hmac-key-file",
            str(key), "--central-url", "https://central.example.org/api/v1/batches",
            "--cameras", "v4l2", "--wheel", str(wheel)]
    result = subprocess.run([*args, "--web-admin-password-file", str(web_password)],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dairy-edge 0.1.0" in result.stdout
    assert "admin, with the password in /etc/dairy-edge/credentials/" in result.stdout

    venv = stage / "opt" / "dairy-edge" / "venv"
    assert subprocess.run([str(venv / "bin" / "dairy-edge"), "doctor", "--help"],
                          check=False, capture_output=True).returncode == 0
    etc = stage / "etc" / "dairy-edge"
    config = yaml.safe_load((etc / "dairy-edge.yaml").read_text())
    assert config["gateway"]["id"] == "barn-7"
    assert config["gateway"]["firmware_dir"] == "/etc/dairy-edge/firmware_configs"
    assert config["sync"] == {"enabled": True,
                              "url": "https://central.example.org/api/v1/batches",
                              "key_id": "barn-7"}
    gid = next(int(line.split(":")[2]) for line in (stage / "etc" / "group").read_text()
               .splitlines() if line.startswith("dairy-edge:"))
    assert _mode(etc) == 0o750 and etc.stat().st_gid == gid
    assert _mode(etc / "dairy-edge.yaml") == 0o640 and (etc / "dairy-edge.yaml").stat().st_gid == gid
    creds = etc / "credentials"
    assert _mode(creds) == 0o700 and creds.stat().st_gid == 0
    assert _mode(creds / "hmac_key") == 0o600 and (creds / "hmac_key").stat().st_uid == 0
    assert _mode(creds / "web_admin_password") == 0o600
    assert (creds / "web_admin_password").read_text() == "first-password-1\n"
    units = stage / "etc" / "systemd" / "system"
    assert (units / "dairy-edge.service").read_text() == (
        ROOT / "systemd" / "dairy-edge.service").read_text()
    assert (units / "dairy-edge.service.d" / "cameras.conf").is_file()

    # run again with the same wheel: the farm's edited config is kept, and the wheel is
    # installed again even though its version is the one installed (a rebuilt wheel)
    (etc / "dairy-edge.yaml").write_text((etc / "dairy-edge.yaml").read_text() + "# edited\n")
    installed = next(venv.glob("lib/python3*/site-packages/agent/cli/init.py"))
    installed.unlink()
    again = subprocess.run(args, check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "kept" in again.stdout and (etc / "dairy-edge.yaml").read_text().endswith("# edited\n")
    assert installed.is_file()


def test_install_script_refuses_without_a_gateway_id(tmp_path: Path) -> None:
    result = subprocess.run([str(SCRIPT), "--root", str(tmp_path)], check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "--gateway-id is required" in result.stderr
