"""Shared helpers for the store and sync tests: records, a writer fixture."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from agent.clock import SystemClock
from agent.config.model import StoreConfig
from agent.records import Alert, Event, Quarantined, Reading, Stamp
from agent.store.writer import StoreWriter


def stamp() -> Stamp:
    return Stamp(wall_ts=time.time(), mono_ns=time.monotonic_ns(), boot_id="boot-1",
                 clock_synced=True)


def reading(i: int, sensor: str = "s1", pad: int = 0) -> Reading:
    return Reading(
        record_id=f"r-{sensor}-{i}",
        sensor_id=sensor,
        firmware="fw-test",
        topic=f"barn/{sensor}",
        values={"temp_c": 38.5 + i / 1000},
        raw={"temp_c": 38.5},
        units={"temp_c": "C"},
        stamp=stamp(),
        attributes={"pad": "x" * pad} if pad else {},
    )


def alert(i: int) -> Alert:
    return Alert(record_id=f"a-{i}", rule="fever", severity="warning", state="raised",
                 message="hot cow", stamp=stamp(), sensor_id="s1")


def event(i: int) -> Event:
    return Event(record_id=f"e-{i}", event="restart", detail="test", stamp=stamp())


def quarantined(i: int, reason: str = "bad_json") -> Quarantined:
    return Quarantined(record_id=f"q-{i}", topic="barn/x", payload=b"{not json",
                       reason=reason, detail="test", stamp=stamp())


def make_writer(path: Path, **cfg: Any) -> StoreWriter:
    config = StoreConfig(**{"commit_interval_ms": 20, "commit_max_messages": 200, **cfg})
    w = StoreWriter(path, config, SystemClock())
    w.start()
    return w


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class FakeClock:
    """An injected Clock: the wall clock can step; monotonic only moves forward."""

    def __init__(self, wall: float = 100.0, mono: float = 1000.0, synced: bool = False) -> None:
        self._wall_offset = wall - mono
        self._mono = mono
        self._synced = synced

    def wall(self) -> float:
        return self._mono + self._wall_offset

    def monotonic(self) -> float:
        return self._mono

    def monotonic_ns(self) -> int:
        return int(self._mono * 1e9)

    def synced(self) -> bool:
        return self._synced

    def advance(self, seconds: float) -> None:
        self._mono += seconds

    def step_wall(self, to: float, synced: bool | None = None) -> None:
        """An NTP step: the wall clock jumps, the monotonic clock does not."""
        self._wall_offset = to - self._mono
        if synced is not None:
            self._synced = synced

    def stamp(self, boot: str = "boot-1") -> Stamp:
        return Stamp(self.wall(), self.monotonic_ns(), boot, self._synced)


def reading_at(i: int, st: Stamp, pad: int = 0, sensor: str = "s1") -> Reading:
    r = reading(i, sensor=sensor, pad=pad)
    r.stamp = st
    return r


def alert_at(i: int, st: Stamp, pad: int = 0) -> Alert:
    a = alert(i)
    a.stamp = st
    if pad:
        a.details = {"pad": "x" * pad}
    return a


def wait_for(cond: Any, timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``cond()`` until true or ``timeout``: for conditions with no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def integrity(path: Path) -> str:
    return str(query(path, "PRAGMA integrity_check")[0][0])
