"""Detection in a worker process (``detect.worker: process``): the same scores and
alerts as in process, the calls the daemon makes, state saved and restored
through the buffer, and a worker that dies: detection falls back to this
process and no batch is lost or delivered twice. The last test runs the daemon
on the real broker (Mosquitto on 127.0.0.1:1883) and kills its worker while a
backlog is in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_mqtt import unique
from helpers_store import make_writer

from agent.clock import SystemClock
from agent.config.loader import load_config
from agent.config.model import Config, LoggingConfig
from agent.errors import InvalidPayload
from agent.ingest.pipeline import Ingestor
from agent.records import Alert, MilkCheck, Reading, Stamp
from agent.runtime import detect_worker
from agent.runtime.daemon import Agent
from agent.runtime.detect_worker import OP_REJECTED, DetectionWorker
from agent.runtime.detection import Detection
from agent.sources.simulator import BarnSimulator


def _config(tmp_path: Path, **detect: Any) -> Config:
    return load_config(overrides={"gateway": {"id": "gw-w", "data_dir": str(tmp_path)},
                                  "detect": detect})


def _readings(config: Config, n: int, seed: int = 5) -> tuple[Ingestor, list[Reading]]:
    """A simulated barn's readings, dated from two days ago (judged on their own
    clocks), parsed by the real ingest."""
    ingestor = Ingestor(config.gateway.firmware_dir, config.gateway.calibration_dir,
                        config.ingest, SystemClock(), "boot")
    sim = BarnSimulator.from_dir(config.gateway.firmware_dir, seed=seed, herd_size=12,
                                 sensors_per_kind=1, topic_prefix=config.ingest.topic_prefix
                                 or "barn", start_wall=time.time() - 2 * 86400)
    out = []
    for m in sim.take(n):
        try:
            out.append(ingestor.parse(m.topic, m.payload))
        except InvalidPayload:
            pass
    return ingestor, out


class Sink:
    """The daemon's ``deliver``: batches as they come back, in order; and its
    ``store_alerts``: the alerts of calls (tick, vision), after the batches sent
    before them. ``gate`` cleared: storing waits, as behind a refusing store."""

    def __init__(self) -> None:
        self.batches: list[tuple[Any, list[Any], dict[int, list[Alert]]]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.storing = threading.Event()  # set once storing waits at the gate

    def _wait(self) -> None:
        if not self.gate.is_set():
            self.storing.set()
            self.gate.wait()

    def __call__(self, context: Any, results: list[Any],
                 alerts: dict[int, list[Alert]]) -> None:
        self._wait()
        with self.lock:
            self.batches.append((context, results, alerts))
            self.threads.add(threading.current_thread().name)

    def store_alerts(self, alerts: list[Alert]) -> None:
        self._wait()
        with self.lock:
            self.batches.append(("call alerts", [], {0: list(alerts)}))


def _worker(config: Config, ingestor: Ingestor, sink: Sink) -> DetectionWorker:
    worker = DetectionWorker(config.detect, LoggingConfig(), SystemClock(), config.store_path,
                             {}, ingestor.value_range, sink, store_alerts=sink.store_alerts)
    worker.start()
    return worker


def _alert_keys(alerts: list[Alert]) -> list[tuple[str, str, str, str]]:
    return [(a.record_id, a.rule, a.state, a.message) for a in alerts]


def test_worker_scores_and_alerts_as_in_process(tmp_path: Path) -> None:
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 3000)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    try:
        ops = [worker.reading_op(r) for r in readings]
        for i in range(0, len(ops), 100):
            worker.send(ops[i:i + 100], i)
        # an impossible value's sensor check goes the same way
        worker.send([(OP_REJECTED, ("bulk-tank", "tank-x"), "out_of_range", "x")], "rejected")
        assert worker.flush(60)
        inline = Detection(config.detect, SystemClock(), value_range=ingestor.value_range)
        expected_alerts = []
        for r in readings:
            expected_alerts += inline.on_reading(r)
        assert [b[0] for b in sink.batches] == [*range(0, len(ops), 100), "rejected"]
        scores = [s for b in sink.batches[:-1] for s in b[1]]
        assert scores == [r.attributes["anomaly"] for r in readings]
        assert sum(1 for s in scores if s) > 2000  # scored, not empty
        got = [a for b in sink.batches[:-1] for i in sorted(b[2]) for a in b[2][i]]
        assert _alert_keys(got) == _alert_keys(expected_alerts)
        assert sink.threads == {"dairy-edge-detect-store"}
        assert not worker.in_process
        # the calls the daemon and the status page make
        assert worker.open_alerts() == inline.open_alerts()
        assert worker.precision() == inline.precision()
        assert isinstance(worker.tick(time.monotonic()), list)
        with pytest.raises(KeyError):
            worker.feedback("no-such-alert", "confirmed")
        assert worker.snooze("no-such-alert", 60.0) is False
    finally:
        worker.close()
    assert worker._proc is not None and worker._proc.returncode == 0


def test_state_saved_by_the_worker_restores_in_process(tmp_path: Path) -> None:
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 1600, seed=6)
    first, later = readings[:1200], readings[1200:]
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    try:
        worker.send([worker.reading_op(r) for r in first], "first")
        writer = make_writer(config.store_path)
        worker.save(writer, "boot")
        writer.close()
        worker.send([worker.reading_op(r) for r in later], "later")
        assert worker.flush(60)
    finally:
        worker.close()
    restored = Detection(config.detect, SystemClock(), value_range=ingestor.value_range)
    restored.restore(config.store_path)
    for r in later:
        restored.on_reading(r)
    assert sink.batches[1][1] == [r.attributes["anomaly"] for r in later]


def test_a_dead_worker_falls_back_in_process_and_loses_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 2000, seed=7)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    pid = worker.pid
    assert pid is not None
    try:
        ops = [worker.reading_op(r) for r in readings]
        worker.send(ops[:100], 0)
        assert worker.flush(60)
        # Stopped, then killed with batches in flight: those the worker never
        # answered are scored here.
        os.kill(pid, signal.SIGSTOP)
        sent = threading.Thread(target=lambda: [worker.send(ops[i:i + 100], i)
                                                for i in range(100, len(ops), 100)])
        sent.start()
        time.sleep(0.5)
        assert len(sink.batches) == 1
        os.kill(pid, signal.SIGKILL)
        sent.join(60)
        assert not sent.is_alive()
        assert worker.flush(60)
        assert worker.in_process
        assert [b[0] for b in sink.batches] == list(range(0, len(ops), 100))
        results = [s for b in sink.batches for s in b[1]]
        assert len(results) == len(readings)
        assert all(isinstance(s, dict) for s in results)
        assert sum(1 for s in results if s) > 1500
        # the calls keep working, in this process now
        assert isinstance(worker.open_alerts(), list)
        assert isinstance(worker.tick(time.monotonic()), list)
        worker.send([], "alerts only")
        assert worker.flush(10)
        assert sink.batches[-1][0] == "alerts only"
    finally:
        worker.close()
    assert "detection falls back to this process" in caplog.text


def test_replay_keeps_detection_in_process(tmp_path: Path) -> None:
    from agent.runtime.replay import Replayer

    rep = Replayer(_config(tmp_path))
    assert isinstance(rep.detection, Detection)


# -- the daemon ---------------------------------------------------------------------

def _stored(path: Path) -> tuple[int, int, int]:
    """Readings, readings with anomaly scores, distinct readings."""
    with sqlite3.connect(path) as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM readings")]
    scored = sum(1 for b in bodies if isinstance(b.get("attributes", {}).get("anomaly"), dict))
    return len(bodies), scored, len({b["record_id"] for b in bodies})


async def _until(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.to_thread(cond):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_daemon_loses_nothing_when_its_worker_dies(tmp_path: Path) -> None:
    from agent.sources.publisher import publish

    prefix = unique("dw")
    config = load_config(overrides={
        "gateway": {"id": "gw-dw", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60},
        "sync": {"enabled": False},
        "web": {"enabled": False},
        "detect": {"worker": "process"},
    })
    assert config.detect.worker == "process"
    sim = BarnSimulator.from_dir(config.gateway.firmware_dir, seed=11, herd_size=20,
                                 sensors_per_kind=1, topic_prefix=prefix,
                                 start_wall=time.time() - 86400)
    # The second part, sent while the worker is stopped, stays under the shared
    # broker's queue of 1,000 messages per session.
    msgs = [m for m in sim.take(1300) if m.valid][:1200]
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await _until(lambda: agent.mqtt.connected and agent.mqtt.subscriptions(), 20)
        worker = agent._worker
        assert worker is not None and worker.pid is not None
        await asyncio.to_thread(publish, msgs[:500], "127.0.0.1", 1883, qos=1)
        assert await _until(lambda: _stored(config.store_path)[0] == 500, 30)
        # The worker stops answering; the next messages pile up in flight; it dies.
        os.kill(worker.pid, signal.SIGSTOP)
        await asyncio.to_thread(publish, msgs[500:], "127.0.0.1", 1883, qos=1)
        await asyncio.sleep(1.0)
        assert _stored(config.store_path)[0] == 500  # nothing stored unscored
        os.kill(worker.pid, signal.SIGKILL)
        assert await _until(lambda: _stored(config.store_path)[0] == len(msgs), 60), \
            _stored(config.store_path)
        assert worker.in_process
        assert any(t.name == "dairy-edge-process" for t in threading.enumerate())
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert _stored(config.store_path) == (len(msgs), len(msgs), len(msgs))


async def test_a_profile_switch_reaches_the_worker_and_its_fallback(tmp_path: Path) -> None:
    heat_wave = {"description": "hot spell",
                 "rules": {"heat_stress": {"profiles": {"classic": {"raise_thi": 68.0,
                                                                    "clear_thi": 66.0}}}}}
    config = load_config(overrides={
        "gateway": {"id": "gw-dwp", "data_dir": str(tmp_path)},
        "mqtt": {"client_id": f"dairy-edge-{unique('dwp')}"},
        "sync": {"enabled": False},
        "web": {"enabled": False},
        "profiles": {"heat_wave": heat_wave},
        "detect": {"worker": "process"},
    })

    def raise_thi() -> float:
        heat = agent.detection.rules_config().heat_stress
        return heat.profiles[heat.profile].raise_thi

    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        worker = agent._worker
        assert worker is not None
        assert await _until(lambda: worker.pid is not None and raise_thi() == 72.0, 20)
        await asyncio.to_thread(agent.switch_profile, "heat_wave", "test")
        assert await asyncio.to_thread(raise_thi) == 68.0  # in the worker process
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        assert await _until(lambda: worker.in_process, 20)
        assert await asyncio.to_thread(raise_thi) == 68.0  # kept by the fallback
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def test_a_worker_that_cannot_start_falls_back_in_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No interpreter to start (or no process slot): detection runs here, and
    every reading is still scored."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 300)
    sink = Sink()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    worker = _worker(config, ingestor, sink)
    try:
        assert worker.in_process and worker._proc is None
        ops = [worker.reading_op(r) for r in readings]
        worker.send(ops, "all")
        assert worker.flush(30)
        assert [b[0] for b in sink.batches] == ["all"]
        assert len(sink.batches[0][1]) == len(readings)
        assert sum(1 for s in sink.batches[0][1] if s) > len(readings) // 2
        assert isinstance(worker.tick(time.monotonic()), list)
    finally:
        worker.close()
    assert "could not be started" in caplog.text


# -- the review of the worker (docs/performance.md, fifth pass) ---------------------

def _milk(i: int, result: str = "blood") -> MilkCheck:
    return MilkCheck(f"milk-{i}", "cup1", result, 0.95, Stamp(time.time(), time.monotonic_ns(),
                                                              "boot", True),
                     "milk_cls", "t", animal_id="A-2", quarter="RF")


def _ask_unanswered(worker: DetectionWorker) -> tuple[threading.Thread, list[object]]:
    """A call to a hung worker, in a thread, given half a second to be sent: the
    thread and what it got (its answer, or the TimeoutError it failed with)."""
    result: list[object] = []

    def ask() -> None:
        try:
            result.append(worker._call("precision", timeout=60.0))
        except TimeoutError as err:
            result.append(err)

    waiting = threading.Thread(target=ask, daemon=True)
    waiting.start()
    time.sleep(0.5)
    return waiting, result


def _in_thread(fn: Any, timeout: float) -> tuple[bool, Any]:
    """(returned within ``timeout``, its value): a call that may hang."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), out[0] if out else None


