"""Detection in a separate process (``detect.worker: process``).

The daemon runs under one GIL; detection (anomaly scores and the dairy rules)
is about 40 % of its CPU per message in a drain. Here it runs in a worker
process on the other core, fed in batches and pipelined: the processing thread
parses and sends batch N+1 while the worker scores batch N. A reader thread
takes everything the worker answers as soon as it comes; a store thread hands
each scored batch to the daemon, which stores it in order through the one
writer. Nothing changes for acknowledgement: a message is acknowledged only
after its record is committed, and a reading is stored only with its scores.
A store that refuses records (the buffer at its byte cap, a slow SD card)
holds the store thread and, through the slots, the processing thread; never
the answers to calls.

Wire format (pickled, one message per batch): a reading is a compact tuple
``(OP_READING, sensor id, firmware, animal id, source ts, wall ts, mono ns,
boot id, clock synced, values, ranges)``, where ``ranges`` carries the valid
ranges of streams the worker has not been told about yet (or None). The worker
answers ``(seq, results, alerts, rule state)``: per op its scores (a dict),
None, or False when detection failed on it; alerts by op index; and now and
then its rule state (pickled, else None; see ``_RuleStates``).

Everything else the daemon asks of detection (tick, farm events, vision
records, feedback, snooze, acknowledge, open alerts, precision, rule
reconfiguration, state save and restore) is a call through the same pipe, so it
sees every reading sent before it. Ticks, vision records and farm events do
not wait for their answer: their alerts go to the store thread like a batch's
(``store_alerts``), after the batches sent before them, exactly once. Profile
switches and the camera rules' thresholds do not wait either, not even for the
pipe: they are queued and sent by whichever thread holds it next.

If the worker dies, the reader thread falls back to in-process detection
(restored from the last saved state, then from the rule state the worker sent
last: alert changes at most about a second old, the rest at most
RULE_STATE_EVERY_S), scores the batches the worker never answered and answers
the calls it left, in the order they were sent, and logs it: no reading is
lost; the anomaly detectors' learning since the last save is. A worker that
answers no tick for HUNG_AFTER_S is killed, and the same follows.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.clock import Clock, SystemClock
from agent.config.model import DetectConfig, LoggingConfig
from agent.config.rules import RulesConfig
from agent.detect.farm_events import FarmEvent
from agent.detect.rules.body_condition import BcsLossParams, MilkParams
from agent.errors import InvalidPayload
from agent.records.types import Alert, BodyCondition, MilkCheck, Reading, Stamp
from agent.runtime.detection import Detection, calibration_check

if TYPE_CHECKING:
    from agent.store.writer import StoreWriter

log = logging.getLogger("agent.runtime.detect_worker")  # also when run as __main__

OP_READING = 0
OP_REJECTED = 1  # (OP_REJECTED, (firmware, sensor id), reason, detail)
OP_FARM = 2  # (OP_FARM, FarmEvent)

# Batches sent and not yet stored; beyond it the processing thread waits.
MAX_IN_FLIGHT = 4
CALL_TIMEOUT_S = 60.0
# The worker sends its rule state (alert lifecycle included) with an answer at
# most this often after alerts were raised, cleared, acknowledged, snoozed or
# judged, and this often after other changes (readings): the fallback's start.
RULE_STATE_ALERTS_S = 1.0
RULE_STATE_EVERY_S = 10.0
# A tick unanswered this long: the worker is hung (it answers a tick after at most
# MAX_IN_FLIGHT batches, whatever the store does); it is killed, and detection
# falls back to this process as when it dies.
HUNG_AFTER_S = 60.0
# Of close()'s timeout, kept for a worker that did not stop to be killed and
# reaped and for the threads to end: the timeout bounds all of it.
KILL_WAIT_S = 1.0
# Calls whose answer is alerts: stored by the store thread, nobody waits.
ALERT_CALLS = frozenset({"tick", "on_vision", "on_farm_event"})
# Calls that change the alert lifecycle's state.
STATE_CALLS = frozenset({"feedback", "snooze", "acknowledge", "restore", "reconfigure_rules"})

Ranges = dict[tuple[str, str], tuple[float, float] | None]
Deliver = Callable[[Any, list[Any], dict[int, list[Alert]]], None]
StoreAlerts = Callable[[list[Alert]], None]


def reading_op(reading: Reading, ranges: Ranges | None) -> tuple[Any, ...]:
    stamp = reading.stamp
    return (OP_READING, reading.sensor_id, reading.firmware, reading.animal_id,
            reading.source_ts, stamp.wall_ts, stamp.mono_ns, stamp.boot_id,
            stamp.clock_synced, reading.values, ranges)


def run_ops(det: Detection, ops: list[tuple[Any, ...]], ranges: Ranges
            ) -> tuple[list[Any], dict[int, list[Alert]]]:
    """Detection over one batch of ops (in the worker, or in process after a
    worker died): per op its scores (reading), None, or False (detection
    failed: the message is not stored, as when it fails in process)."""
    results: list[Any] = []
    alerts: dict[int, list[Alert]] = {}
    for i, op in enumerate(ops):
        code = op[0]
        try:
            if code == OP_READING:
                (_, sid, fw, animal, src, wall, mono, boot, synced, values, rng) = op
                if rng:
                    ranges.update(rng)
                reading = Reading("", sid, fw, "", values, values, {},
                                  Stamp(wall, mono, boot, synced), animal, src)
                out = det.on_reading(reading)
                results.append(reading.attributes.get("anomaly"))
            elif code == OP_REJECTED:
                out = det.on_rejected(op[1], InvalidPayload(op[2], op[3]))
                results.append(None)
            elif code == OP_FARM:
                out = det.on_farm_event(op[1])
                results.append(None)
            else:
                raise ValueError(f"unknown op {code!r}")
        except Exception:
            log.exception("detection failed on op %d (%s)", i, code)
            results.append(False)
            continue
        if out:
            alerts[i] = out
    return results, alerts


def _worker_main(fd: int) -> None:
    """The worker process: answer batches and calls until the pipe closes."""
    # The daemon stops it (or its pipe closes): a SIGTERM for the whole service
    # must not kill it before the daemon has taken its last results.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from agent.runtime.logging_setup import setup_logging

    conn = Connection(fd)
    try:
        config, logging_config, due_by_sensor = conn.recv()
    except (EOFError, OSError):
        return

    setup_logging(logging_config)
    clock = SystemClock()
    ranges: Ranges = {}
    det = Detection(config, clock, calibration=calibration_check(due_by_sensor, clock),
                    value_range=lambda _fw, sid, metric: ranges.get((sid, metric)))
    log.info("detection worker %d ready", os.getpid())
    try:
        _serve(conn, det, ranges)
    except (EOFError, OSError):
        pass  # the daemon is gone (or closed the pipe): nothing more to answer


def _serve(conn: Connection, det: Detection, ranges: Ranges) -> None:
    states = _RuleStates(det)
    while True:
        msg = conn.recv()
        if msg is None:
            conn.send(None)
            return
        seq, payload = msg
        if seq >= 0:
            results, alerts = run_ops(det, payload, ranges)
            conn.send((seq, results, alerts, states.after(bool(payload), bool(alerts))))
            continue
        name, args = payload
        try:
            value: Any = (_states(det) if name == "states"
                          else getattr(det, name)(*args))
            answer: tuple[Any, ...] = (seq, True, value)
        except Exception as err:  # noqa: BLE001 - returned to the caller, raised there
            value, answer = None, (seq, False, err)
        changed = name in STATE_CALLS or (name in ALERT_CALLS and bool(value))
        conn.send((*answer, states.after(changed, changed)))


def _states(det: Detection) -> dict[str, Any]:
    return det.states()


class _RuleStates:
    """When the worker sends its rule state with an answer: the first change of
    the alerts' state after a quiet second at once, later ones with the next
    answer a second on (the daemon ticks every second); other changes every
    RULE_STATE_EVERY_S. A 40-cow barn's is about 190 KiB and 4 ms to take."""

    def __init__(self, det: Detection) -> None:
        self.det = det
        self.last = -1e18
        self.changed = False
        self.alerts_changed = False

    def after(self, changed: bool, alerts_changed: bool) -> bytes | None:
        self.changed |= changed or alerts_changed
        self.alerts_changed |= alerts_changed
        if not self.changed:
            return None
        now = time.monotonic()
        if now - self.last < (RULE_STATE_ALERTS_S if self.alerts_changed
                              else RULE_STATE_EVERY_S):
            return None
        self.last = now
        self.changed = self.alerts_changed = False
        return pickle.dumps(self.det.rule_states(), protocol=pickle.HIGHEST_PROTOCOL)


