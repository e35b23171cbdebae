"""Black-box harness: the agent and the central receiver as real processes.

Used by the end-to-end test and the full-process fault tests. Everything is
real: a private Mosquitto with explicit limits, PostgreSQL, Redis, and
`dairy-edge run` / `dairy-edge central` started as subprocesses.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from helpers_mqtt import PrivateMosquitto, free_port

from agent.sources.publisher import PublishReport, publish
from agent.sources.simulator import SimMessage

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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def vm_hwm_kib(self) -> int:
        """Peak resident set size (VmHWM) of the running process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

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
    broker_extra: tuple[str, ...] = ()  # extra mosquitto.conf lines (limits per test)
    agent_env: dict[str, str] = field(default_factory=dict)  # e.g. LD_PRELOAD=libfaketime
    central_proxy: bool = False  # put a ResponseProxy between agent and central

    def __post_init__(self) -> None:
        self.prefix = f"e2e{uuid.uuid4().hex[:6]}"
        self.gateway_id = f"gw-{self.prefix}"
        self.broker = PrivateMosquitto(self.workdir, queue_limit=0, extra=self.broker_extra)
        self.db = PgDatabase()
        self.central_port = free_port()
        self.web_port = free_port()
        self.proxy: ResponseProxy | None = None
        self.sync_port = self.central_port
        if self.central_proxy:
            self.proxy = ResponseProxy(self.central_port)
            self.sync_port = self.proxy.port
        self.data_dir = self.workdir / "agent-data"
        self.notify = NotifySocket(self.workdir / "notify.sock")
        env = {**os.environ, "DAIRY_EDGE_HMAC_KEY": HMAC_KEY, "PYTHONUNBUFFERED": "1"}
        self.central = Process(
            [*DAIRY_EDGE, "central", "--config", str(self._central_config())],
            self.workdir / "central.log", env,
        )
        self.agent = Process(
            [*DAIRY_EDGE, "run", "--config", str(self._agent_config())],
            self.workdir / "agent.log",
            {**env, "NOTIFY_SOCKET": self.notify.path, **self.agent_env},
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
            "sync": {"url": f"http://127.0.0.1:{self.sync_port}/api/v1/batches",
                     "interval_s": 0.5, "backoff_max_s": 5.0},
            # Login off (allowed on loopback only): the harness reads /api/status.
            "web": {"host": "127.0.0.1", "port": self.web_port, "login": False},
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

    def start_agent(self, timeout: float = 30.0) -> float:
        """Start the agent; seconds (monotonic) until it sent READY=1."""
        ready_before = self.notify.count("READY=1")
        started = time.monotonic()
        self.agent.start()
        wait_until(lambda: self.notify.count("READY=1") > ready_before or not self.agent.alive,
                   timeout, f"the agent to subscribe\n{self.agent.log_tail()}", step=0.02)
        assert self.agent.alive, f"agent exited:\n{self.agent.log_tail()}"
        return time.monotonic() - started

    def close(self) -> None:
        self.agent.terminate()
        self.central.terminate()
        if self.proxy is not None:
            self.proxy.close()
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

    def integrity_rw(self) -> str:
        """integrity_check while the agent is down (a read-write open recovers the WAL,
        exactly as the next start would)."""
        conn = sqlite3.connect(self.buffer_path, timeout=10)
        try:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            conn.close()

    def backlog(self) -> int:
        """Unsynced records in the agent's outbox (readings, alerts, events, inferences)."""
        total = 0
        for table in ("readings", "alerts", "events", "inferences"):
            total += int(self.buffer(f"SELECT COUNT(*) FROM {table} WHERE synced = 0")[0][0])
        return total

    def repeated_batches(self) -> dict[str, int]:
        """batch_id -> attempts, for batches the central receiver saw more than once."""
        rows = self.db.query(
            "SELECT batch_id, count(*) FROM batches WHERE device_id = %s"
            " GROUP BY batch_id HAVING count(*) > 1", (self.gateway_id,))
        return {str(b): int(n) for b, n in rows}

    def central_events(self, name: str) -> int:
        rows = self.db.query("SELECT count(*) FROM events WHERE device_id = %s AND event = %s",
                             (self.gateway_id, name))
        return int(rows[0][0])

    def http_get(self, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], str]:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.http_get("/api/status")[2]))

    def metrics(self) -> dict[str, float]:
        """The agent's /metrics as {'name{label="v"}': value}; unlabelled names plain."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for family in text_string_to_metric_families(self.http_get("/metrics")[2]):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def check_exactly_once(self, expected: Iterable[str]) -> tuple[set[str], int, set[str]]:
        """(missing, duplicates, unexpected) between ``expected`` keys and central readings."""
        want = set(expected)
        ids = self.central_reading_ids()
        got = set(ids)
        return want - got, len(ids) - len(got), got - want

    def wait_all_at_central(self, expected: set[str], timeout: float = 180.0) -> None:
        wait_until(lambda: len(set(self.central_reading_ids()) & expected) >= len(expected),
                   timeout, f"central to receive {len(expected)} readings; agent log:\n"
                   f"{self.agent.log_tail()}", step=0.25)


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


class BackgroundPublisher:
    """The PUBACK oracle publishing in a thread: ``messages`` at ``rate`` per second
    until they run out or ``stop()``; ``join()`` returns the PublishReport."""

    def __init__(self, messages: Iterable[SimMessage], port: int, rate: float | None,
                 window: int = 100) -> None:
        self._halt = threading.Event()
        self._messages = itertools.takewhile(lambda _m: not self._halt.is_set(), messages)
        self.report: PublishReport | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(port, rate, window), name="publisher", daemon=True)
        self._thread.start()

    def _run(self, port: int, rate: float | None, window: int) -> None:
        try:
            self.report = publish(self._messages, "127.0.0.1", port, qos=1, rate=rate,
                                  window=window, ack_timeout_s=60)
        except BaseException as err:  # noqa: BLE001 - handed to join()
            self.error = err

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._halt.set()

    def join(self, timeout: float = 120.0) -> PublishReport:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.report is not None, "publisher did not finish"
        return self.report


class ResponseProxy:
    """A TCP proxy between the agent and the central receiver that can lose a response.

    ``arm()``: the next response the receiver sends (it has committed the batch by
    then) is swallowed, as is everything after it on that connection, and
    ``swallowed`` counts up. The test then kills the agent: the crash-during-sync
    case, response lost (T2).

    It also times every request on the wire: ``latencies`` holds, per request, the
    seconds (monotonic) from its first byte to the first byte of the answer.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._armed = threading.Event()
        self._lock = threading.Lock()
        self.swallowed = 0
        self.latencies: list[float] = []
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def arm(self) -> None:
        self._armed.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        swallowing = False
        asked: float | None = None  # when the request now waiting for its answer began
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 1.0)
                if self._closed:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if asked is None:
                            asked = time.monotonic()
                        upstream.sendall(data)
                        continue
                    if asked is not None:
                        with self._lock:
                            self.latencies.append(time.monotonic() - asked)
                        asked = None
                    if not swallowing and self._armed.is_set():
                        with self._lock:
                            self._armed.clear()
                            self.swallowed += 1
                        swallowing = True
                    if not swallowing:
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()


def kill_intervals(seed: int, count: int, low: float = 0.2, high: float = 1.5) -> list[float]:
    """Seeded random pauses between SIGKILLs."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]
