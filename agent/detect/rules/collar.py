"""Shared handling of collar readings: each reading covers the time since the
previous one, so sums over a window can be scaled for missing readings."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_INTERVAL_S = 7200.0  # a reading never stands for more than this
# Readings closer than this to the window's last item are merged into it (their
# seconds and values summed): collars send no timestamp, so after an outage a
# backlog of hours arrives within seconds and is judged at arrival (the
# engine's module doc); without merging every reading of the burst would sit in
# one window, and each would cost more than the last. Live, collars report
# every 15 min (or every minute or two), so nothing is merged.
MIN_INTERVAL_S = 20.0


@dataclass(slots=True)
class Window:
    """(t, covered seconds, value, hour of day) for readings in the last ``span_s``."""

    span_s: float
    items: deque[tuple[float, float, float, int]] = field(default_factory=deque)
    last_t: float | None = None
    # Running sums of covered seconds and values over ``items``: O(1) per reading.
    _covered: float = 0.0
    _total: float = 0.0
    # Optionally one value per item, ``derive(covered seconds, value)``, kept in step
    # with ``items``: a rule that needs it for every item computes it once per item,
    # not once per item per reading.
    derive: Callable[[float, float], float] | None = None
    derived: deque[float] = field(default_factory=deque)
    # How many items of each hour of day the window holds.
    hours: dict[int, int] = field(default_factory=dict)
    # Optionally a slot per item for the rule's own use (``cached=True``), kept in
    # step with ``items``: None for a new item and for one a reading was merged
    # into, so the None slots are always a suffix; the rule fills them.
    cached: bool = False
    cache: deque[Any] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._covered = sum(x[1] for x in self.items)
        self._total = sum(x[2] for x in self.items)
        derive = self.derive
        self.derived = deque(derive(x[1], x[2]) for x in self.items) if derive else deque()
        self.cache = deque([None] * len(self.items)) if self.cached else deque()
        self.hours = {}
        for x in self.items:
            self.hours[x[3]] = self.hours.get(x[3], 0) + 1

    def add(self, t: float, value: float, hour: int) -> float | None:
        """Add a reading; the seconds it covers, or None for the first one."""
        prev, self.last_t = self.last_t, t
        if prev is None or t <= prev:
            return None
        dt = min(t - prev, MAX_INTERVAL_S)
        items, derive = self.items, self.derive
        if items and t - items[-1][0] < MIN_INTERVAL_S:
            last_t, last_dt, last_v, last_h = items[-1]
            items[-1] = (last_t, last_dt + dt, last_v + value, last_h)
            if derive is not None:
                self.derived[-1] = derive(last_dt + dt, last_v + value)
            if self.cached:
                self.cache[-1] = None
        else:
            items.append((t, dt, value, hour))
            if derive is not None:
                self.derived.append(derive(dt, value))
            if self.cached:
                self.cache.append(None)
            hours = self.hours
            hours[hour] = hours.get(hour, 0) + 1
        self._covered += dt
        self._total += value
        limit = t - self.span_s
        if items[0][0] <= limit:
            hours = self.hours
            while items and items[0][0] <= limit:
                old = items.popleft()
                if derive is not None:
                    self.derived.popleft()
                if self.cached:
                    self.cache.popleft()
                h = old[3]
                left = hours[h] - 1
                if left:
                    hours[h] = left
                else:
                    del hours[h]
                self._covered -= old[1]
                self._total -= old[2]
            if not items:
                self._covered = self._total = 0.0
        return dt

    def covered(self) -> float:
        return self._covered

    def total(self) -> float:
        return self._total

    def to_state(self) -> dict[str, Any]:
        return {"span_s": self.span_s, "items": [list(x) for x in self.items],
                "last_t": self.last_t}

    @classmethod
    def from_state(cls, data: dict[str, Any],
                   derive: Callable[[float, float], float] | None = None,
                   cached: bool = False) -> Window:
        return cls(data["span_s"], deque((a, b, c, int(d)) for a, b, c, d in data["items"]),
                   data["last_t"], derive=derive, cached=cached)


def hour_of_day(wall_ts: float) -> int:
    """Hour bucket for diurnal baselines (grouping only, never a duration)."""
    return int(wall_ts // 3600) % 24
