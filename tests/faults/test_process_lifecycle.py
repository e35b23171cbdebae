"""The agent's own lifecycle as a real process: T19 (SIGTERM under load),
T21 (corrupt buffer at boot), T22 (invalid or unsafe config)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_harness import DAIRY_EDGE, BackgroundPublisher, Barn, NotifySocket, barn, wait_until
from helpers_mqtt import free_port

from agent.config.model import GatewayConfig
from agent.sources.simulator import BarnSimulator

STOP_TIMEOUT_S = 20.0  # TimeoutStopSec in systemd/dairy-edge.service
T19_STOPS = 5
_STOPPED = re.compile(r"stopped: (\d+) messages received, (\d+) acknowledged after commit, "
                      r"(\d+) acks withheld .*, (\d+) redeliveries already stored")


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Barn]:
    yield from barn(tmp_path)


def _sim(farm: Barn, seed: int) -> BarnSimulator:
    return BarnSimulator.from_dir(GatewayConfig().firmware_dir, seed=seed, topic_prefix=farm.prefix)


def _stored_rows(farm: Barn) -> int:
    return int(farm.buffer("SELECT (SELECT COUNT(*) FROM readings) + "
                           "(SELECT COUNT(*) FROM quarantine)")[0][0])


# -- T19 -------------------------------------------------------------------


@pytest.mark.slow
def test_t19_sigterm_under_load(farm: Barn) -> None:
    pub = BackgroundPublisher(iter(_sim(farm, seed=19)), farm.broker.port, rate=400.0)
    rng = random.Random(19)
    new_acked_total = 0
    stop_s: list[float] = []
    for n in range(T19_STOPS):
        if n:
            farm.start_agent(timeout=15)
        time.sleep(rng.uniform(0.5, 1.5))  # the fault schedule: SIGTERM while messages flow
        stopping_before = farm.notify.count("STOPPING=1")
        log_before = len(_STOPPED.findall(farm.agent.log_text()))
        sent = time.monotonic()
        farm.agent.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        rc = farm.agent.wait(STOP_TIMEOUT_S + 5)
        stop_s.append(time.monotonic() - sent)
        assert rc == 0, farm.agent.log_tail()
        assert stop_s[-1] < STOP_TIMEOUT_S
        assert farm.notify.count("STOPPING=1") == stopping_before + 1
        stops = _STOPPED.findall(farm.agent.log_text())
        assert len(stops) == log_before + 1, farm.agent.log_tail()
        _received, acked, _withheld, already = map(int, stops[-1])
        # Everything this agent acknowledged is in the buffer: each ack is a new row,
        # or a redelivery of a row stored before (its earlier ack was lost in a stop).
        new_acked_total += acked - already
        assert _stored_rows(farm) >= new_acked_total, (new_acked_total, acked, already)
        assert farm.integrity_rw() == "ok"
    pub.stop()
    report = pub.join()
    assert report.complete, report.summary()
    farm.start_agent()
    valid = set(report.acked)
    farm.wait_all_at_central(valid, timeout=120)
    wait_until(lambda: farm.backlog() == 0, 60, "the outbox to empty")
    missing, dups, unexpected = farm.check_exactly_once(valid)
    assert not missing and dups == 0 and not unexpected
    print(f"\nT19: {T19_STOPS} SIGTERMs at 400 msg/s, exit 0 in at most {max(stop_s):.2f} s, "
          f"{len(valid)} messages, missing 0, duplicates 0")


# -- T21 -------------------------------------------------------------------


def _overwrite_pages(path: Path, rng: random.Random) -> None:
    """Flip bytes across the b-tree pages (the first page's 100-byte header stays)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        for page in range(1, size // 4096):
            f.seek(page * 4096 + rng.randrange(0, 64))
            f.write(rng.randbytes(64))
        f.seek(100)
        f.write(rng.randbytes(200))


def _garbage_header(path: Path, rng: random.Random) -> None:
    with path.open("r+b") as f:
        f.write(rng.randbytes(100))


@pytest.mark.slow
def test_t21_corrupt_buffer_at_boot(farm: Barn) -> None:
    sim = _sim(farm, seed=21)
    rng = random.Random(21)
    expected: set[str] = set()
    for n, damage in enumerate((_overwrite_pages, _garbage_header), 1):
        report = BackgroundPublisher(sim.take(300), farm.broker.port, rate=None).join()
        assert report.complete
        expected |= set(report.acked)
        farm.wait_all_at_central(expected, timeout=60)
        wait_until(lambda: farm.backlog() == 0, 60, "the outbox to empty")
        assert farm.agent.terminate() == 0
        damage(farm.buffer_path, rng)

        farm.start_agent(timeout=15)  # no crash loop: READY on the first start
        moved = farm.data_dir / f"buffer.db.corrupt-{n}"
        assert moved.exists(), sorted(p.name for p in farm.data_dir.iterdir())
        assert farm.integrity() == "ok"
        assert "corrupt" in farm.agent.log_text()
        problems = farm.status()["problems"]
        assert any(moved.name in p for p in problems), problems
        page = farm.http_get("/")[2]
        assert moved.name in page
        wait_until(lambda n=n: farm.central_events("buffer_corrupt") == n, 60,
                   "the buffer_corrupt event at central")

    # New data flows after the last recovery.
    report = BackgroundPublisher(sim.take(300), farm.broker.port, rate=None).join()
    expected |= set(report.acked)
    farm.wait_all_at_central(expected, timeout=60)
    missing, dups, _ = farm.check_exactly_once(expected)
    assert not missing and dups == 0


# -- T22 -------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown key": ("mqtt:\n  hots: broker.local\n", "mqtt.hots"),
    "wrong type": ("mqtt:\n  port: eighteen-eighty-three\n", "mqtt.port"),
    "out of range": ("store:\n  commit_interval_ms: 0\n", "store.commit_interval_ms"),
    "secret in the file": ("sync:\n  hmac_key: s3cr3t-in-plain-text\n", "sync.hmac_key"),
    "mqtt password in the file": ("mqtt:\n  password: hunter2\n", "mqtt.password"),
    "auth off hidden in a broken file": (
        "web:\n  auth:\n    enabled: false\ngateway:\n  id: 'bad id!'\n", "web.auth"),
    "unsafe gateway id": ("gateway:\n  id: ../../etc\n", "gateway.id"),
    "not yaml": ("mqtt: [unclosed\n", None),
    "not a mapping": ("- just\n- a list\n", None),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_t22_bad_config_refused_with_key_and_file(case: str, tmp_path: Path) -> None:
    text, key = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    env = {**os.environ, "DAIRY_EDGE_HMAC_KEY": "k" * 32}
    for args in (["run", "--strict-config", "--config", str(path)],
                 ["config", "check", str(path)]):
        res = subprocess.run([*DAIRY_EDGE, *args], capture_output=True, text=True, timeout=60,
                             env=env, check=False)
        out = res.stdout + res.stderr
        assert res.returncode not in (0, None), f"{args[0]} accepted {case}: {out}"
        assert "Traceback" not in out, out
        assert str(path) in out, out
        if key is not None:
            assert key in out, out
        assert "s3cr3t" not in out and "hunter2" not in out, "a secret was echoed back"


SAFE_MODE_CASES = {
    "secret in the file": ("mqtt:\n  password: hunter2\n", "mqtt.password", True),
    "missing secret": ("gateway:\n  data_dir: {tmp}/data\n", "DAIRY_EDGE_HMAC_KEY", False),
}


@pytest.mark.parametrize("case", sorted(SAFE_MODE_CASES))
def test_t22_run_starts_safe_mode_not_a_restart_storm(case: str, tmp_path: Path) -> None:
    """Without --strict-config the agent stays up in safe mode: page up with the
    error, /healthz 503, ingest off, a clean exit on SIGTERM."""
    body, expected, with_key = SAFE_MODE_CASES[case]
    port = free_port()
    path = tmp_path / "bad.yaml"
    path.write_text(f"web:\n  host: 127.0.0.1\n  port: {port}\n" + body.format(tmp=tmp_path))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {k: v for k, v in os.environ.items() if k != "DAIRY_EDGE_HMAC_KEY"}
    env["NOTIFY_SOCKET"] = notify.path
    if with_key:
        env["DAIRY_EDGE_HMAC_KEY"] = "k" * 32
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([*DAIRY_EDGE, "run", "--config", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: notify.count("READY=1") > 0 or proc.poll() is not None, 30,
                   "safe mode to come up")
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert unhealthy.value.code == 503
        body = unhealthy.value.read().decode()
        assert "safe mode" in body
        assert expected in body and "hunter2" not in body  # why, without a login
        # Safe mode keeps the login: the status itself needs a session.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5)
        assert refused.value.code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out = (tmp_path / "agent.log").read_text()
        assert expected in out and "hunter2" not in out
        assert "Traceback" not in out
        assert not list(tmp_path.rglob("buffer.db"))
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        notify.close()
