"""Time without a real-time clock.

A Raspberry Pi boots with its wall clock in 1970 and steps it when NTP answers,
so every duration uses the monotonic clock, and every record carries the wall
time, the monotonic time, the boot id and whether the clock was synced (R6).
"""

from __future__ import annotations

import os
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Protocol

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
# Before this instant (2024-01-01 UTC) the wall clock cannot be right.
_PLAUSIBLE_WALL = 1_704_067_200.0


class Clock(Protocol):
    """The clock interface; tests inject their own."""

    def wall(self) -> float:
        """Seconds since the epoch, as the wall clock says (may step)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps; for durations only."""
        ...

    def monotonic_ns(self) -> int:
        """Nanoseconds on the monotonic clock."""
        ...

    def synced(self) -> bool:
        """Whether the wall clock is believed to be right."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def __init__(self, timesync_flag: Path = TIMESYNC_FLAG) -> None:
        self._flag = timesync_flag
        self._synced = False

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def synced(self) -> bool:
        # Once synced, stay synced for this boot: systemd never removes the flag.
        if not self._synced:
            if os.environ.get("DAIRY_EDGE_CLOCK_SYNCED") == "0":
                return False
            if self._flag.exists():
                self._synced = True
            elif not self._flag.parent.exists():
                # No systemd-timesyncd (a laptop, a container, CI): trust a
                # plausible wall clock rather than flag every record forever.
                self._synced = time.time() > _PLAUSIBLE_WALL
        return self._synced


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's id for this boot; a random one where the kernel has none."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return str(uuid.uuid4())
