"""The sync loop: build or resume a batch, sign it, POST it, apply the answer.

Exactly one request is in flight at a time (a lock around ``sync_once``), and
every request has a finite deadline even if the transport forgets one.
Answers are applied per record in one transaction on the store writer (R3).
Nothing is ever deleted because of an HTTP error: a 4xx is logged loudly and
retried with backoff like a 5xx; a 413 halves the open batch (same seq and
batch id, record ids unchanged) and a single record still too large is
dead-lettered after ``max_attempts``, like a poison record. Network and TLS
failures (including "certificate is not yet valid" before NTP sync) are
transient: the data stays and is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from agent import metrics
from agent.clock import Clock
from agent.config.model import SyncConfig
from agent.errors import RetryAfter, TransientError
from agent.records.protocol import PROTOCOL_VERSION, Batch, BatchResponse
from agent.store import outbox
from agent.store.outbox import ApplyResult, PreparedBatch
from agent.store.writer import StoreWriter
from agent.sync.backoff import Backoff, parse_retry_after
from agent.sync.signing import headers_for, splice_body
from agent.sync.transport import SyncTransport

log = logging.getLogger(__name__)

# Never sleep longer than this on a peer's say-so (a wrong wall clock can
# turn an HTTP-date Retry-After into days).
RETRY_AFTER_CAP_S = 3600.0


class RequestRefused(TransientError):
    """The receiver refused the request (400/401/403/409/413...): our bug or its config.

    Retried with backoff, never dropped: the data stays in the buffer.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class SequenceReplayed(RequestRefused):
    """409: the receiver has seen this seq from our epoch with another batch id."""


class BatchTooLarge(RequestRefused):
    """413: the receiver will not take a batch this large."""


class Outcome(StrEnum):
    IDLE = "idle"  # nothing to send
    SENT = "sent"  # answered and applied
    SPLIT = "split"  # refused as too large: the open batch was halved, send again now


@dataclass(slots=True)
class SyncOutcome:
    outcome: Outcome
    batch_id: str | None = None
    seq: int | None = None
    records: int = 0
    resumed: bool = False
    applied: ApplyResult = field(default_factory=ApplyResult)
    full: bool = False  # the batch was at a size limit: more may be waiting


