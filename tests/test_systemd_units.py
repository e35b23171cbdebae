"""The systemd units: hardening measured by systemd-analyze (exposure <= 2.0), valid
syntax, optional credentials, the users and folders they need, and the agent's
side of Type=notify (READY, WATCHDOG, more start time while the broker is away).

The systemd-analyze tests skip where it is not installed (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from e2e_harness import NotifySocket
from helpers_mqtt import free_port

from agent.config.loader import load_config
from agent.runtime import daemon

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
AGENT_UNIT = SYSTEMD / "dairy-edge.service"
CENTRAL_UNIT = SYSTEMD / "dairy-edge-central.service"
CAMERAS = SYSTEMD / "dairy-edge-cameras.conf"
MAX_EXPOSURE = 2.0

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def _security(unit: Path) -> tuple[float, str]:
    assert analyze is not None
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)],
                            check=False, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), result.stderr


def _settings(unit: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


@needs_analyze
@pytest.mark.parametrize("unit", [AGENT_UNIT, CENTRAL_UNIT], ids=lambda p: p.name)
def test_exposure_is_at_most_2_and_the_unit_parses_cleanly(unit: Path) -> None:
    exposure, warnings = _security(unit)
    assert exposure <= MAX_EXPOSURE, f"{unit.name}: exposure {exposure}"
    # systemd ignores what it cannot parse, with a warning: none allowed
    assert warnings.strip() == "", warnings
    # the figure the unit's header quotes is the measured one
    assert f"gives an exposure of {exposure}" in unit.read_text()


@needs_analyze
def test_exposure_with_the_camera_drop_in(tmp_path: Path) -> None:
    merged = tmp_path / "dairy-edge.service"
    text = AGENT_UNIT.read_text()
    drop_in = "\n".join(line for line in CAMERAS.read_text().splitlines()
                        if not line.startswith(("[", "#")))
    merged.write_text(text.replace("[Install]", drop_in + "\n\n[Install]"))
    exposure, warnings = _security(merged)
    assert warnings.strip() == "", warnings
    assert exposure <= MAX_EXPOSURE
    assert f"Exposure with this drop-in: {exposure}" in CAMERAS.read_text()


def test_the_agent_unit_is_notify_with_a_watchdog() -> None:
    settings = dict(_settings(AGENT_UNIT))
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert int(settings["WatchdogSec"]) >= 10
    assert settings["ExecStart"].startswith("/opt/dairy-edge/venv/bin/dairy-edge run ")
    assert "DynamicUser" not in settings and settings["User"] == "dairy-edge"
    assert dict(_settings(CENTRAL_UNIT))["ExecStart"].startswith(
        "/opt/dairy-edge/venv/bin/dairy-edge central ")


@pytest.mark.parametrize(
    ("unit", "names"),
    [(AGENT_UNIT, {"hmac_key", "mqtt_password", "web_admin_password"}),
     (CENTRAL_UNIT, {"central_keys", "hmac_key", "db_password"})],
    ids=["agent", "central"],
)
def test_every_credential_is_optional_for_the_unit(unit: Path, names: set[str]) -> None:
    """A missing credential file must not fail the unit: each LoadCredential has
    a SetCredential default (systemd uses it when the file cannot be read), and
    that default reads as no secret at all."""
    settings = _settings(unit)
    loaded = {v.split(":", 1)[0] for k, v in settings if k == "LoadCredential"}
    defaults = {v.split(":", 1)[0]: v.split(":", 1)[1] for k, v in settings
                if k == "SetCredential"}
    assert loaded == names
    assert set(defaults) == loaded
    assert all(value == r"\n" for value in defaults.values())
    # the code reads each of them (and a blank file as not set)
    code = "\n".join(p.read_text() for p in (ROOT / "agent").rglob("*.py"))
    for name in names:
        assert f'read_secret("{name}")' in code, name


def test_blank_credential_reads_as_not_set(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.config.secrets import read_secret

    (tmp_path / "mqtt_password").write_text("\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("DAIRY_EDGE_MQTT_PASSWORD", raising=False)
    assert read_secret("mqtt_password") is None


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_and_tmpfiles_make_the_users_and_folders(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}",
                    str(SYSTEMD / "dairy-edge.sysusers.conf")], check=True,
                   capture_output=True, timeout=60)
    passwd = (tmp_path / "etc" / "passwd").read_text()
    for user, home in (("dairy-edge", "/var/lib/dairy-edge"),
                       ("dairy-edge-central", "/var/lib/dairy-edge-central")):
        line = next(entry for entry in passwd.splitlines() if entry.startswith(user + ":"))
        assert line.split(":")[5] == home and line.endswith("nologin")
    subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                    str(SYSTEMD / "dairy-edge.tmpfiles.conf")], check=True,
                   capture_output=True, timeout=60)
    for folder, mode in (("etc/dairy-edge", 0o750), ("etc/dairy-edge/credentials", 0o700),
                         ("etc/dairy-edge-central", 0o750),
                         ("etc/dairy-edge-central/credentials", 0o700)):
        assert (tmp_path / folder).stat().st_mode & 0o777 == mode, folder


# -- the agent's side of Type=notify -------------------------------------------------

async def _run_agent(tmp_path: Path, port: int, seconds: float) -> list[str]:
    notify = NotifySocket(tmp_path / "notify.sock")
    os.environ["NOTIFY_SOCKET"] = notify.path
    os.environ["WATCHDOG_USEC"] = "1000000"  # ping every 0.5 s
    try:
        prefix = f"sd{secrets.token_hex(3)}"
        config = load_config(overrides={
            "gateway": {"id": "gw-sd", "data_dir": str(tmp_path / "data")},
            "ingest": {"topic_prefix": prefix},
            "mqtt": {"port": port, "topics": [f"{prefix}/#"],
                     "client_id": f"dairy-edge-{prefix}", "session_expiry_s": 0},
            "sync": {"enabled": False},
            "web": {"enabled": False},
        })
        agent = daemon.Agent(config)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.1)
            notify.drain()  # as systemd does: its queue holds only about ten
        stop.set()
        await asyncio.wait_for(task, 30)
        return notify.drain()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        notify.sock.close()


async def test_the_agent_says_ready_and_pings_the_watchdog(tmp_path: Path) -> None:
    messages = await _run_agent(tmp_path, 1883, 3.0)  # the real Mosquitto
    assert "READY=1" in messages
    assert messages.count("WATCHDOG=1") >= 2


def test_a_receiver_that_does_not_read_never_blocks_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.runtime import notify as notify_module
    from agent.runtime.notify import Notifier

    monkeypatch.setattr(notify_module, "SEND_TIMEOUT_S", 0.2)
    notify = NotifySocket(tmp_path / "full.sock")  # never drained
    notifier = Notifier(notify.path)
    started = time.monotonic()
    for _ in range(15):  # beyond the kernel's queue of about ten datagrams
        notifier.watchdog()
    assert time.monotonic() - started < 5.0  # each send gave up after 0.2 s
    notify.sock.close()


async def test_without_its_broker_the_agent_asks_for_more_start_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "START_EXTEND_EVERY_S", 0.3)
    messages = await _run_agent(tmp_path, free_port(), 2.0)  # nothing listens there
    assert "READY=1" not in messages
    extends = [m for m in messages if m.startswith("EXTEND_TIMEOUT_USEC=")]
    assert len(extends) >= 3, messages
    assert int(extends[0].split("=")[1]) == 900_000  # three times the interval
    assert any(m.startswith("STATUS=waiting for the MQTT broker at 127.0.0.1:") for m in messages)


async def test_safe_mode_keeps_the_watchdog_fed(tmp_path: Path) -> None:
    """A broken config under systemd: READY, then WATCHDOG=1 while it idles, so
    WatchdogSec= does not turn safe mode into a restart loop."""
    from agent.runtime.safe_mode import run_safe_mode

    notify = NotifySocket(tmp_path / "safe.sock")
    config = tmp_path / "broken.yaml"
    config.write_text("web:\n  port: 0\n  host: 127.0.0.1\nmqtt:\n  prot: 1\n")
    os.environ["NOTIFY_SOCKET"] = notify.path
    os.environ["WATCHDOG_USEC"] = "400000"  # ping every 0.2 s
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(run_safe_mode("mqtt.prot: unknown key", config, stop))
        messages: list[str] = []
        for _ in range(20):
            await asyncio.sleep(0.1)
            messages = notify.drain()
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        notify.sock.close()
    assert "READY=1" in messages
    assert messages.count("WATCHDOG=1") >= 5, messages