def test_calls_are_answered_while_the_store_refuses_and_their_alerts_stored_once(
        tmp_path: Path) -> None:
    """Review item 1: storing a batch waits (the store refuses records); calls are
    still answered at once, and the alerts of a vision record and a tick are stored
    once, in order, when the store takes records again."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 600, seed=8)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    try:
        ops = [worker.reading_op(r) for r in readings]
        sink.gate.clear()  # the store refuses
        worker.send(ops[:300], "first")
        assert sink.storing.wait(30)
        worker.send(ops[300:], "second")
        answered, value = _in_thread(lambda: worker.on_vision(_milk(1)), 5.0)
        assert answered and value == []  # its alerts are stored by the store path
        answered, value = _in_thread(lambda: worker.tick(time.monotonic()), 5.0)
        assert answered and value == []
        answered, opened = _in_thread(worker.open_alerts, 5.0)
        assert answered, "a call waited for the store"
        assert [a["rule"] for a in opened].count("milk_abnormal") == 1
        assert [b[0] for b in sink.batches] == []
        sink.gate.set()  # the store takes records again
        assert worker.flush(30)
        names = [b[0] for b in sink.batches]
        assert names[:2] == ["first", "second"]
        assert set(names[2:]) == {"call alerts"}
        stored = [a for b in sink.batches[2:] for a in b[2][0]]
        milk = [a for a in stored if a.rule == "milk_abnormal"]
        assert [a.state for a in milk] == ["raised"]  # once
        assert milk[0].details["alert_id"] in {a["alert_id"] for a in worker.open_alerts()}
    finally:
        sink.gate.set()
        worker.close()


def test_the_fallback_keeps_the_alert_state_the_worker_had(tmp_path: Path) -> None:
    """Review item 4: the worker dies long before the next save; the in-process
    fallback knows the alerts it raised and acknowledged: none is raised again,
    none shown unacknowledged."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 300, seed=9)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    rejected = (OP_REJECTED, ("bulk-tank", "tank-x"), "out_of_range", "x")
    try:
        worker.send([worker.reading_op(r) for r in readings] + [rejected, rejected], "first")
        assert worker.flush(30)
        raised = [a for b in sink.batches for i in b[2] for a in b[2][i]
                  if a.rule == "sensor.range" and a.sensor_id == "tank-x"]
        assert [a.state for a in raised] == ["raised"]
        alert_id = raised[0].details["alert_id"]
        time.sleep(1.2)  # the worker sends its rule state at most once a second
        assert worker.acknowledge(alert_id) is True
        assert worker._proc is not None
        os.kill(worker._proc.pid, signal.SIGKILL)
        worker._proc.wait(10)
        worker.send([rejected, rejected], "after")  # in process once the fallback ran
        assert worker.flush(30)
        assert worker.in_process
        assert [b[2] for b in sink.batches if b[0] == "after"] == [{}]  # not raised again
        opened = [a for a in worker.open_alerts() if a["rule"] == "sensor.range"]
        assert [(a["alert_id"], a["acknowledged"]) for a in opened] == [(alert_id, True)]
    finally:
        worker.close()


