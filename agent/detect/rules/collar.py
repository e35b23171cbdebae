"""Shared handling of collar readings: each reading covers the time since the
previous one, so sums over a window can be scaled for missing readings."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_INTERVAL_S = 7200.0  # a reading never stands for more than this


@dataclass(slots=True)
class Window:
    """(t, covered seconds, value, hour of day) for readings in the last ``span_s``."""

    span_s: float
    items: deque[tuple[float, float, float, int]] = field(default_factory=deque)
    last_t: float | None = None

    def add(self, t: float, value: float, hour: int) -> float | None:
        """Add a reading; the seconds it covers, or None for the first one."""
        prev, self.last_t = self.last_t, t
        if prev is None or t <= prev:
            return None
        dt = min(t - prev, MAX_INTERVAL_S)
        self.items.append((t, dt, value, hour))
        while self.items and self.items[0][0] <= t - self.span_s:
            self.items.popleft()
        return dt

    def covered(self) -> float:
        return sum(x[1] for x in self.items)

    def total(self) -> float:
        return sum(x[2] for x in self.items)

    def to_state(self) -> dict[str, Any]:
        return {"span_s": self.span_s, "items": [list(x) for x in self.items],
                "last_t": self.last_t}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Window:
        return cls(data["span_s"], deque((a, b, c, int(d)) for a, b, c, d in data["items"]),
                   data["last_t"])


def hour_of_day(wall_ts: float) -> int:
    """Hour bucket for diurnal baselines (grouping only, never a duration)."""
    return int(wall_ts // 3600) % 24
