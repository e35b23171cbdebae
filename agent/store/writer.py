"""The one thread that writes the buffer (the datasette write-thread pattern).

Producers call :meth:`StoreWriter.submit` from any thread; the writer groups
items into one ``BEGIN IMMEDIATE ... COMMIT`` per ``commit_max_messages`` or
``commit_interval_ms``, whichever comes first (R8), and only then runs each
item's ``on_commit`` (which sends the MQTT PUBACK, R2).

Nothing is acknowledged that is not committed. Two things hold items back:

* the disk fails (ENOSPC, EIO): the group is kept, the fault is reported,
  and the group is retried with backoff until a commit succeeds (R5);
* the buffer is at its byte cap: records that do not fit are kept
  uncommitted (``full`` is True), so their senders get no acknowledgement and
  the broker holds the rest; see agent/store/space.py for what is freed.

Items waiting in memory are capped (``max_pending_items``): beyond it
``submit`` blocks its caller for up to ``submit_timeout_s`` and then refuses.
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
from agent.clock import Clock, boot_id
from agent.config.model import StoreConfig
from agent.errors import StorageFault
from agent.records import Alert, Event, Stamp
from agent.records.types import Quarantined, stable_id
from agent.store import clockfix, db, migrations, outbox, space
from agent.store.inserts import Encoded, GroupStats, Item, encode, exists, insert

log = logging.getLogger(__name__)

T = TypeVar("T")
OnCommit = Callable[[], None]

RETRY_MIN_S = 0.05
RETRY_MAX_S = 5.0
FULL_RETRY_MAX_S = 1.0  # a full buffer is re-checked at least this often


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
        boot: str | None = None,
    ) -> None:
        self.path = path
        self._config = config
        self._clock = clock
        self._boot = boot or boot_id()
        self._on_fault = on_fault
        # Told (on the writer thread) how many records for central each group
        # committed (quarantine entries stay here): the uploader wakes on it
        # instead of polling.
        self.on_group_commit: Callable[[int], None] | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = threading.Semaphore(config.max_pending_items)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._close_deadline: float | None = None
        self._healthy = True
        self._last_fault: StorageFault | None = None
        self._fault_since: float | None = None
        self._reopen = False
        self._offsets: dict[str, float] = {}  # boot id -> wall - mono, once synced
        self._full_since: float | None = None
        self._held = 0
        self._used = 0
        # Pages a row really takes / our estimate of it; learnt from commits.
        self._cost_factor = 1.2
        self._started_mono_ns = clock.monotonic_ns()
        # Opening here (not on the thread) lets start-up fail loudly and gives
        # the epoch and recovery report to the caller straight away.
        opened = db.open_checked(path)
        self._conn = opened.conn
        self.moved_aside: Path | None = opened.moved_aside
        self.corruption: tuple[str, ...] = opened.problems
        migrations.migrate(self._conn, clock.wall())
        self._epoch = migrations.epoch_of(self._conn)
        if self.moved_aside is not None:
            self._report_corrupt(self.moved_aside)
        self._used = space.used_bytes(self._conn)
        metrics.STORE_USED_BYTES.set(self._used)

    # ----- public API

    @property
    def epoch(self) -> str:
        return self._epoch

    def new_epoch(self) -> concurrent.futures.Future[str]:
        """Start a new sync sequence (see ``outbox.start_new_epoch``)."""

        def rotate(conn: sqlite3.Connection) -> str:
            self._epoch = outbox.start_new_epoch(conn)
            return self._epoch

        return self.call(rotate)

    @property
    def boot(self) -> str:
        return self._boot

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def last_fault(self) -> StorageFault | None:
        return self._last_fault

    @property
    def full(self) -> bool:
        """True while records are held back (unacknowledged) for lack of space."""
        return self._full_since is not None

    def buffer_status(self) -> dict[str, Any]:
        """For the status page: bytes used against the cap, and the full state."""
        now = self._clock.monotonic()
        return {
            "used_bytes": self._used,
            "max_bytes": self._config.max_buffer_bytes,
            "full": self.full,
            "full_for_s": None if self._full_since is None else round(now - self._full_since, 1),
            "held": self._held,
            "healthy": self._healthy,
            "fault": str(self._last_fault) if self._last_fault and not self._healthy else None,
        }

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def submit(
        self, item: Item, on_commit: OnCommit | None = None, timeout: float | None = None
    ) -> bool:
        """Queue ``item``; ``on_commit`` runs on the writer after its COMMIT.

        Blocks while ``max_pending_items`` items wait uncommitted (a failing or
        full disk), for at most ``timeout`` (default ``submit_timeout_s``).
        Returns False if the item was refused (timeout, or after close): it is
        then neither stored nor acknowledged, and the broker still has it.
        """
        if self._closed:
            log.warning("store writer closed; %s not stored (not acknowledged)", item.record_id)
            return False
        wait = self._config.submit_timeout_s if timeout is None else timeout
        if not self._slots.acquire(timeout=max(0.0, wait)):
            log.warning("store: %d items pending; %s refused (not acknowledged)",
                        self._config.max_pending_items, item.record_id)
            metrics.STORAGE_FAULTS.labels(kind="backpressure").inc()
            return False
        if self._closed:
            self._slots.release()
            return False
        self._queue.put(_Pending(item, on_commit))
        return True

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Run ``fn(conn)`` in its own transaction on the writer thread."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(RuntimeError("store writer is closed"))
        else:
            self._queue.put(_Call(fn, future))
        return future

    def clock_synced(
        self, offset: float | None = None, boot: str | None = None
    ) -> concurrent.futures.Future[int]:
        """Call once when the clock first becomes synced.

        Corrects every stored record of ``boot`` (default: this boot) made
        before sync, and every such record committed later (items still held
        in memory). ``offset`` is ``wall - mono`` now (default: read from the
        clock). The future gives the number of rows corrected.
        """
        off = clockfix.clock_offset(self._clock) if offset is None else offset
        which = boot or self._boot
        fix = clockfix.correct_unsynced_times(which, off)

        def run(conn: sqlite3.Connection) -> int:
            self._offsets[which] = off  # writer thread only
            return fix(conn)

        return self.call(run)

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
        retry_at: float | None = None  # set while the disk fails or the buffer is full
        retry_delay = RETRY_MIN_S
        interval = self._config.commit_interval_ms / 1000
        next_retention = self._clock.monotonic() + self._config.retention_interval_s
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
                wait = max(0.0, next_retention - now)
            msg: Any = None
            try:
                msg = self._queue.get(timeout=wait) if wait != 0.0 else self._queue.get_nowait()
            except queue.Empty:
                pass
            if msg is _STOP:
                stopping = True
            elif isinstance(msg, _Call):
                if pending and retry_at is None:
                    # Keep queue order: records before the call.
                    held = self._flush(pending)
                    if held is not None:
                        pending = held
                    if held is None or held:
                        retry_at = self._clock.monotonic() + retry_delay
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
                held = self._flush(pending)
                if held is not None and not held:
                    pending = []
                    retry_at = None
                    retry_delay = RETRY_MIN_S
                else:
                    if held is not None:
                        pending = held  # kept for lack of space
                    cap = FULL_RETRY_MAX_S if held is not None else RETRY_MAX_S
                    retry_delay = min(cap, retry_delay)
                    retry_at = self._clock.monotonic() + retry_delay
                    retry_delay = min(cap, retry_delay * 2)
            if not stopping and self._healthy and now >= next_retention:
                next_retention = now + self._config.retention_interval_s
                self._run_retention()
            if stopping and msg is None:
                if not pending or self.full:
                    if pending:
                        log.error("store writer stopping with %d items held for space "
                                  "(not acknowledged)", len(pending))
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

    def _flush(self, group: list[_Pending]) -> list[_Pending] | None:
        """Commit what of ``group`` fits; run its acks; return the items held back
        for lack of space. None (nothing acknowledged) if the disk failed."""
        started = self._clock.monotonic()
        good: list[tuple[_Pending, Encoded]] = []
        for p in group:
            try:
                good.append((p, encode(p.item, self._offsets)))
            except Exception:
                # Cannot even be encoded: not stored, not acknowledged (R9).
                log.exception("store: cannot encode %s", getattr(p.item, "record_id", "?"))
        bad = len(group) - len(good)
        try:
            self._ensure_conn()
            try:
                admitted, held, stats, tally = self._write_group(good, guarded=False)
            except Exception as err:
                if db.fault_kind(err) is not None:
                    raise
                # Some item is bad (not the disk): redo the group one savepoint
                # per item so the bad one is skipped and the rest commit (R9).
                admitted, held, stats, tally = self._write_group(good, guarded=True)
        except sqlite3.Error as err:
            self._fault(err, f"group of {len(group)}")
            return None
        metrics.COMMITS.inc()
        metrics.COMMIT_SECONDS.observe(self._clock.monotonic() - started)
        for firmware, n in stats.stored_by_firmware.items():
            metrics.READINGS_STORED.labels(firmware=firmware).inc(n)
        for reason, n in stats.rejected_by_reason.items():
            metrics.REJECTED.labels(reason=reason).inc(n)
        if stats.dedup_hits:
            metrics.DEDUP_HITS.inc(stats.dedup_hits)
        tally.count_metrics()
        self._set_full(len(held))
        for _ in range(bad + len(admitted)):
            self._slots.release()
        self._recovered()
        for p in admitted:
            if p.on_commit is not None:
                try:
                    p.on_commit()
                except Exception:
                    log.exception("store: on_commit callback failed")
        listener = self.on_group_commit
        synced = sum(1 for p in admitted if not isinstance(p.item, Quarantined))
        if listener is not None and synced:
            try:
                listener(synced)
            except Exception:
                log.exception("store: on_group_commit callback failed")
        return held

    def _write_group(
        self, group: list[tuple[_Pending, Encoded]], guarded: bool
    ) -> tuple[list[_Pending], list[_Pending], GroupStats, space.DropTally]:
        stats = GroupStats()
        tally = space.DropTally()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            admitted, held, used_before = self._make_room(group, tally)
            conn.execute("SAVEPOINT grp")
            for p, enc in admitted:
                if not guarded:
                    insert(conn, p.item, stats, enc)
                    continue
                conn.execute("SAVEPOINT item")
                try:
                    insert(conn, p.item, stats, enc)
                except Exception as err:
                    if db.fault_kind(err) is not None:
                        raise
                    conn.execute("ROLLBACK TO item")
                    # Unacknowledged: the broker keeps it and resends it later.
                    log.exception("store: cannot insert %s", p.item.record_id)
                    p.on_commit = None
                conn.execute("RELEASE item")
            used_after = space.used_bytes(conn)
            self._learn_cost(sum(e.estimate for _, e in admitted), used_after - used_before)
            if used_after > self._config.max_buffer_bytes and admitted:
                # The estimate was too low: the cap is rigid, so hold the whole
                # group and try again with the corrected estimate.
                conn.execute("ROLLBACK TO grp")
                held = [p for p, _ in group]
                admitted = []
                stats = GroupStats()
            conn.execute("RELEASE grp")
            self._record_drops(tally, stats)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._used = space.used_bytes(conn)
        metrics.STORE_USED_BYTES.set(self._used)
        return [p for p, _ in admitted], held, stats, tally

    def _make_room(
        self, group: list[tuple[_Pending, Encoded]], tally: space.DropTally
    ) -> tuple[list[tuple[_Pending, Encoded]], list[_Pending], int]:
        """Decide which items fit; free space first (synced rows, then, if the buffer
        stayed full long enough, unsynced data by priority)."""
        cfg = self._config
        cap = cfg.max_buffer_bytes
        general_cap = int(cap * (1 - cfg.reserved_alert_fraction))
        f = self._cost_factor
        need_alert = sum(int(e.estimate * f) for p, e in group if isinstance(p.item, Alert))
        need_general = sum(int(e.estimate * f) for p, e in group
                           if not isinstance(p.item, Alert))
        # Never aim to free more than half of what general data may use.
        target = max(min(general_cap - need_general, cap - need_general - need_alert),
                     general_cap // 2)
        used = space.used_bytes(self._conn)
        if used > target:
            used = space.evict_synced(self._conn, target, tally)
        if used > target and self._full_long_enough():
            used = space.drop_unsynced(self._conn, target, tally, include_alerts=False)
            if need_alert and used + need_alert > cap:
                used = space.drop_unsynced(self._conn, cap - need_alert, tally,
                                           include_alerts=True)
        admitted: list[tuple[_Pending, Encoded]] = []
        held: list[_Pending] = []
        acc_general = acc_all = 0
        for p, enc in group:
            cost = int(enc.estimate * f)
            is_alert = isinstance(p.item, Alert)
            fits = used + acc_all + cost <= cap and (
                is_alert or used + acc_general + cost <= general_cap
            )
            if fits:
                admitted.append((p, enc))
                acc_all += cost
                if not is_alert:
                    acc_general += cost
            elif exists(self._conn, p.item):
                admitted.append((p, enc))  # a redelivery: already stored, costs nothing
            else:
                held.append(p)
        return admitted, held, used

    def _learn_cost(self, estimated: int, grew: int) -> None:
        # Only large groups say anything useful (pages are 4 KiB).
        if estimated >= 64 * 1024 and grew > 0:
            ratio = min(4.0, max(1.0, grew / estimated))
            self._cost_factor = 0.7 * self._cost_factor + 0.3 * ratio

    def _full_long_enough(self) -> bool:
        since = self._full_since
        grace = self._config.full_drop_after_s
        return grace <= 0 or (
            since is not None and self._clock.monotonic() - since >= grace
        )

    def _set_full(self, held: int) -> None:
        self._held = held
        if held and self._full_since is None:
            self._full_since = self._clock.monotonic()
            log.warning(
                "store: buffer full (%d of %d bytes); holding %d item(s) unacknowledged",
                self._used, self._config.max_buffer_bytes, held,
            )
        elif not held and self._full_since is not None:
            log.warning("store: buffer has room again after %.1f s",
                        self._clock.monotonic() - self._full_since)
            self._full_since = None
        metrics.STORE_FULL.set(1 if held else 0)

    def _record_drops(self, tally: space.DropTally, stats: GroupStats) -> None:
        """Log drops in ``drops``; a loss of unsynced data also becomes an event record."""
        if not tally.entries:
            return
        stamp = self._stamp()
        tally.record(self._conn, stamp.wall_ts, stamp.mono_ns, self._boot)
        lost = {f"{e.reason}:{e.kind}": e.count for e in tally.entries.values()
                if e.reason == "buffer_full"}
        if lost:
            n = sum(lost.values())
            full_for = self._clock.monotonic() - (self._full_since or self._clock.monotonic())
            log.error("store: buffer full for %.1f s; dropped %d unsynced record(s): %s",
                      full_for, n, lost)
            ev = Event(
                record_id=stable_id("buffer_drop", self._boot, str(stamp.mono_ns)),
                event="buffer_drop",
                detail=f"buffer full: dropped {n} unsynced record(s), oldest first by priority",
                stamp=stamp,
                data={"dropped": lost},
            )
            insert(self._conn, ev, stats, encode(ev, self._offsets))

    def _retention_fn(self, tally: space.DropTally) -> Callable[[sqlite3.Connection], int]:
        cfg = self._config

        def run(conn: sqlite3.Connection) -> int:
            space.retention(
                conn,
                tally,
                max_age_s=cfg.synced_max_age_s,
                max_synced_bytes=cfg.synced_max_bytes,
                boot=self._boot,
                now_mono_ns=self._clock.monotonic_ns(),
                started_mono_ns=self._started_mono_ns,
            )
            if tally.entries:
                stamp = self._stamp()
                tally.record(conn, stamp.wall_ts, stamp.mono_ns, self._boot)
            return tally.total()

        return run

    def _run_retention(self) -> None:
        cfg = self._config
        if cfg.synced_max_age_s <= 0 and cfg.synced_max_bytes <= 0:
            return
        tally = space.DropTally()
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._run_call(_Call(self._retention_fn(tally), future))
        err = future.exception()
        if err is not None:
            log.warning("store: retention failed: %s", err)
            return
        tally.count_metrics()
        self._used = space.used_bytes(self._conn)
        metrics.STORE_USED_BYTES.set(self._used)

    def run_retention_now(self) -> concurrent.futures.Future[int]:
        """Run retention on the writer thread now (tests, an admin action);
        the future gives the number of rows deleted."""
        tally = space.DropTally()
        fut = self.call(self._retention_fn(tally))
        fut.add_done_callback(lambda f: None if f.exception() else tally.count_metrics())
        return fut

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            self._ensure_conn()
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

    def _ensure_conn(self) -> None:
        """After an I/O error, start again on a fresh connection (SQLite's own advice)."""
        if not self._reopen:
            return
        try:
            self._conn.close()
        except sqlite3.Error:
            pass
        self._conn = db.connect(self.path)
        self._reopen = False

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("store: rollback failed")

    def _stamp(self) -> Stamp:
        return Stamp(self._clock.wall(), self._clock.monotonic_ns(), self._boot,
                     self._clock.synced())

    def _fault(self, err: sqlite3.Error, what: str) -> None:
        kind = db.fault_kind(err) or "sqlite_error"
        fault = StorageFault(kind, f"{what}: {err}")
        first = self._healthy
        self._healthy = False
        self._last_fault = fault
        if first:
            self._fault_since = self._clock.monotonic()
        if kind in ("io_error", "cant_open", "read_only"):
            self._reopen = True
        metrics.STORAGE_FAULTS.labels(kind=kind).inc()
        if first:
            log.error("store: %s; nothing acknowledged, will retry", fault)
        if self._on_fault is not None:
            try:
                self._on_fault(fault)
            except Exception:
                log.exception("store: on_fault callback failed")

    def _recovered(self) -> None:
        if self._healthy:
            return
        fault = self._last_fault
        down = self._clock.monotonic() - (self._fault_since or self._clock.monotonic())
        log.warning("store: commits succeed again after %s (%.1f s)", fault, down)
        self._healthy = True
        self._fault_since = None
        # Tell the central store too: an event record, best effort.
        stamp = self._stamp()
        ev = Event(
            record_id=stable_id("storage_recovered", self._boot, str(stamp.mono_ns)),
            event="storage_recovered",
            detail=f"storage fault cleared after {down:.1f} s: {fault}",
            stamp=stamp,
            data={"kind": fault.kind if fault else None, "down_s": round(down, 1)},
        )
        self._insert_now(ev)

    def _insert_now(self, ev: Event) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                insert(self._conn, ev, GroupStats(), encode(ev, self._offsets))
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error:
            log.warning("store: could not record event %s", ev.event, exc_info=True)

    def _report_corrupt(self, moved: Path) -> None:
        """The fresh database's first record says what happened to the old one (T21)."""
        metrics.STORAGE_FAULTS.labels(kind="corrupt").inc()
        lost = _count_unsynced(moved)
        stamp = self._stamp()
        ev = Event(
            record_id=stable_id("store_corrupt", self._boot, moved.name, str(stamp.mono_ns)),
            event="store_corrupt",
            detail=f"buffer database was corrupt; moved to {moved.name}, fresh one created",
            stamp=stamp,
            data={
                "moved_to": str(moved),
                "problems": list(self.corruption[:5]),
                "unsynced_lost": lost,
            },
        )
        self._insert_now(ev)
        self._last_fault = StorageFault("corrupt", f"moved to {moved}")


def _count_unsynced(path: Path) -> int | None:
    """Best effort: how many unsynced records the corrupt file still shows."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            # A file from before a migration lacks the newer tables: count what it has.
            have = {str(r[0]) for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            return sum(
                int(conn.execute(f"SELECT COUNT(*) FROM {t} WHERE synced = 0").fetchone()[0])
                for t in migrations.SYNC_TABLES if t in have
            )
        finally:
            conn.close()
    except sqlite3.Error:
        return None