class Uploader:
    def __init__(
        self,
        config: SyncConfig,
        device_id: str,
        key: bytes,
        writer: StoreWriter,
        store_path: Path,
        transport: SyncTransport,
        clock: Clock,
    ) -> None:
        self._config = config
        self._device_id = device_id
        self._key = key
        self._writer = writer
        self._store_path = store_path
        self._transport = transport
        self._clock = clock
        self.backoff = Backoff(config.backoff_base_s, config.backoff_max_s)
        self._one_at_a_time = asyncio.Lock()
        self.in_flight = 0  # requests on the wire now: never above 1
        # Shrinks on 413, grows back after successes (never above the config).
        self.batch_cap = config.batch_max_records
        # State for the status page.
        self.last_success_mono: float | None = None
        self.last_error: str | None = None
        self.last_error_mono: float | None = None
        self.backlog: int | None = None
        self.next_try_in_s: float = 0.0
        self.state = "idle"  # idle | uploading | backoff
        # A refusal that waiting will not fix: central does not accept our key
        # (401/403) or refused our sequence (409). The gateway is unhealthy with
        # this reason until a batch goes through; ``on_refusal`` hears each change
        # (the reason, then None when it clears), from a worker thread.
        self.refusal: str | None = None
        self.on_refusal: Callable[[str | None], None] | None = None
        # Records committed since the last send started (told by the writer's
        # thread through ``records_committed``); an idle pause ends on them.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._fresh = 0

    def status(self) -> dict[str, object]:
        """A JSON-ready view for the status page (ages from the monotonic clock)."""
        now = self._clock.monotonic()
        return {
            "enabled": True,
            "state": self.state,
            "last_success_age_s": (
                None if self.last_success_mono is None else round(now - self.last_success_mono, 1)
            ),
            "last_error": self.last_error,
            "backlog": self.backlog,
            "consecutive_failures": self.backoff.failures,
            "next_try_in_s": round(self.next_try_in_s, 1),
            "refusal": self.refusal,
        }

    def records_committed(self, n: int) -> None:
        """The writer committed ``n`` records (called on the writer's thread)."""
        loop, wake = self._loop, self._wake
        # A hint only: a lost update across threads changes when, not what, is sent.
        self._fresh += n
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: nothing is waiting
                pass

    async def run(self, stop: asyncio.Event) -> None:
        """Upload until ``stop`` is set; never raises for a failed upload.

        After a successful round the pause ends early when records are
        committed (``records_committed``): the batch goes once it is full or
        ``linger_s`` has passed, whichever is first. Backoff after a failure
        is never cut short.
        """
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not stop.is_set():
            self.state = "uploading"
            self._wake.clear()
            self._fresh = 0
            delay = await self._one_round()
            self.next_try_in_s = delay
            self.state = "backoff" if self.last_error else "idle"
            if delay > 0:
                await self._pause(stop, delay, wakeable=self.last_error is None)

    async def _pause(self, stop: asyncio.Event, delay: float, wakeable: bool) -> None:
        wake = self._wake
        assert wake is not None
        waits = {asyncio.ensure_future(stop.wait())}
        if wakeable:
            waits.add(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if stop.is_set() or not wakeable or not wake.is_set():
            return
        # New records: give more a moment to arrive, unless a batch is full already.
        deadline = self._clock.monotonic() + self._config.linger_s
        while self._fresh < self.batch_cap and not stop.is_set():
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=left)
            except TimeoutError:
                return

    async def _one_round(self) -> float:
        """Run one sync_once and return how long to wait before the next."""
        try:
            result = await self.sync_once()
        except RetryAfter as err:
            self.backoff.failures += 1  # still a failure in a row
            self._error(str(err), "retry_after")
            return min(err.seconds, RETRY_AFTER_CAP_S)
        except SequenceReplayed as err:
            # Our sequence state is behind the receiver's (a restored buffer): start
            # a new epoch and resend; records are deduplicated there by record id.
            epoch = await asyncio.wrap_future(self._writer.new_epoch())
            self._error(str(err), "replayed")
            await self._refused(f"central refused our batch sequence ({str(err)[:200]}); "
                                f"started a new epoch {epoch}")
            log.warning("sync: central has seen our sequence already (%s); new epoch %s",
                        err, epoch)
            return 0.0
        except BatchTooLarge as err:
            self._error(str(err), "too_large")
            delay = self.backoff.next_delay()
            log.error("sync: a single record is too large for the receiver (%s); "
                      "retry in %.1f s", err, delay)
            return delay
        except RequestRefused as err:
            self._error(str(err), "refused")
            if err.status in (401, 403):
                await self._refused(
                    f"central refused our key ({str(err)[:200]}); check sync.key_id and "
                    "DAIRY_EDGE_HMAC_KEY against `dairy-edge central keys list` at central"
                )
            delay = self.backoff.next_delay()
            log.error("sync: central refused batch (%s); keeping data, retry in %.1f s",
                      err, delay)
            return delay
        except TransientError as err:
            self._error(str(err), "transient")
            delay = self.backoff.next_delay()
            log.warning("sync: %s; retry in %.1f s", err, delay)
            return delay
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug or a storage fault: keep the loop alive
            self._error(f"{type(err).__name__}: {err}", "error")
            delay = self.backoff.next_delay()
            log.exception("sync: unexpected failure; retry in %.1f s", delay)
            return delay
        if result.outcome == Outcome.SPLIT:
            return 0.0  # the smaller batch goes now; not a failure of the link
        if result.outcome == Outcome.SENT:
            await self._refused(None)  # central took a batch: key and sequence are fine
        self.backoff.reset()
        if result.outcome == Outcome.IDLE:
            return self._config.interval_s
        # More waiting, or records the receiver asked us to retry: go again
        # soon, but let the idle pause pace pure retries.
        if result.full and not (result.applied.retry or result.applied.missing):
            return 0.0
        return min(self._config.interval_s, 1.0) if result.full else self._config.interval_s

    async def _refused(self, reason: str | None) -> None:
        """Record (or clear, with None) a refusal; tell ``on_refusal`` when it starts or ends."""
        changed = (reason is None) != (self.refusal is None)
        self.refusal = reason
        if changed:
            if reason is not None:
                log.error("sync: %s", reason)
            else:
                log.warning("sync: central accepts our batches again")
            if self.on_refusal is not None:
                try:
                    await asyncio.to_thread(self.on_refusal, reason)
                except Exception:
                    log.exception("sync: refusal callback failed")

    def _error(self, text: str, outcome: str) -> None:
        self.last_error = text
        self.last_error_mono = self._clock.monotonic()
        metrics.SYNC_ATTEMPTS.labels(outcome=outcome).inc()

    async def sync_once(self) -> SyncOutcome:
        """Send one batch; raises TransientError / RetryAfter / RequestRefused on failure."""
        async with self._one_at_a_time:
            return await self._sync_once()

    def _deadline_s(self) -> float:
        # Belt and braces over the transport's own timeouts.
        return self._config.request_timeout_s + self._config.connect_timeout_s + 1.0

    async def _sync_once(self) -> SyncOutcome:
        cfg = self._config
        epoch = self._writer.epoch
        mono_ns = self._clock.monotonic_ns()
        cap = max(1, min(self.batch_cap, cfg.batch_max_records))
        batch = await asyncio.wrap_future(
            self._writer.call(
                lambda c: outbox.prepare(
                    c, self._device_id, epoch, cap, cfg.batch_max_bytes, mono_ns
                )
            )
        )
        if batch is None:
            self.backlog = 0
            metrics.SYNC_BACKLOG.set(0)
            metrics.SYNC_ATTEMPTS.labels(outcome="idle").inc()
            return SyncOutcome(Outcome.IDLE)

        # The envelope is validated by the model; the records are the stored
        # bodies spliced in as they are (outbox.wire_text checked each one).
        envelope = Batch.model_validate(
            {
                "protocol": PROTOCOL_VERSION,
                "device_id": self._device_id,
                "epoch": epoch,
                "seq": batch.seq,
                "batch_id": batch.batch_id,
                "created_mono_ns": batch.created_mono_ns,
                "sent_wall_ts": self._clock.wall(),
                "clock_synced": self._clock.synced(),
                "records": [],
            }
        )
        body = splice_body(envelope.model_dump(mode="json"), batch.wire)
        headers = headers_for(cfg.key_id, self._key, batch.batch_id, body, self._device_id)
        self.in_flight += 1
        try:
            resp = await asyncio.wait_for(
                self._transport.post(cfg.url, body, headers), self._deadline_s()
            )
        except TimeoutError as err:
            raise TransientError(f"no answer within {self._deadline_s():.1f} s") from err
        finally:
            self.in_flight -= 1
        try:
            response = self._classify(resp.status, resp.headers, resp.body, batch)
        except BatchTooLarge as err:
            return await self._split(batch, err)

        result = await asyncio.wrap_future(
            self._writer.call(
                lambda c: outbox.apply(c, batch, response, cfg.max_attempts, self._clock.wall())
            )
        )
        result.count_metrics()
        metrics.SYNC_ATTEMPTS.labels(outcome="ok").inc()
        self.last_success_mono = self._clock.monotonic()
        self.last_error = None
        await self._refresh_backlog()
        full = len(batch.refs) >= cap or _near_bytes(batch, cfg.batch_max_bytes)
        if full and not batch.resumed:
            self.batch_cap = min(cfg.batch_max_records, self.batch_cap * 2)
        if result.dead_lettered:
            log.warning("sync: %d record(s) dead-lettered: %s", result.dead_lettered,
                        ", ".join(result.dead_ids[:10]))
        return SyncOutcome(
            Outcome.SENT, batch.batch_id, batch.seq, len(batch.refs), batch.resumed, result, full
        )

    def _classify(
        self, status: int, headers: object, body: bytes, batch: PreparedBatch
    ) -> BatchResponse:
        get = getattr(headers, "get", None)
        if 200 <= status < 300:
            try:
                response = BatchResponse.model_validate_json(body)
            except ValidationError as err:
                raise TransientError(f"HTTP {status} with an unreadable body: {err}") from err
            if response.batch_id != batch.batch_id:
                raise TransientError(
                    f"answer for batch {response.batch_id!r}, sent {batch.batch_id!r}"
                )
            return response
        if status == 413:
            raise BatchTooLarge(status, body[:200].decode("utf-8", "replace"))
        if status == 409:
            raise SequenceReplayed(status, body[:200].decode("utf-8", "replace"))
        retry_after = parse_retry_after(get("Retry-After") if get else None, self._clock.wall())
        if status in (429, 503) and retry_after is not None:
            raise RetryAfter(retry_after, f"HTTP {status}, Retry-After {retry_after:.1f} s")
        if status >= 500 or status in (408, 429):
            raise TransientError(f"HTTP {status}")
        raise RequestRefused(status, body[:200].decode("utf-8", "replace"))

    async def _split(self, batch: PreparedBatch, err: BatchTooLarge) -> SyncOutcome:
        """413: halve the open batch (same id), or count a rejection for a lone record."""
        metrics.SYNC_ATTEMPTS.labels(outcome="too_large").inc()
        reason = f"too_large: HTTP 413 {str(err)[:200]}"
        shrunk = await asyncio.wrap_future(
            self._writer.call(
                lambda c: outbox.shrink_open(c, reason, self._config.max_attempts,
                                             self._clock.wall())
            )
        )
        if shrunk.dead_lettered:
            metrics.DEAD_LETTERS.inc(shrunk.dead_lettered)
            log.warning("sync: record(s) dead-lettered as too large: %s",
                        ", ".join(shrunk.dead_ids[:10]))
        if shrunk.released:
            self.batch_cap = max(1, shrunk.kept)
            log.warning("sync: receiver refused %d records as too large; resending %d "
                        "as batch %s", shrunk.kept + shrunk.released, shrunk.kept,
                        batch.batch_id)
        elif not shrunk.dead_lettered:
            raise err  # one record, not yet dead: back off like any refusal
        return SyncOutcome(Outcome.SPLIT, batch.batch_id, batch.seq, shrunk.kept,
                           batch.resumed)

    async def _refresh_backlog(self) -> None:
        try:
            self.backlog = await asyncio.wrap_future(self._writer.call(outbox.backlog))
            metrics.SYNC_BACKLOG.set(self.backlog)
        except Exception:
            log.debug("sync: backlog count failed", exc_info=True)


def _near_bytes(batch: PreparedBatch, max_bytes: int) -> bool:
    # Roughly full: the next record would probably not have fitted.
    return batch.size >= max_bytes * 0.9
