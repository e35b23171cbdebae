"""The one thread that writes the buffer (the datasette write-thread pattern).

Producers call :meth:`StoreWriter.submit` from any thread; the writer groups
items into one ``BEGIN IMMEDIATE ... COMMIT`` per ``commit_max_messages`` or
``commit_interval_ms``, whichever comes first (R8), and only then runs each
item's ``on_commit`` (which sends the MQTT PUBACK, R2). When the disk fails
the group is kept, nothing is acknowledged, the fault is reported, and the
group is retried with backoff until a commit succeeds (R5).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent import metrics
from agent.clock import Clock
from agent.config.model import StoreConfig
from agent.errors import StorageFault
from agent.store import db, migrations
from agent.store.inserts import GroupStats, Item, insert

log = logging.getLogger(__name__)

T = TypeVar("T")
OnCommit = Callable[[], None]

RETRY_MIN_S = 0.05
RETRY_MAX_S = 5.0


@dataclass(slots=True)
class _Pending:
    item: Item
    on_commit: OnCommit | None


@dataclass(slots=True)
class _Call:
    fn: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future[Any]


_STOP = object()


class StoreWriter:
    """Owns the only write connection to the buffer database."""

    def __init__(
        self,
        path: Path,
        config: StoreConfig,
        clock: Clock,
        on_fault: Callable[[StorageFault], None] | None = None,
    ) -> None:
        self.path = path
        self._config = config
        self._clock = clock
        self._on_fault = on_fault
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._close_deadline: float | None = None
        self._healthy = True
        self._last_fault: StorageFault | None = None
        # Opening here (not on the thread) lets start-up fail loudly and gives
        # the epoch and recovery report to the caller straight away.
        opened = db.open_checked(path)
        self._conn = opened.conn
        self.moved_aside: Path | None = opened.moved_aside
        self.corruption: tuple[str, ...] = opened.problems
        migrations.migrate(self._conn, clock.wall())
        self._epoch = migrations.epoch_of(self._conn)

    # ----- public API

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_fault(self) -> StorageFault | None:
        return self._last_fault

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def submit(self, item: Item, on_commit: OnCommit | None = None) -> None:
        """Queue ``item``; ``on_commit`` runs on the writer after its COMMIT.

        After close the item is dropped unacknowledged: the broker resends it.
        """
        if self._closed:
            log.warning("store writer closed; %s not stored (not acknowledged)", item.record_id)
            return
        self._queue.put(_Pending(item, on_commit))

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Run ``fn(conn)`` in its own transaction on the writer thread."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(RuntimeError("store writer is closed"))
        else:
            self._queue.put(_Call(fn, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued (trying until ``timeout``) and stop. Idempotent."""
        with self._lock:
            if self._closed:
                thread = None
            else:
                self._closed = True
                self._close_deadline = self._clock.monotonic() + timeout
                self._queue.put(_STOP)
                thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
            if thread.is_alive():
                log.error("store writer did not stop within %.1f s", timeout)
                return
        if self._thread is None or not self._thread.is_alive():
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    # ----- the writer thread

    def _run(self) -> None:
        pending: list[_Pending] = []
        group_deadline = 0.0
        retry_at: float | None = None  # set while the disk is failing
        retry_delay = RETRY_MIN_S
        interval = self._config.commit_interval_ms / 1000
        stopping = False
        while True:
            now = self._clock.monotonic()
            if stopping:
                wait: float | None = 0.0
            elif retry_at is not None:
                wait = max(0.0, retry_at - now)
            elif pending:
                wait = max(0.0, group_deadline - now)
            else:
                wait = None
            msg: Any = None
            try:
                msg = self._queue.get(timeout=wait) if wait != 0.0 else self._queue.get_nowait()
            except queue.Empty:
                pass
            if msg is _STOP:
                stopping = True
            elif isinstance(msg, _Call):
                if pending and retry_at is None:
                    self._flush(pending)  # keep queue order: records before the call
                    pending = []
                self._run_call(msg)
            elif isinstance(msg, _Pending):
                if not pending:
                    group_deadline = self._clock.monotonic() + interval
                pending.append(msg)

            now = self._clock.monotonic()
            due = len(pending) >= self._config.commit_max_messages or now >= group_deadline
            if stopping and msg is None:
                due = True  # queue drained: commit everything left
            if pending and due and (retry_at is None or now >= retry_at or stopping):
                if self._flush(pending):
                    pending = []
                    retry_at = None
                    retry_delay = RETRY_MIN_S
                else:
                    retry_at = self._clock.monotonic() + retry_delay
                    retry_delay = min(RETRY_MAX_S, retry_delay * 2)
            if stopping and msg is None:
                if not pending:
                    break
                deadline = self._close_deadline or 0.0
                if self._clock.monotonic() >= deadline:
                    log.error(
                        "store writer stopping with %d uncommitted items (not acknowledged)",
                        len(pending),
                    )
                    break
                # Disk still failing during shutdown: pause, then try again.
                threading.Event().wait(min(retry_delay, max(0.0, deadline - now)))
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    def _flush(self, group: list[_Pending]) -> bool:
        """Commit ``group``; run its acks. False (nothing acked) if the disk failed."""
        started = self._clock.monotonic()
        try:
            try:
                stats = self._write_group(group, guarded=False)
            except Exception as err:
                if db.fault_kind(err) is not None:
                    raise
                # Some item is bad (not the disk): redo the group one savepoint
                # per item so the bad one is skipped and the rest commit (R9).
                stats = self._write_group(group, guarded=True)
        except sqlite3.Error as err:
            self._fault(err, f"group of {len(group)}")
            return False
        metrics.COMMITS.inc()
        metrics.COMMIT_SECONDS.observe(self._clock.monotonic() - started)
        for firmware, n in stats.stored_by_firmware.items():
            metrics.READINGS_STORED.labels(firmware=firmware).inc(n)
        for reason, n in stats.rejected_by_reason.items():
            metrics.REJECTED.labels(reason=reason).inc(n)
        if stats.dedup_hits:
            metrics.DEDUP_HITS.inc(stats.dedup_hits)
        self._recovered()
        for p in group:
            if p.on_commit is not None:
                try:
                    p.on_commit()
                except Exception:
                    log.exception("store: on_commit callback failed")
        return True

    def _write_group(self, group: list[_Pending], guarded: bool) -> GroupStats:
        stats = GroupStats()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for p in group:
                if not guarded:
                    insert(self._conn, p.item, stats)
                    continue
                self._conn.execute("SAVEPOINT item")
                try:
                    insert(self._conn, p.item, stats)
                except Exception as err:
                    if db.fault_kind(err) is not None:
                        raise
                    self._conn.execute("ROLLBACK TO item")
                    # Unacknowledged: the broker keeps it and resends it later.
                    log.exception("store: cannot insert %s", p.item.record_id)
                    p.on_commit = None
                self._conn.execute("RELEASE item")
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return stats

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = call.fn(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except Exception as err:  # noqa: BLE001 - the caller gets it through the future
            if isinstance(err, sqlite3.Error) and db.fault_kind(err) is not None:
                self._fault(err, "call")
            call.future.set_exception(err)
            return
        call.future.set_result(result)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("store: rollback failed")

    def _fault(self, err: sqlite3.Error, what: str) -> None:
        kind = db.fault_kind(err) or "sqlite_error"
        fault = StorageFault(kind, f"{what}: {err}")
        first = self._healthy
        self._healthy = False
        self._last_fault = fault
        metrics.STORAGE_FAULTS.labels(kind=kind).inc()
        if first:
            log.error("store: %s; nothing acknowledged, will retry", fault)
        if self._on_fault is not None:
            try:
                self._on_fault(fault)
            except Exception:
                log.exception("store: on_fault callback failed")

    def _recovered(self) -> None:
        if not self._healthy:
            log.warning("store: commits succeed again after %s", self._last_fault)
        self._healthy = True
