"""Black-box harness: the agent and the central receiver as real processes.

Used by the end-to-end test and the full-process fault tests. Everything is
real: a private Mosquitto with explicit limits, PostgreSQL, Redis, and
`dairy-edge run` / `dairy-edge central` started as subprocesses.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from helpers_mqtt import PrivateMosquitto, free_port

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
HMAC_KEY = "e2e-test-key-0123456789abcdef"
DAIRY_EDGE = [sys.executable, "-m", "agent.cli.main"]


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    """Wait on a condition (never a fixed sleep); fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class PgDatabase:
    """A fresh PostgreSQL database, dropped on close."""

    def __init__(self, prefix: str = "dairy_e2e") -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(
                psycopg.sql.Identifier(self.name)))
        self.url = f"postgresql://postgres@127.0.0.1:5432/{self.name}"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(self.name)))


class Process:
    """A dairy-edge subprocess with its log in a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            cwd=Path(__file__).resolve().parents[1],
        )
        log.close()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class NotifySocket:
    """The test's end of systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def count(self, message: str) -> int:
        return sum(message in m.split("\n") for m in self.drain())

    def close(self) -> None:
        self.sock.close()


@dataclass
class Barn:
    """One private broker, one central receiver, one agent; all real."""

    workdir: Path
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    central_overrides: dict[str, Any] = field(default_factory=dict)
    redis: bool = True

    def __post_init__(self) -> None:
        self.prefix = f"e2e{uuid.uuid4().hex[:6]}"
        self.gateway_id = f"gw-{self.prefix}"
        self.broker = PrivateMosquitto(self.workdir, queue_limit=0)
        self.db = PgDatabase()
        self.central_port = free_port()
        self.data_dir = self.workdir / "agent-data"
        self.notify = NotifySocket(self.workdir / "notify.sock")
        env = {**os.environ, "DAIRY_EDGE_HMAC_KEY": HMAC_KEY, "PYTHONUNBUFFERED": "1"}
        self.central = Process(
            [*DAIRY_EDGE, "central", "--config", str(self._central_config())],
            self.workdir / "central.log", env,
        )
        self.agent = Process(
            [*DAIRY_EDGE, "run", "--config", str(self._agent_config())],
            self.workdir / "agent.log", {**env, "NOTIFY_SOCKET": self.notify.path},
        )

    def _central_config(self) -> Path:
        central: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.central_port, "database_url": self.db.url,
            "redis_url": REDIS_URL if self.redis else None,
        }
        central.update(self.central_overrides)
        path = self.workdir / "central.yaml"
        path.write_text(yaml.safe_dump({"central": central, "logging": {"level": "INFO"}}))
        return path

    def _agent_config(self) -> Path:
        config: dict[str, Any] = {
            "gateway": {"id": self.gateway_id, "data_dir": str(self.data_dir)},
            "ingest": {"topic_prefix": self.prefix},
            "mqtt": {"port": self.broker.port, "topics": [f"{self.prefix}/#"],
                     "client_id": f"agent-{self.prefix}", "reconnect_max_s": 2.0},
            "sync": {"url": f"http://127.0.0.1:{self.central_port}/api/v1/batches",
                     "interval_s": 0.5, "backoff_max_s": 5.0},
            "web": {"host": "127.0.0.1", "port": 0},
        }
        for section, values in self.agent_overrides.items():
            config.setdefault(section, {}).update(values)
        path = self.workdir / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.broker.start()
        self.central.start()
        wait_until(lambda: _listening(self.central_port), 30,
                   f"the central receiver\n{self.central.log_tail()}")
        self.start_agent()

    def start_agent(self) -> None:
        ready_before = self.notify.count("READY=1")
        self.agent.start()
        wait_until(lambda: self.notify.count("READY=1") > ready_before or not self.agent.alive,
                   30, "the agent to subscribe")
        assert self.agent.alive, f"agent exited:\n{self.agent.log_tail()}"

    def close(self) -> None:
        self.agent.terminate()
        self.central.terminate()
        self.broker.stop()
        self.notify.close()
        self.db.close()

    # -- oracles -------------------------------------------------------------
    @property
    def buffer_path(self) -> Path:
        return self.data_dir / "buffer.db"

    def buffer(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def central_reading_ids(self) -> list[str]:
        rows = self.db.query("SELECT record_id FROM readings WHERE device_id = %s",
                             (self.gateway_id,))
        return [r[0] for r in rows]

    def integrity(self) -> str:
        return str(self.buffer("PRAGMA integrity_check")[0][0])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def barn(workdir: Path, **kwargs: Any) -> Iterator[Barn]:
    b = Barn(workdir, **kwargs)
    try:
        b.start()
        yield b
    finally:
        b.close()
