"""Bounded robust statistics for one stream: a rolling window kept sorted.

Pure Python on purpose: a reading is one float, and numpy's call overhead
(microseconds per call) would cost more than the arithmetic. ``array('d')``
keeps memory at 8 bytes per value (a list of floats costs about 32).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections import deque
from typing import Any


class RollingSorted:
    """The last ``size`` values, in arrival order and in sorted order.

    ``add`` is O(log n) to find and O(n) memmove to insert/delete, which for
    n <= a few thousand is well under a microsecond.
    """

    __slots__ = ("_pos", "_ring", "_sorted", "size")

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError("size must be >= 2")
        self.size = size
        self._ring = array("d")
        self._sorted = array("d")
        self._pos = 0  # next slot to overwrite once the ring is full

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, x: float) -> None:
        ring = self._ring
        if len(ring) < self.size:
            ring.append(x)
        else:
            old = ring[self._pos]
            ring[self._pos] = x
            self._pos = (self._pos + 1) % self.size
            del self._sorted[bisect_left(self._sorted, old)]
        insort(self._sorted, x)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile; the window must not be empty."""
        s = self._sorted
        return s[int(q * (len(s) - 1) + 0.5)]

    def rank(self, x: float) -> float:
        """Fraction of the window strictly below ``x`` (ties count half)."""
        s = self._sorted
        n = len(s)
        if n == 0:
            return 0.5
        lo = bisect_left(s, x)
        hi = bisect_right(s, x)
        return (lo + 0.5 * (hi - lo)) / n

    def max(self) -> float:
        return self._sorted[-1]

    def to_state(self) -> dict[str, Any]:
        # Arrival order only; the sorted copy is rebuilt on load.
        n = len(self._ring)
        ordered = [self._ring[(self._pos + i) % n] for i in range(n)] if n else []
        return {"size": self.size, "values": ordered}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingSorted:
        obj = cls(int(state["size"]))
        for v in state["values"][-obj.size :]:
            obj.add(float(v))
        return obj


class SlidingMax:
    """Maximum of the last ``size`` values in O(1) amortised time.

    A monotone deque: only values that could still become the maximum are
    kept, so memory is at most ``size`` pairs and usually a handful.
    """

    __slots__ = ("_i", "_q", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque[tuple[int, float]] = deque()
        self._i = 0

    def max(self, default: float = 0.0) -> float:
        return self._q[0][1] if self._q else default

    def add(self, x: float) -> None:
        q = self._q
        while q and q[-1][1] <= x:
            q.pop()
        q.append((self._i, x))
        if q[0][0] <= self._i - self.size:
            q.popleft()
        self._i += 1

    def to_state(self) -> dict[str, Any]:
        return {"size": self.size, "i": self._i, "q": [[i, v] for i, v in self._q]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SlidingMax:
        obj = cls(int(state["size"]))
        obj._i = int(state["i"])
        obj._q = deque((int(i), float(v)) for i, v in state["q"])
        return obj
