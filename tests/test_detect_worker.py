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
from agent.records import Alert, Reading
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
    """The daemon's ``deliver``: batches as they come back, in order."""

    def __init__(self) -> None:
        self.batches: list[tuple[Any, list[Any], dict[int, list[Alert]]]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, context: Any, results: list[Any],
                 alerts: dict[int, list[Alert]]) -> None:
        with self.lock:
            self.batches.append((context, results, alerts))
            self.threads.add(threading.current_thread().name)


def _worker(config: Config, ingestor: Ingestor, sink: Sink) -> DetectionWorker:
    worker = DetectionWorker(config.detect, LoggingConfig(), SystemClock(), config.store_path,
                             {}, ingestor.value_range, sink)
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
        assert sink.threads == {"dairy-edge-detect-reader"}
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