class _Pending:
    __slots__ = ("context", "ops", "seq")

    def __init__(self, seq: int, ops: list[tuple[Any, ...]], context: Any) -> None:
        self.seq, self.ops, self.context = seq, ops, context


class _Scored:
    """What the store thread stores next: a scored batch (holding a slot), or
    the alerts of a call (``batch`` False)."""

    __slots__ = ("alerts", "batch", "context", "results")

    def __init__(self, context: Any, results: list[Any], alerts: dict[int, list[Alert]],
                 batch: bool = True) -> None:
        self.context, self.results, self.alerts, self.batch = context, results, alerts, batch


class DetectionWorker:
    """The daemon's side: the same methods as :class:`Detection` for what the
    daemon asks, plus :meth:`send` for batches (results go to ``deliver``, on
    the store thread, in the order sent). The alerts of ticks, vision records
    and farm events go to ``store_alerts`` on the same thread, in order; those
    calls return no alerts themselves."""

    def __init__(
        self,
        config: DetectConfig,
        logging_config: LoggingConfig,
        clock: Clock,
        store_path: Path,
        due_by_sensor: dict[str, float],
        value_range: Callable[[str, str, str], tuple[float, float] | None],
        deliver: Deliver,
        store_alerts: StoreAlerts,
    ) -> None:
        self.config = config
        self._logging = logging_config
        self.clock = clock
        self._store_path = store_path
        self._due = due_by_sensor
        self._value_range = value_range if config.anomaly_detector != "default" else None
        self._told: set[tuple[str, str]] = set()  # streams whose range the worker has
        self._deliver = deliver
        self._store_alerts = store_alerts
        # One count for batches (seq = n) and calls (seq = -1 - n), taken in the
        # order they go into the pipe: the fallback replays what is left in it.
        self._sent = itertools.count(0)
        # The order of writes to the pipe; held by the fallback while it takes over.
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()  # the queues below and the calls waiting
        self._save_lock = threading.Lock()
        self._in_flight: collections.deque[_Pending] = collections.deque()  # unanswered
        self._scored: collections.deque[_Scored] = collections.deque()  # not yet stored
        self._calls_waiting: dict[int, tuple[str, tuple[Any, ...],
                                             concurrent.futures.Future[Any]]] = {}
        # Calls nobody waits for, sent by whoever holds the pipe next (_release_send).
        self._queued: collections.deque[tuple[str, tuple[Any, ...],
                                              concurrent.futures.Future[Any]]] = (
            collections.deque())
        self._tick_pending = False  # one tick at a time: a later one supersedes
        self._tick_since = 0.0  # when the pending tick was asked
        self.ticks_skipped = 0
        self._slots = threading.Semaphore(MAX_IN_FLIGHT)
        self._idle = threading.Condition(self._lock)  # nothing in flight, nothing to store
        self._work = threading.Condition(self._lock)  # something to store
        self._inline: Detection | None = None  # after the worker died
        self._inline_ranges: Ranges = {}
        self._vision: tuple[BcsLossParams, MilkParams] | None = None
        self._rules: RulesConfig | None = None  # the rules the worker has (answered)
        self._rule_state: tuple[bytes, float] | None = None  # the worker's latest, when
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | _NoConnection | None = None
        self._reader: threading.Thread | None = None
        self._storer: threading.Thread | None = None
        self._closing = False
        self._stored_all = False  # close(): the store thread ends once nothing is left
        self._before_start: list[tuple[str, tuple[Any, ...]]] = []

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self._storer = threading.Thread(target=self._store_loop, name="dairy-edge-detect-store",
                                        daemon=True)
        self._storer.start()
        # A fresh interpreter (the daemon has threads: never fork it), started as a
        # plain child rather than by multiprocessing, whose spawn also starts a
        # resource tracker process (13 MiB resident) this does not need.
        here, there = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # this copy of the agent
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.runtime.detect_worker", str(there.fileno())],
                pass_fds=(there.fileno(),), env=env, stdin=subprocess.DEVNULL)
        except (OSError, ValueError) as err:  # no interpreter, no process slot, no memory
            here.close()
            there.close()
            log.error("detection worker could not be started (%s)", err)
            self._conn = _NoConnection()
            self._take_over()
            return
        there.close()
        conn = Connection(here.detach())
        conn.send((self.config, self._logging, self._due))
        for name, args in self._before_start:  # answers nobody waits for
            conn.send((-1 - next(self._sent), (name, args)))
        self._before_start.clear()
        self._proc, self._conn = proc, conn
        self._reader = threading.Thread(target=self._read_loop, name="dairy-edge-detect-reader",
                                        daemon=True)
        self._reader.start()
        log.info("detection runs in worker process %d", proc.pid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def in_process(self) -> bool:
        """True once the worker died and detection fell back to this process."""
        return self._inline is not None

    def flush(self, timeout: float) -> bool:
        """Wait until every batch sent (and every call's alerts) has been stored."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._in_flight and not self._scored,
                                       timeout)

    def kill(self) -> None:
        """The stop's deadline has passed: kill the worker now. A write blocked on
        its full pipe (the last batches, the last save's request: no timeout of
        their own) then fails, and the stop goes on."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            log.error("detection worker %d still busy at the stop deadline; killed", proc.pid)
            proc.kill()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker (after :meth:`flush` and the last :meth:`save`) within
        ``timeout``, a kill included (the daemon's stop shares one deadline): its
        pipe is shut for writing once no other thread writes to it (never written
        beside one; a write stuck on a hung worker is waited for at most a
        second), the worker answers what it has and exits, or is killed
        KILL_WAIT_S before the end."""
        deadline = time.monotonic() + timeout

        def left(keep: float = 0.0) -> float:
            return max(0.0, deadline - keep - time.monotonic())

        with self._lock:
            self._closing = True
            conn, proc = self._conn, self._proc
        got = self._send_lock.acquire(timeout=min(1.0, left(KILL_WAIT_S)))
        try:
            if conn is not None and not isinstance(conn, _NoConnection) and self._inline is None:
                try:
                    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                        sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        finally:
            if got:
                self._send_lock.release()
        if proc is not None:
            _end_process(proc, left)
        if self._reader is not None:
            self._reader.join(left())
        with self._lock:  # calls the worker will never answer now: settle them
            waiting = [f for _, _, f in self._calls_waiting.values()]
            waiting += [f for _, _, f in self._queued]
            self._calls_waiting.clear()
            self._queued.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(TimeoutError("detection worker stopped"))
        with self._work:
            self._stored_all = True
            self._work.notify_all()
        if self._storer is not None:
            self._storer.join(left())
        if conn is not None:
            conn.close()

    # -- batches ----------------------------------------------------------------
    def reading_op(self, reading: Reading) -> tuple[Any, ...]:
        """The compact op of a reading, with the ranges of its new streams."""
        ranges: Ranges | None = None
        ranged = self._value_range
        if ranged is not None:
            sid, told = reading.sensor_id, self._told
            for metric in reading.values:
                key = (sid, metric)
                if key not in told:
                    told.add(key)
                    if ranges is None:
                        ranges = {}
                    ranges[key] = ranged(reading.firmware, sid, metric)
        return reading_op(reading, ranges)

    def send(self, ops: list[tuple[Any, ...]], context: Any) -> None:
        """Score ``ops``; ``deliver(context, results, alerts)`` follows on the store
        thread, in order. Blocks while MAX_IN_FLIGHT batches wait to be scored or
        stored (backpressure). A batch without ops (alerts to store) goes through
        the worker too, to keep its place."""
        self._slots.acquire()  # released by the store thread once the batch is stored
        self._send_lock.acquire()
        try:
            with self._lock:
                inline = self._inline
                if inline is None:
                    pending = _Pending(next(self._sent), ops, context)
                    self._in_flight.append(pending)
            if inline is None:
                # Not under _lock: the reader thread must be able to take results
                # while this waits for room in the pipe.
                self._send((pending.seq, ops))
            else:
                results, alerts = run_ops(inline, ops, self._inline_ranges)
                self._to_store(_Scored(context, results, alerts))
        finally:
            self._release_send()

    def _send(self, msg: Any) -> None:
        """To the worker (under _send_lock). A closed pipe is left to the reader
        thread: it sees the worker gone and takes over what was sent."""
        try:
            assert self._conn is not None
            self._conn.send(msg)
        except (OSError, ValueError):
            log.warning("detection worker pipe closed while sending")

    def _release_send(self) -> None:
        """Send the calls queued meanwhile, then let go of the pipe. A call queued
        just as it is let go is sent by whoever takes it next (or here, again)."""
        while True:
            try:
                self._send_queued()
            finally:
                self._send_lock.release()
            with self._lock:
                if not self._queued or self._closing:
                    return
            if not self._send_lock.acquire(blocking=False):
                return  # its holder sends them

    def _send_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queued or self._closing:
                    return
                name, args, future = self._queued.popleft()
                inline, seq = self._register(name, args, future)
            if inline is None:
                self._send((seq, (name, args)))
            else:
                self._call_here(inline, name, args, future)

    def _register(self, name: str, args: tuple[Any, ...],
                  future: concurrent.futures.Future[Any]) -> tuple[Detection | None, int]:
        """Under ``_lock``: the fallback's Detection if there is one, else the call
        registered as waiting for the worker's answer under a new sequence number."""
        inline = self._inline
        if inline is not None:
            return inline, 0
        seq = -1 - next(self._sent)
        self._calls_waiting[seq] = (name, args, future)
        return None, seq

    def _to_store(self, item: _Scored) -> None:
        with self._work:
            self._scored.append(item)
            self._work.notify_all()

    # -- the reader thread: answers, as they come ------------------------------------
    def _read_loop(self) -> None:
        conn = self._conn
        assert isinstance(conn, Connection)
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            try:
                self._answer(msg)
            except Exception:
                log.exception("detection worker: an answer could not be taken; stopping "
                              "the worker")
                if self._proc is not None:
                    self._proc.kill()
                break
        if not self._closing:
            self._take_over()

    def _answer(self, msg: tuple[Any, ...]) -> None:
        seq, rule_state = msg[0], msg[-1]
        if rule_state is not None:
            self._rule_state = (rule_state, time.monotonic())
        if seq >= 0:
            with self._lock:
                pending = self._in_flight[0]
                assert pending.seq == seq, (pending.seq, seq)
                self._in_flight.popleft()
                self._scored.append(_Scored(pending.context, msg[1], msg[2]))
                self._work.notify_all()
            return
        with self._lock:
            waiting = self._calls_waiting.pop(seq, None)
        if waiting is not None:
            name, args, future = waiting
            if name == "reconfigure_rules" and msg[1]:
                self._rules = args[0]  # the worker's rules now: a fallback starts from them
            self._settle(name, future, msg[1], msg[2])

    def _settle(self, name: str, future: concurrent.futures.Future[Any], ok: bool,
                value: Any) -> None:
        """A call's answer (the worker's, or this process's after it died)."""
        if name == "tick":
            self._tick_pending = False
        if ok and name in ALERT_CALLS and value:
            self._to_store(_Scored(None, [], {0: value}, batch=False))
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    # -- the store thread: scored batches and alerts, in order -------------------------
    def _store_loop(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: bool(self._scored) or self._stored_all)
                if not self._scored:
                    return
                item = self._scored[0]
            try:
                if item.batch:
                    self._deliver(item.context, item.results, item.alerts)
                else:
                    self._store_alerts(item.alerts[0])
            except Exception:
                log.exception("storing a detected batch failed")
            with self._idle:
                self._scored.popleft()
                if item.batch:
                    self._slots.release()
                self._idle.notify_all()

    # -- the fallback -------------------------------------------------------------------
    def _take_over(self) -> None:
        """The worker died: detection in this process from the last saved state;
        what the worker never answered is done here. If even that fails, the
        agent exits (systemd starts it again; nothing unacknowledged is lost)
        rather than wait for answers that never come."""
        try:
            self._take_over_here()
        except BaseException:
            log.critical("detection could not fall back to this process; exiting",
                         exc_info=True)
            logging.shutdown()
            os._exit(70)  # EX_SOFTWARE

    def _take_over_here(self) -> None:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(1.0)
            except subprocess.TimeoutExpired:
                proc.kill()  # its pipe is gone: it can do nothing more for us
        det = Detection(self.config, self.clock,
                        calibration=calibration_check(self._due, self.clock),
                        value_range=self._value_range)
        # No new batch or call until those in flight are done here, in order.
        self._send_lock.acquire()
        try:
            if self._vision is not None:
                det.configure_vision(*self._vision)
            try:
                det.restore(self._store_path)
            except Exception:
                log.exception("restoring detection state failed; relearning")
            kept = self._rule_state
            age = None
            if kept is not None:
                try:
                    det.restore_rule_states(pickle.loads(kept[0]))
                    age = time.monotonic() - kept[1]
                except Exception:
                    log.exception("the worker's last rule state could not be restored; "
                                  "the saved one stays")
            if self._rules is not None:
                det.reconfigure_rules(self._rules)
            with self._lock:
                left = list(self._in_flight)
                calls = list(self._calls_waiting.items())
                self._calls_waiting.clear()
            log.error("detection worker %s died (exit code %s); detection falls back to "
                      "this process, restored from the last saved state%s; the %d batches "
                      "it had not answered are scored here", self.pid, code,
                      "" if age is None else f" and its rule state of {age:.1f} s ago",
                      len(left))
            # In the order sent: a call sees the batches sent before it and no
            # other (open alerts, an acknowledgement), a profile switch judges
            # the batches after it only, and alerts are stored in that order.
            for _, item in sorted([(p.seq, p) for p in left]
                                  + [(-1 - seq, call) for seq, call in calls],
                                  key=lambda sent: sent[0]):
                if isinstance(item, _Pending):
                    results, alerts = run_ops(det, item.ops, self._inline_ranges)
                    self._to_store(_Scored(item.context, results, alerts))
                else:
                    self._call_here(det, *item)
            with self._idle:
                self._inline = det
                self._in_flight.clear()
                self._idle.notify_all()
        finally:
            self._release_send()

    # -- calls ----------------------------------------------------------------------
    @staticmethod
    def _run_inline(det: Detection, name: str, args: tuple[Any, ...]) -> Any:
        return det.states() if name == "states" else getattr(det, name)(*args)

    def _call_here(self, det: Detection, name: str, args: tuple[Any, ...],
                   future: concurrent.futures.Future[Any]) -> None:
        try:
            value = self._run_inline(det, name, args)
        except Exception as err:  # noqa: BLE001 - raised in the caller
            self._settle(name, future, False, err)
        else:
            self._settle(name, future, True, value)

    def _call(self, name: str, *args: Any, wait: bool = True,
              timeout: float = CALL_TIMEOUT_S) -> Any:
        """``name(*args)`` on the worker's Detection, after every batch sent before.
        Without ``wait``, returns at once, not even waiting for the pipe (a
        failure is logged): a profile switch comes from the event loop, which
        must wait out neither a busy pipe nor a fallback taking over."""
        deadline = time.monotonic() + timeout  # for the pipe and the answer together
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closing and wait:  # nobody would answer: do not wait for it
                raise TimeoutError(f"detection worker: {name}: the worker is stopping")
            if self._conn is None:  # before start (configuration): sent at start
                self._before_start.append((name, args))
                return None
            if not wait:
                future.add_done_callback(partial(_log_failure, name))
                self._queued.append((name, args, future))
        if not wait:
            if self._send_lock.acquire(blocking=False):
                self._release_send()
            return None
        if not self._send_lock.acquire(timeout=timeout):
            raise TimeoutError(f"detection worker: {name}: the pipe stayed busy")
        try:
            with self._lock:
                inline, seq = self._register(name, args, future)
            if inline is None:
                self._send((seq, (name, args)))
        finally:
            self._release_send()
        if inline is not None:
            return self._run_inline(inline, name, args)
        return future.result(max(0.0, deadline - time.monotonic()))

    def on_farm_event(self, event: FarmEvent) -> list[Alert]:
        """Its alerts go to ``store_alerts``."""
        if self.config.enabled:
            self._call("on_farm_event", event, wait=False)
        return []

    def on_vision(self, record: BodyCondition | MilkCheck) -> list[Alert]:
        """Its alerts go to ``store_alerts``."""
        self._call("on_vision", record, wait=False)
        return []

    def tick(self, now_mono: float) -> list[Alert]:
        """Its alerts go to ``store_alerts``. While a tick is unanswered (the
        worker busy), the next is skipped: a later one checks the same. One
        unanswered for HUNG_AFTER_S: the worker is hung, and killed."""
        if not self.config.enabled:
            return []
        now = time.monotonic()
        with self._lock:
            if self._tick_pending:
                self.ticks_skipped += 1
                proc = self._proc
                if (now - self._tick_since < HUNG_AFTER_S or proc is None
                        or self._inline is not None or self._closing):
                    return []
                self._tick_since = float("inf")  # killed once
            else:
                self._tick_pending = self._conn is not None
                self._tick_since = now
                proc = None
        if proc is not None:
            log.error("detection worker %d answered no tick for %.0f s: hung; killed",
                      proc.pid, HUNG_AFTER_S)
            proc.kill()  # the reader thread sees it gone and falls back
            return []
        self._call("tick", now_mono, wait=False)
        return []

    def reconfigure_rules(self, cfg: RulesConfig) -> None:
        if self._conn is None:  # sent first at start: a fallback starts from it
            self._rules = cfg
        self._call("reconfigure_rules", cfg, wait=False)

    def rules_config(self) -> RulesConfig:
        out: RulesConfig = self._call("rules_config")
        return out

    def configure_vision(self, bcs: BcsLossParams, milk: MilkParams) -> None:
        self._vision = (bcs, milk)
        self._call("configure_vision", bcs, milk, wait=False)

    def feedback(self, alert_record_id: str, verdict: str) -> None:
        self._call("feedback", alert_record_id, verdict)

    def precision(self) -> dict[str, float | None]:
        out: dict[str, float | None] = self._call("precision")
        return out

    def snooze(self, alert_id: str, seconds: float) -> bool:
        return bool(self._call("snooze", alert_id, seconds))

    def acknowledge(self, alert_id: str) -> bool:
        return bool(self._call("acknowledge", alert_id))

    def open_alerts(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._call("open_alerts")
        return out

    def restore(self, store_path: Path) -> None:
        self._call("restore", store_path)

    def save(self, writer: StoreWriter, boot: str, timeout: float = CALL_TIMEOUT_S) -> None:
        """Queue the worker's changed state on the writer, within ``timeout`` in all."""
        from agent.store.state import save_states

        deadline = time.monotonic() + timeout
        # One at a time: a periodic save still running at stop must not write its
        # older rule state after the last one.
        if not self._save_lock.acquire(timeout=timeout):
            raise TimeoutError("detection worker: an earlier state save is still running")
        try:
            states = self._call("states", timeout=max(0.0, deadline - time.monotonic()))
            mono_ns = self.clock.monotonic_ns()
            writer.call(lambda conn: save_states(conn, states, mono_ns, boot))
        finally:
            self._save_lock.release()


class _NoConnection:
    """Stands in for the pipe of a worker that never started (sends go nowhere:
    detection runs in this process)."""

    def send(self, obj: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _end_process(proc: subprocess.Popen[bytes], left: Callable[..., float]) -> None:
    """The worker's exit, waited for until KILL_WAIT_S before close()'s end; then
    its kill, waited for until the end."""
    try:
        proc.wait(left(KILL_WAIT_S))
        return
    except subprocess.TimeoutExpired:
        log.warning("detection worker %d did not stop; killed", proc.pid)
    proc.kill()
    try:
        proc.wait(left())
    except subprocess.TimeoutExpired:  # the calls and threads in close() still settle
        log.error("detection worker %d did not end after its kill; stopping without it",
                  proc.pid)


def _log_failure(name: str, future: concurrent.futures.Future[Any]) -> None:
    err = future.exception()
    if err is not None:
        log.error("detection worker: %s failed: %s", name, err)


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]))