class _Overlap:
    """A worker's pipe that notes two threads writing at once (a send sleeps
    inside, so an overlap cannot slip through)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.inside = 0
        self.overlaps = 0
        self.lock = threading.Lock()

    def send(self, msg: Any) -> None:
        with self.lock:
            self.inside += 1
            self.overlaps += self.inside > 1
        try:
            if msg is not None:
                time.sleep(0.5)
            self._conn.send(msg)
        finally:
            with self.lock:
                self.inside -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_close_does_not_write_beside_a_send(tmp_path: Path) -> None:
    """Review item 6: close() while the processing thread is writing a batch: the
    writes do not interleave, and the batch is answered and delivered."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 200, seed=10)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    pipe = _Overlap(worker._conn)
    worker._conn = pipe  # type: ignore[assignment]
    sending = threading.Thread(target=worker.send,
                               args=([worker.reading_op(r) for r in readings], "last"))
    sending.start()
    time.sleep(0.1)
    worker.close()
    sending.join(10)
    assert pipe.overlaps == 0
    assert [b[0] for b in sink.batches] == ["last"]
    assert worker._proc is not None and worker._proc.returncode == 0  # stopped, not killed


def test_close_with_a_hung_worker_and_a_full_pipe_is_bounded(tmp_path: Path) -> None:
    """A stopped (hung) worker, the pipe full, a send stuck in it: close() still
    returns in about its timeout, the worker killed; a call gives up too."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 3000, seed=14)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    assert worker._proc is not None
    ops = [worker.reading_op(r) for r in readings]
    os.kill(worker._proc.pid, signal.SIGSTOP)
    sending = threading.Thread(target=lambda: [worker.send(ops, i) for i in range(4)],
                               daemon=True)
    sending.start()
    sending.join(3.0)
    assert sending.is_alive()  # stuck in the full pipe
    with pytest.raises(TimeoutError):
        worker._call("precision", timeout=1.0)
    started = time.monotonic()
    worker.close(5.0)
    assert time.monotonic() - started < 9.0
    assert worker._proc.returncode == -signal.SIGKILL
    sending.join(5.0)
    assert not sending.is_alive()


def test_a_hung_worker_is_killed_and_detection_falls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stops answering (SIGSTOP) no longer ends the daemon's tick
    loop (systemd then restarted the agent): a tick unanswered for
    HUNG_AFTER_S kills it, and detection falls back here, losing nothing."""
    monkeypatch.setattr(detect_worker, "HUNG_AFTER_S", 1.0)
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 600, seed=15)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    try:
        assert worker._proc is not None
        ops = [worker.reading_op(r) for r in readings]
        os.kill(worker._proc.pid, signal.SIGSTOP)
        worker.send(ops[:300], "first")
        assert worker.tick(time.monotonic()) == []
        time.sleep(0.5)
        assert worker.tick(time.monotonic()) == []  # skipped: the first is unanswered
        assert not worker.in_process
        time.sleep(0.7)
        worker.tick(time.monotonic())  # 1.2 s unanswered: killed
        assert worker._proc.wait(10) == -signal.SIGKILL
        worker.send(ops[300:], "second")
        assert worker.flush(30)
        assert worker.in_process
        assert [b[0] for b in sink.batches] == ["first", "second"]
        assert sum(len(b[1]) for b in sink.batches) == len(readings)
        assert worker.ticks_skipped == 2
    finally:
        worker.close()


