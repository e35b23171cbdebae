"""Retry delays: capped exponential backoff with jitter, and Retry-After.

Delays are durations, measured on the monotonic clock by whoever sleeps.
The jitter draws from the upper half of each step ("equal jitter"): every
gap stays >= 0.5 * base * 2**k (T6) while gateways that lost the link
together still spread out.
"""

from __future__ import annotations

import email.utils
import math
import random


class Backoff:
    def __init__(self, base_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if base_s <= 0 or max_s < base_s:
            raise ValueError("need 0 < base_s <= max_s")
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.failures = 0

    def bounds(self, k: int) -> tuple[float, float]:
        """The (low, high) range of the delay after the (k+1)-th failure in a row."""
        # min() before ** would overflow for large k; cap the exponent instead.
        step = self.max_s if k >= 64 else min(self.max_s, self.base_s * 2**k)
        return step / 2, step

    def next_delay(self) -> float:
        """The delay before the next try; each call counts one more failure."""
        low, high = self.bounds(self.failures)
        self.failures += 1
        return self._rng.uniform(low, high)

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        # A date needs the wall clock; before NTP it may be far off, so the
        # caller caps the result.
        seconds = when.timestamp() - now_wall
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
