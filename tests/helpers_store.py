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
