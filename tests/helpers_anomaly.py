"""Synthetic series for the anomaly tests (seeded, no files needed)."""

from __future__ import annotations

import math
import random
from typing import Any

from agent.detect.anomaly.robust import RollingSorted


def series(n: int = 1500, seed: int = 7, spike_at: int | None = 1200) -> list[tuple[float, float]]:
    """(ts, value): 5-minute readings, a daily cycle, noise, one spike."""
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        ts = t0 + 300.0 * i
        v = 4.0 + 2.0 * math.sin(2 * math.pi * ts / 86400.0) + rng.gauss(0, 0.2)
        if spike_at is not None and i == spike_at:
            v += 12.0
        out.append((ts, v))
    return out


def write_csv(path, rows) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("timestamp,value\n")
        for ts, v in rows:
            stamp = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
            fh.write(f"{stamp},{v:.6f}\n")


def feed_channel(ch: Any, win: RollingSorted, xs: list[float]) -> list[float]:
    """Per-reading anomaly of a sequence channel (share of facts not predicted),
    learning as it goes; works for the k-gram and the context-crossing channels."""
    out = []
    for x in xs:
        _, mask = ch.facts(x, win)
        out.append(ch.anomaly(mask))
        ch.learn(x, win)
        win.add(x)
    return out
