"""`dairy-edge doctor`: each check against the real thing (a private Mosquitto with
a password file and ACLs, a real central on SQLite, a real buffer), each failure
with its fix, exit status 1 on any failure."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_mqtt import PrivateMosquitto, free_port
from helpers_store import make_writer

from agent.central.server import run_central
from agent.config.loader import load_config
from agent.runtime.doctor import (
    check_broker,
    check_buffer,
    check_central,
    check_disk,
    run_checks,
)
from agent.runtime.preflight import Finding

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "gw7", "s3cret-barn"


def _by(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMosquitto]:
    folder = tmp_path_factory.mktemp("acl-broker")
    passwd, acl = folder / "passwd", folder / "acl"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD], check=True,
                   capture_output=True)
    acl.write_text(f"user {USER}\ntopic read barn/#\ntopic write dairy-edge/#\n")
    extra = ("allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}")
    mosq = PrivateMosquitto(folder, extra=extra)
    mosq.conf.write_text("\n".join(line for line in mosq.conf.read_text().splitlines()
                                   if line != "allow_anonymous true") + "\n")
    mosq.start()
    yield mosq
    mosq.stop()


def _config(tmp_path: Path, port: int, **mqtt: object) -> object:
    return load_config(overrides={
        "gateway": {"id": "gw-doc", "data_dir": str(tmp_path / "data")},
        "mqtt": {"port": port, "username": USER, **mqtt},
        "sync": {"enabled": False},
    })


def test_broker_login_and_subscriptions_allowed(
    broker: PrivateMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAIRY_EDGE_MQTT_PASSWORD", PASSWORD)
    found = _by(check_broker(_config(tmp_path, broker.port)))  # type: ignore[arg-type]
    assert found["broker reachable"].level == "ok"
    assert found["broker login"].level == "ok" and USER in found["broker login"].detail
    assert found["broker subscriptions"].level == "ok"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_what_the_broker_answers_for_a_topic_outside_the_acl(
    protocol: str, broker: PrivateMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mosquitto 2.0 grants a subscription its acl_file does not allow (SUBACK 0 /
    granted QoS; checked with mosquitto_sub -d) and then delivers nothing on it,
    so the check can only report the SUBACK; it says so in its detail."""
    monkeypatch.setenv("DAIRY_EDGE_MQTT_PASSWORD", PASSWORD)
    config = _config(tmp_path, broker.port, topics=["barn/#", "office/#"], protocol=protocol)
    sub = _by(check_broker(config))["broker subscriptions"]  # type: ignore[arg-type]
    assert sub.level == "ok" and "granted: barn/#, office/#" in sub.detail
    assert "check the ACL" in sub.detail