def test_a_profile_switch_does_not_wait_for_a_takeover(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review item 6: the fallback after a worker died takes its time (restoring
    state from a large buffer); a profile switch, made on the event loop, returns
    at once and still reaches the fallback."""
    config = _config(tmp_path)
    ingestor, _ = _readings(config, 10)
    sink = Sink()
    restoring = threading.Event()
    original = Detection.restore

    def slow_restore(self: Detection, path: Path) -> None:
        restoring.set()
        time.sleep(3.0)
        original(self, path)

    monkeypatch.setattr(Detection, "restore", slow_restore)  # this process only
    worker = _worker(config, ingestor, sink)
    try:
        base = worker.rules_config()
        heat = base.heat_stress
        profiles = {**heat.profiles, heat.profile: heat.profiles[heat.profile].model_copy(
            update={"raise_thi": 61.0})}
        hot = base.model_copy(update={"heat_stress": heat.model_copy(
            update={"profiles": profiles})})
        assert worker._proc is not None
        os.kill(worker._proc.pid, signal.SIGKILL)
        assert restoring.wait(20)
        started = time.monotonic()
        worker.reconfigure_rules(hot)
        assert time.monotonic() - started < 0.5
        assert worker.flush(30)
        now = worker.rules_config().heat_stress
        assert worker.in_process and now.profiles[now.profile].raise_thi == 61.0
    finally:
        worker.close()


class _Watchdog:
    """systemd's end of the notify socket: counts WATCHDOG=1 pings as they come."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self.ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                lines = self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                continue
            except OSError:
                return
            if "WATCHDOG=1" in lines:
                self.pings.append(time.monotonic())
            if "READY=1" in lines:
                self.ready.set()

    def since(self, t: float) -> int:
        return sum(1 for p in self.pings if p >= t)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def _fill_buffer(config: Config) -> int:
    """Readings in the buffer until it holds more than 1 MiB: its used bytes."""
    writer = make_writer(config.store_path, max_buffer_bytes=64 * 1024 * 1024)
    _, readings = _readings(config, 4000, seed=12)
    for r in readings:
        assert writer.submit(r)
    writer.close()
    with sqlite3.connect(config.store_path) as conn:
        used = _used_bytes(conn)
    assert used > 1024 * 1024
    return used


def _used_bytes(conn: sqlite3.Connection) -> int:
    from agent.store.space import used_bytes

    return used_bytes(conn)


def _daemon_config(tmp_path: Path, prefix: str, **store: Any) -> Config:
    return load_config(overrides={
        "gateway": {"id": "gw-dwr", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60},
        "sync": {"enabled": False},
        "web": {"enabled": False},
        "store": store,
        "detect": {"worker": "process"},
    })


async def test_daemon_keeps_pinging_while_the_store_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review item 1, as the review ran it: the buffer at its byte cap holds every
    new record; the tick loop goes on, the systemd watchdog is still pinged (every
    second here) and the status page's calls are answered."""
    from agent.sources.publisher import publish

    prefix = unique("dwr")
    config = _daemon_config(tmp_path, prefix)
    used = _fill_buffer(config)
    config = _daemon_config(tmp_path, prefix, max_buffer_bytes=used + 8192,
                            reserved_alert_fraction=0.0, full_drop_after_s=86400.0,
                            max_pending_items=5)
    watchdog = _Watchdog(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", watchdog.path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a ping every second
    sim = BarnSimulator.from_dir(config.gateway.firmware_dir, seed=13, herd_size=20,
                                 sensors_per_kind=1, topic_prefix=prefix,
                                 start_wall=time.time() - 86400)
    msgs = [m for m in sim.take(500) if m.valid][:400]
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await asyncio.to_thread(watchdog.ready.wait, 30)
        await asyncio.to_thread(publish, msgs, "127.0.0.1", 1883, qos=1)
        assert await _until(lambda: agent.writer.full, 30)
        await asyncio.sleep(2.0)  # the store thread now waits behind the full buffer
        started = time.monotonic()
        await asyncio.sleep(6.0)
        assert not task.done()
        assert watchdog.since(started) >= 4, watchdog.pings
        assert agent.writer.full  # still refusing: the pings went on regardless
        opened = await asyncio.wait_for(asyncio.to_thread(agent._open_alerts), 5.0)
        assert isinstance(opened, list)
    finally:
        stop.set()
        stopping = time.monotonic()
        await asyncio.wait_for(task, 60)
        watchdog.close()
    # Within systemd's TimeoutStopSec=30, the buffer still full.
    assert time.monotonic() - stopping < 30


async def test_the_tick_loop_survives_a_failing_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick that raises is logged and counted; the loop and the watchdog go on."""
    prefix = unique("dwt")
    config = _daemon_config(tmp_path, prefix)
    watchdog = _Watchdog(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", watchdog.path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    agent = Agent(config)

    def broken(now_mono: float) -> list[Alert]:
        raise RuntimeError("tick broke")

    monkeypatch.setattr(agent.detection, "tick", broken)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await asyncio.to_thread(watchdog.ready.wait, 30)
        started = time.monotonic()
        await asyncio.sleep(5.0)
        assert not task.done()
        assert watchdog.since(started) >= 3, watchdog.pings
        assert agent.tick_failures >= 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        watchdog.close()


def test_calls_during_and_after_close_do_not_wait_for_an_answer(tmp_path: Path) -> None:
    """Review: a call still waiting when close() ends (the status page asking for
    open alerts while the agent stops, a hung worker) was never settled, and its
    thread held up the stop; a call made once closing has begun waited for an
    answer that could not come."""
    config = _config(tmp_path)
    ingestor, _ = _readings(config, 10, seed=16)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    assert worker._proc is not None
    os.kill(worker._proc.pid, signal.SIGSTOP)  # hung: nothing is answered
    waiting, result = _ask_unanswered(worker)
    worker.close(3.0)
    waiting.join(3.0)
    assert not waiting.is_alive() and isinstance(result[0], TimeoutError)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        worker._call("precision", timeout=60.0)
    assert time.monotonic() - started < 1.0


def test_close_goes_on_when_a_killed_worker_does_not_end(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Review: after the kill, close() waited for the worker to end and let
    ``subprocess.TimeoutExpired`` out, leaving the calls waiting unsettled and the
    store thread running. A kill that does not take (here: ignored) is logged,
    and close() goes on."""
    config = _config(tmp_path)
    ingestor, _ = _readings(config, 10, seed=17)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    proc = worker._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # hung: it neither answers nor exits
    proc.kill = lambda: None  # type: ignore[method-assign]  # the kill does not take
    answered, _ = _in_thread(lambda: worker.on_vision(_milk(1)), 5.0)  # queued, unanswered
    assert answered
    waiting, result = _ask_unanswered(worker)
    try:
        worker.close(1.0)  # raised TimeoutExpired before
        waiting.join(3.0)
        assert not waiting.is_alive() and isinstance(result[0], TimeoutError)
        # The store thread ends: close() told it to (its join had only what was
        # left of the 1 s, and a loaded CI machine can take longer to schedule it).
        assert worker._storer is not None
        worker._storer.join(5.0)
        assert not worker._storer.is_alive()
        assert "did not end" in caplog.text
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


# -- the stop's one deadline (review: its steps' own timeouts added up to ~45 s) ------

def test_a_state_save_takes_at_most_its_timeout_in_all(tmp_path: Path) -> None:
    """A hung worker, an earlier save still waiting: the last save's timeout
    bounds its wait for the earlier one and for the answer together (each got the
    whole timeout before: up to three times it)."""
    config = _config(tmp_path)
    ingestor, _ = _readings(config, 10, seed=18)
    worker = _worker(config, ingestor, Sink())
    assert worker._proc is not None
    os.kill(worker._proc.pid, signal.SIGSTOP)  # hung: nothing is answered
    try:
        earlier = threading.Thread(target=lambda: pytest.raises(
            TimeoutError, worker.save, None, "boot", 1.5), daemon=True)
        earlier.start()  # holds the save for 1.5 s
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            worker.save(None, "boot", 2.0)  # type: ignore[arg-type]
        took = time.monotonic() - started
        assert took < 2.5, took  # 3.4 s before
        earlier.join(5)
    finally:
        worker.close(1.0)


def test_close_takes_at_most_its_timeout_kill_included(tmp_path: Path) -> None:
    """A hung worker and a store thread held by a refusing store: close() is
    done within its timeout, the kill and the threads' ends included (each of
    them got at least a second more before)."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 100, seed=19)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    assert worker._proc is not None
    try:
        sink.gate.clear()  # the store refuses
        worker.send([worker.reading_op(r) for r in readings], "held")
        assert sink.storing.wait(30)
        os.kill(worker._proc.pid, signal.SIGSTOP)  # and the worker hangs
        started = time.monotonic()
        worker.close(2.0)
        took = time.monotonic() - started
        assert took < 2.4, took  # 3.0 s before
        assert worker._proc.returncode == -signal.SIGKILL
    finally:
        sink.gate.set()


async def test_the_daemon_stops_detection_within_one_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung worker with messages in flight and a periodic save waiting on it:
    the processing thread's last flush, the last save and the worker's close (its
    kill included) share one deadline (before, each its own: 10 + 5 + 5 s)."""
    from agent.runtime import daemon
    from agent.sources.publisher import publish

    monkeypatch.setattr(daemon, "STOP_DETECTION_S", 6.0)
    monkeypatch.setattr(daemon, "STOP_SAVE_S", 1.5)
    monkeypatch.setattr(daemon, "STOP_WORKER_S", 1.5)
    prefix = unique("dws")
    config = _daemon_config(tmp_path, prefix)
    sim = BarnSimulator.from_dir(config.gateway.firmware_dir, seed=20, herd_size=10,
                                 sensors_per_kind=1, topic_prefix=prefix,
                                 start_wall=time.time() - 86400)
    msgs = [m for m in sim.take(300) if m.valid][:200]
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    worker = agent._worker
    assert worker is not None
    try:
        assert await _until(lambda: agent.mqtt.connected and agent.mqtt.subscriptions(), 20)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGSTOP)
        await asyncio.to_thread(publish, msgs, "127.0.0.1", 1883, qos=1)
        assert await _until(lambda: bool(worker._in_flight), 10)
        saving = threading.Thread(target=lambda: pytest.raises(
            TimeoutError, worker.save, agent.writer, agent.boot), daemon=True)
        saving.start()  # the periodic save, waiting on the hung worker
        await asyncio.sleep(0.2)
    finally:
        stopping = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 60)
    took = time.monotonic() - stopping
    assert took < 6.0 + 1.5, took
    assert worker._proc is not None and worker._proc.returncode == -signal.SIGKILL


