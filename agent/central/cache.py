"""Latest state per sensor and per animal in Redis, for dashboards (R11).

Redis never decides anything: it is written AFTER the database commit and
after the HTTP response, fire-and-forget, each update bounded by a short
timeout. After a failure a circuit breaker skips Redis for ``breaker_s``
seconds (monotonic clock), so a dead or slow Redis costs ingest nothing. The
outage is logged once when it starts and once when it ends.

Keys (``prefix`` defaults to ``dairy``)::

    <prefix>:sensor:<device>:<sensor>   hash, the newest reading of that sensor
    <prefix>:animal:<device>:<animal>   hash, the newest reading about that animal,
                                        and where she was last seen (below)
    <prefix>:readings                   stream of readings, MAXLEN ~ stream_maxlen

"Last seen" comes from identifications with status ``identified`` or
``flagged`` and an ``animal_id`` (a ``review`` visit names no cow). Its fields
in the animal hash never clash with the reading's: ``last_seen_ts`` (the visit's
end, wall clock), ``camera_id``, ``station``, ``visit_id``, ``tag_number``,
``status``, ``confidence``, ``identification_id`` (the record id). The newest
``last_seen_ts`` wins, as the newest ``wall_ts`` does for readings.

The cow's latest body condition comes from body condition records with an
``animal_id``, in fields of their own in the same hash: ``bcs``, ``bcs_low``,
``bcs_high``, ``bcs_quality``, ``bcs_ts`` (the record's wall time), ``bcs_camera_id``
and ``bcs_id`` (the record id). The newest ``bcs_ts`` wins.

Ids are put into keys only when they match ``KEY_ID`` (no ``:``, no spaces);
a reading with another sensor or animal id is still stored in the database but
not cached under that id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent.central.validate import ValidRecord
from agent.metrics import CENTRAL_CACHE_SKIPPED
from agent.records.types import RecordKind

log = logging.getLogger(__name__)

KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

# Write the hash only when the record is not older than what it holds (time field
# ARGV[1], value ARGV[2]), so a backlog drained after an outage never overwrites
# newer state.
_NEWER_WINS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
"""
# A batch's readings in one script call: every reading onto the stream, and the
# newest of each sensor and animal into its hash (newer wins, as above). KEYS[1]
# is the stream, KEYS[2..] the hashes; ARGV[1] MAXLEN; ARGV[2] a JSON list of
# stream entries (device, sensor, record, animal, wall_ts, values); ARGV[3] a JSON list,
# one per hash: [time field, time, field, value, ...]. As JSON, the arguments are
# encoded in C: one command per reading, packed by redis-py, cost the receiver
# more CPU than storing the reading in PostgreSQL.
_READINGS = """
for _, e in ipairs(cjson.decode(ARGV[2])) do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
             'device_id', e[1], 'sensor_id', e[2], 'record_id', e[3],
             'animal_id', e[4], 'wall_ts', e[5], 'values', e[6])
end
for i, h in ipairs(cjson.decode(ARGV[3])) do
  local current = redis.call('HGET', KEYS[i + 1], h[1])
  if not (current and tonumber(current) > tonumber(h[2])) then
    redis.call('HSET', KEYS[i + 1], unpack(h, 3))
  end
end
return 1
"""
_compact = json.JSONEncoder(separators=(",", ":")).encode
# UTF-8 as it is (lone surrogates never pass validation): Lua's cjson keeps the bytes.
_compact_utf8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Identifications that name a cow: a review visit claims no number, so no cow.
# Only a confirmed identification moves a cow: a flagged visit (not in the register,
# or contradicted by RFID) is a question for staff, not her location.
_SEEN_STATUSES = frozenset({"identified"})