def test_a_wrong_password_is_a_login_failure_with_the_fix(
    broker: PrivateMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAIRY_EDGE_MQTT_PASSWORD", "not-it")
    found = _by(check_broker(_config(tmp_path, broker.port)))  # type: ignore[arg-type]
    assert found["broker login"].level == "failure"
    assert "DAIRY_EDGE_MQTT_PASSWORD" in found["broker login"].fix
    assert "broker subscriptions" not in found


def test_no_broker_is_a_reachability_failure(tmp_path: Path) -> None:
    found = _by(check_broker(_config(tmp_path, free_port())))  # type: ignore[arg-type]
    assert found["broker reachable"].level == "failure"
    assert "mosquitto" in found["broker reachable"].fix


async def test_central_reachable_and_the_key_checked_without_storing(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    central_cfg = load_config(overrides={"central": {
        "port": 0, "database_url": f"sqlite:///{tmp_path}/central.db"}}).central
    central = await run_central(central_cfg, keys={"fleet": key})
    try:
        def config(key_id: str) -> object:
            return load_config(overrides={
                "gateway": {"id": "gw-doc", "data_dir": str(tmp_path / "data")},
                "sync": {"url": central.url, "key_id": key_id}})

        good = _by(await asyncio.to_thread(check_central, config("fleet"), key=key))
        assert good["central reachable"].level == "ok"
        assert good["central key"].level == "ok", good["central key"]
        assert good["clock vs central"].level == "ok"
        wrong = _by(await asyncio.to_thread(check_central, config("fleet"),
                                            key=b"x" * 32))
        assert wrong["central key"].level == "failure"
        assert "bad_signature" in wrong["central key"].detail
        unknown = _by(await asyncio.to_thread(check_central, config("other"), key=key))
        assert "unknown_key" in unknown["central key"].detail
        assert (await central.stats()).get("records", 0) == 0
    finally:
        await central.stop()
    conn = sqlite3.connect(tmp_path / "central.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in ("batches", "readings"):
            if table in tables:
                assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
    finally:
        conn.close()


def test_central_down_is_a_reachability_failure(tmp_path: Path) -> None:
    config = load_config(overrides={
        "sync": {"url": f"http://127.0.0.1:{free_port()}/api/v1/batches"}})
    found = _by(check_central(config, key=b"k" * 32))
    assert found["central reachable"].level == "failure"
    assert "sync.url" in found["central reachable"].fix


def test_buffer_health(tmp_path: Path) -> None:
    config = load_config(overrides={"gateway": {"data_dir": str(tmp_path)}})
    assert check_buffer(config)[0].detail.endswith("does not exist yet (made at the first run)")
    writer = make_writer(config.store_path)
    writer.close()
    healthy = check_buffer(config)
    assert healthy[0].level == "ok" and "intact; 0 records wait for sync" in healthy[0].detail
    config.store_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    broken = check_buffer(config)
    assert broken[0].level == "failure" and broken[0].fix


def test_disk_space_against_the_buffer_cap(tmp_path: Path) -> None:
    roomy = load_config(overrides={"gateway": {"data_dir": str(tmp_path)},
                                   "store": {"max_buffer_bytes": 2 * 1024 * 1024}})
    assert check_disk(roomy).level == "ok"
    greedy = load_config(overrides={"gateway": {"data_dir": str(tmp_path)},
                                    "store": {"max_buffer_bytes": 2**60}})
    found = check_disk(greedy)
    assert found.level == "warning" and "cannot reach its cap" in found.detail


def test_a_broken_config_is_the_first_failure(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  prot: 1\n")
    found = run_checks(path)
    assert [f.check for f in found] == ["config"] and found[0].level == "failure"


def test_cli_json_and_exit_status(broker: PrivateMosquitto, tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        f"gateway:\n  id: gw-doc\n  data_dir: {tmp_path / 'data'}\n"
        f"mqtt:\n  port: {broker.port}\n  username: {USER}\n"
        f"sync:\n  url: http://127.0.0.1:{free_port()}/api/v1/batches\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "DAIRY_EDGE_HMAC_KEY": "k" * 32,
           "DAIRY_EDGE_MQTT_PASSWORD": PASSWORD}
    result = subprocess.run([sys.executable, "-m", "agent.cli.main", "doctor", "--config",
                             str(path), "--json"], check=False, capture_output=True, text=True,
                            env=env, timeout=120)
    report = json.loads(result.stdout)
    levels = {c["check"]: c["level"] for c in report["checks"]}
    assert levels["broker subscriptions"] == "ok"
    assert levels["central reachable"] == "failure"  # nothing listens there
    assert result.returncode == 1 and report["ok"] is False
    assert all(c["fix"] for c in report["checks"] if c["level"] != "ok")
    text = subprocess.run([sys.executable, "-m", "agent.cli.main", "doctor", "-c", str(path)],
                          check=False, capture_output=True, text=True, env=env, timeout=120)
    assert "FAIL central reachable" in text.stdout and "fix: check sync.url" in text.stdout
    assert text.returncode == 1


def _as_nobody(call: Any) -> Any:
    """``call()`` in a forked child that dropped root for uid/gid 65534 (nobody):
    a real EACCES, not a mock. The child returns its result as JSON."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(call()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        body = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(body)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to drop to a user who may not enter the data folder")
def test_a_data_folder_the_user_may_not_enter_is_a_failure_with_the_fix(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = load_config(overrides={"gateway": {"data_dir": str(data)}})
    make_writer(config.store_path).close()

    def checks() -> list[list[str]]:
        return [[f.check, f.level, f.detail, f.fix]
                for f in [check_disk(config), *check_buffer(config)]]

    disk, buffer = _as_nobody(checks)
    for check, level, detail, fix in (disk, buffer):
        assert level == "failure" and "cannot look at" in detail, (check, detail)
        assert "Permission denied" in detail and "sudo" in fix