# -- the fallback replays what the worker left in the order it was sent ------------

_REJECTED = (OP_REJECTED, ("bulk-tank", "tank-x"), "out_of_range", "x")


def _range_alerts(sink: Sink, name: str) -> list[str]:
    return [a.state for b in sink.batches if b[0] == name for i in b[2] for a in b[2][i]
            if a.rule == "sensor.range"]


def _until_sent(worker: DetectionWorker, calls: int) -> None:
    end = time.monotonic() + 10
    while len(worker._calls_waiting) < calls:
        assert time.monotonic() < end, "the call was not sent"
        time.sleep(0.01)


def test_a_call_left_at_a_fallback_sees_only_the_batches_sent_before_it(
        tmp_path: Path) -> None:
    """Review: the fallback replayed the calls the worker left after the batches it
    left, whatever the order sent: the status page's open alerts, asked before a
    batch that raises one, showed it."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 300, seed=21)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    assert worker._proc is not None
    try:
        worker.send([worker.reading_op(r) for r in readings], "first")
        assert worker.flush(30)
        os.kill(worker._proc.pid, signal.SIGSTOP)  # hung: nothing is answered
        asked: list[Any] = []
        asking = threading.Thread(target=lambda: asked.append(worker.open_alerts()),
                                  daemon=True)
        asking.start()
        _until_sent(worker, 1)
        worker.send([_REJECTED, _REJECTED], "raises")  # sent after the call
        os.kill(worker._proc.pid, signal.SIGKILL)
        asking.join(30)
        assert worker.flush(30) and worker.in_process
        assert _range_alerts(sink, "raises") == ["raised"]
        assert [a["rule"] for a in asked[0]].count("sensor.range") == 0  # 1 before
    finally:
        worker.close()


def test_a_profile_switch_left_at_a_fallback_applies_after_the_batches_before_it(
        tmp_path: Path) -> None:
    """A batch, then a profile switch (here: rules off), neither answered when the
    worker dies: the fallback judged the batch by the new rules (it set the latest
    rules before replaying anything), not by those in effect when it was sent."""
    config = _config(tmp_path)
    ingestor, readings = _readings(config, 300, seed=22)
    sink = Sink()
    worker = _worker(config, ingestor, sink)
    assert worker._proc is not None
    try:
        off = worker.rules_config().model_copy(update={"enabled": False})
        worker.send([worker.reading_op(r) for r in readings], "first")
        assert worker.flush(30)
        os.kill(worker._proc.pid, signal.SIGSTOP)
        worker.send([_REJECTED, _REJECTED], "raises")  # judged with the rules on
        worker.reconfigure_rules(off)
        _until_sent(worker, 1)
        os.kill(worker._proc.pid, signal.SIGKILL)
        assert worker._proc.wait(10) == -signal.SIGKILL
        worker.send([_REJECTED, _REJECTED], "after")  # with the rules off
        assert worker.flush(30) and worker.in_process
        assert _range_alerts(sink, "raises") == ["raised"]  # [] before
        assert _range_alerts(sink, "after") == []
        assert worker.rules_config().enabled is False
    finally:
        worker.close()


def test_a_write_blocked_on_a_hung_workers_full_pipe_ends_when_it_is_killed(
        tmp_path: Path) -> None:
    """Review: a write to a hung worker whose pipe is full (the last save's
    request behind the last batches) has no timeout of its own; the stop kills
    the worker at its deadline (``kill``), and the write then ends."""
    config = _config(tmp_path)
    ingestor, _ = _readings(config, 10, seed=17)
    worker = _worker(config, ingestor, Sink())
    proc = worker._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # hung: reads nothing from its pipe
    writing = threading.Thread(target=lambda: worker._send(("x" * (32 << 20),)), daemon=True)
    try:
        writing.start()
        writing.join(1.0)
        assert writing.is_alive()  # blocked on the full pipe
        worker.kill()
        writing.join(5.0)
        assert not writing.is_alive()
        assert proc.wait(5.0) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        worker.close(2.0)