class Cache:
    """A best-effort writer of latest state into Redis."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.25,
        prefix: str = "dairy",
        stream_maxlen: int = 10000,
        breaker_s: float = 5.0,
        max_pending: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not KEY_ID.fullmatch(prefix):
            raise ValueError(f"bad Redis key prefix {prefix!r}")
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # our own breaker decides when to try again
            health_check_interval=0,
        )
        self._timeout = timeout_s
        self._prefix = prefix
        self._maxlen = stream_maxlen
        self._breaker_s = breaker_s
        self._max_pending = max_pending
        self._clock = clock
        self._open_until = 0.0  # monotonic instant until which Redis is skipped
        self._down = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Sent by digest (EVALSHA); the pipeline loads them when Redis lacks them.
        self._newer_wins = self._redis.register_script(_NEWER_WINS)
        self._readings = self._redis.register_script(_READINGS)

    @property
    def state(self) -> str:
        """'up' or 'down' (down from the first failure to the next success)."""
        return "down" if self._down else "up"

    def sensor_key(self, device_id: str, sensor_id: str) -> str:
        return f"{self._prefix}:sensor:{device_id}:{sensor_id}"

    def animal_key(self, device_id: str, animal_id: str) -> str:
        return f"{self._prefix}:animal:{device_id}:{animal_id}"

    @property
    def stream_key(self) -> str:
        return f"{self._prefix}:readings"

    def submit(self, device_id: str, records: Sequence[ValidRecord]) -> bool:
        """Schedule a cache update for the readings, sightings and body condition
        scores among ``records``; never blocks.

        Returns False when there is nothing to cache or the update is skipped
        (breaker open, too many pending).
        """
        readings = [r for r in records if r.kind == RecordKind.READING]
        sightings = [r for r in records if _is_sighting(r)]
        scores = [r for r in records if _is_cow_score(r)]
        if not (readings or sightings or scores) or not KEY_ID.fullmatch(device_id):
            return False
        if self._clock() < self._open_until:
            CENTRAL_CACHE_SKIPPED.labels(reason="down").inc()
            return False
        if len(self._tasks) >= self._max_pending:
            CENTRAL_CACHE_SKIPPED.labels(reason="backlog").inc()
            return False
        task = asyncio.get_running_loop().create_task(
            self._update(device_id, readings, sightings, scores)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for pending updates (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def close(self) -> None:
        await self.drain(self._timeout * 2)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        try:
            await self._redis.aclose()
        except Exception:  # closing a dead connection must not fail shutdown
            log.debug("closing Redis failed", exc_info=True)

    async def _update(
        self,
        device_id: str,
        readings: Sequence[ValidRecord],
        sightings: Sequence[ValidRecord] = (),
        scores: Sequence[ValidRecord] = (),
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=False)
                self._queue_readings(pipe, device_id,
                                     sorted(readings, key=lambda r: r.row["wall_ts"]))
                for record in sorted(sightings, key=lambda r: r.row["ended_wall_ts"]):
                    self._queue_sighting(pipe, device_id, record.row)
                for record in sorted(scores, key=lambda r: r.row["wall_ts"]):
                    self._queue_score(pipe, device_id, record.row)
                await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure only opens the breaker
            self._trip(err)
        else:
            self._recovered()

    def _queue_readings(self, pipe: Any, device_id: str,
                        readings: Sequence[ValidRecord]) -> None:
        """Readings, oldest first: each onto the stream, and the newest of each sensor
        and animal into its hash, in one script call (_READINGS).

        Only the batch's newest reading per key goes to its hash: applying them all
        in order under "newer wins" leaves the same hash (the last of them, or none
        when Redis holds a newer one).
        """
        if not readings:
            return
        latest: dict[str, dict[str, Any]] = {}
        stream: list[tuple[str, ...]] = []
        for record in readings:
            row = record.row
            if KEY_ID.fullmatch(row["sensor_id"]):
                latest[self.sensor_key(device_id, row["sensor_id"])] = row
            animal = row.get("animal_id")
            if animal and KEY_ID.fullmatch(animal):
                latest[self.animal_key(device_id, animal)] = row
            stream.append((device_id, row["sensor_id"], row["record_id"], animal or "",
                           repr(float(row["wall_ts"])), _compact(row["values"])))
        cached_at = repr(time.time())
        hashes: list[list[str]] = []
        for row in latest.values():
            wall_ts = repr(float(row["wall_ts"]))
            hashes.append([
                "wall_ts", wall_ts,
                "device_id", device_id,
                "sensor_id", row["sensor_id"],
                "record_id", row["record_id"],
                "firmware", row["firmware"],
                "animal_id", row.get("animal_id") or "",
                "wall_ts", wall_ts,
                "clock_synced", "1" if row["clock_synced"] else "0",
                "values", _compact(row["values"]),
                "units", _compact(row["units"]),
                "cached_at", cached_at,
            ])
        pipe.scripts.add(self._readings)
        pipe.evalsha(self._readings.sha, 1 + len(latest), self.stream_key, *latest,
                     self._maxlen, _compact_utf8(stream), _compact_utf8(hashes))

    def _queue_sighting(self, pipe: Any, device_id: str, row: dict[str, Any]) -> None:
        """Where and when the cow of an identification was last seen (animal hash)."""
        fields = {
            "device_id": device_id,
            "animal_id": row["animal_id"],
            "last_seen_ts": repr(float(row["ended_wall_ts"])),
            "camera_id": row["camera_id"],
            "station": row.get("station") or "",
            "visit_id": row["visit_id"],
            "tag_number": row.get("tag_number") or "",
            "status": row["status"],
            "confidence": repr(float(row["confidence"])),
            "identification_id": row["record_id"],
        }
        flat = [item for pair in fields.items() for item in pair]
        key = self.animal_key(device_id, row["animal_id"])
        _queue_script(pipe, self._newer_wins, key, "last_seen_ts", fields["last_seen_ts"], *flat)

    def _queue_score(self, pipe: Any, device_id: str, row: dict[str, Any]) -> None:
        """The cow's latest body condition score (animal hash, ``bcs*`` fields)."""
        fields = {
            "device_id": device_id,
            "animal_id": row["animal_id"],
            "bcs": repr(float(row["bcs"])),
            "bcs_low": repr(float(row["low"])),
            "bcs_high": repr(float(row["high"])),
            "bcs_quality": repr(float(row["quality"])),
            "bcs_ts": repr(float(row["wall_ts"])),
            "bcs_camera_id": row["camera_id"],
            "bcs_id": row["record_id"],
        }
        flat = [item for pair in fields.items() for item in pair]
        key = self.animal_key(device_id, row["animal_id"])
        _queue_script(pipe, self._newer_wins, key, "bcs_ts", fields["bcs_ts"], *flat)

    def _trip(self, err: BaseException) -> None:
        self._open_until = self._clock() + self._breaker_s
        CENTRAL_CACHE_SKIPPED.labels(reason="error").inc()
        if not self._down:
            self._down = True
            log.warning(
                "Redis cache unavailable (%s: %s); skipping it for %.0f s at a time",
                type(err).__name__, err, self._breaker_s,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.info("Redis cache is back")


def _queue_script(pipe: Any, script: Any, key: str, *args: Any) -> None:
    """EVALSHA ``script`` on one key, queued in ``pipe``; the pipeline loads the
    script first when Redis does not have it (a restart, another database)."""
    pipe.scripts.add(script)
    pipe.evalsha(script.sha, 1, key, *args)


def _is_sighting(record: ValidRecord) -> bool:
    """An identification that names a cow whose id can be put into a key."""
    if record.kind != RecordKind.IDENTIFICATION or record.row["status"] not in _SEEN_STATUSES:
        return False
    animal = record.row.get("animal_id")
    return isinstance(animal, str) and bool(KEY_ID.fullmatch(animal))


def _is_cow_score(record: ValidRecord) -> bool:
    """A body condition score of a cow whose id can be put into a key."""
    if record.kind != RecordKind.BODY_CONDITION:
        return False
    animal = record.row.get("animal_id")
    return isinstance(animal, str) and bool(KEY_ID.fullmatch(animal))
