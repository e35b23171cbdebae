"""Runtime profiles: which named profile is active, and switching it without a
restart (config: ``profiles``, ``profile_schedule``, ``profile_clock``;
docs/profiles.md).

The active profile is whichever came last: the latest scheduled start (each
``profile_schedule`` entry starts its profile daily at its time) or the latest
explicit switch (MQTT command topic, status page). So an explicit switch lasts
until the next scheduled change, and with no schedule until the next switch.
The explicit switch is kept in the buffer's state table, so it survives a
restart. The schedule follows the wall clock and is consulted only once the
clock is synced (a gateway without a real-time clock boots in the past).

Applying a profile hands its merged rules config to the rule engine
(``RuleEngine.reconfigure``: thresholds change, learnt state stays) and its
camera sampling to the vision scheduler. Every switch, and every refused
request, is reported to ``on_switch`` / ``on_refused`` (the daemon stores them
as events, which sync to central).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from agent.clock import Clock
from agent.config.model import Config
from agent.config.profiles import NORMAL, CameraProfile, merged_rules
from agent.config.rules import RulesConfig

log = logging.getLogger(__name__)

STATE_KEY = "profile"
MAX_NAME = 64  # longer requests are cut in events and logs


class UnknownProfile(ValueError):
    """A request names no configured profile."""


@dataclass(frozen=True, slots=True)
class Switch:
    """One change of the active profile."""

    old: str
    new: str
    by: str  # schedule | mqtt | web:<user> | restart
    wall_ts: float

    def detail(self) -> str:
        return f"profile {self.old} -> {self.new} by {self.by}"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    rules: RulesConfig
    cameras: dict[str, CameraProfile]


class ProfileManager:
    """The active profile, the schedule and explicit switches (thread-safe)."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        apply: Callable[[Profile], None],
        on_switch: Callable[[Switch], None] | None = None,
        on_refused: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """:param apply: called with the new profile on every switch (under the lock).
        :param on_switch: told of every switch after it is applied.
        :param on_refused: ``(requested name, by, reason)`` for a refused request."""
        self.clock = clock
        self.profiles: dict[str, Profile] = {
            NORMAL: Profile(NORMAL, "the base configuration", config.detect.rules, {})}
        for name, p in config.profiles.items():
            self.profiles[name] = Profile(name, p.description,
                                          merged_rules(config.detect.rules, p, name),
                                          dict(p.cameras))
        self.schedule = sorted((e.at, e.profile) for e in config.profile_schedule)
        self.utc = config.profile_clock == "utc"
        self._apply = apply
        self._on_switch = on_switch
        self._on_refused = on_refused
        self._lock = threading.RLock()
        self.active = NORMAL
        self.active_by = "start"
        self.active_since: float | None = None
        # The latest explicit switch: (profile, wall time, by).
        self.explicit: tuple[str, float, str] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.profiles)

    @property
    def enabled(self) -> bool:
        """Anything to switch between (profiles configured)."""
        return len(self.profiles) > 1

    # -- the schedule -----------------------------------------------------------
    def scheduled(self, now_wall: float) -> tuple[str, float] | None:
        """The schedule entry in force at ``now_wall``: (profile, its start), or None
        without a schedule."""
        if not self.schedule:
            return None
        tz = UTC if self.utc else None
        now = datetime.fromtimestamp(now_wall, tz)
        best: tuple[str, float] | None = None
        for at, name in self.schedule:
            hh, mm = (int(x) for x in at.split(":"))
            start = datetime.combine(now.date(), time(hh, mm), tzinfo=tz)
            if start > now:
                start -= timedelta(days=1)
            ts = start.timestamp()
            if best is None or ts > best[1]:
                best = (name, ts)
        return best

    def wanted(self, now_wall: float) -> tuple[str, str]:
        """The profile that should be active now, and why (by)."""
        sched = self.scheduled(now_wall) if self.clock.synced() else None
        explicit = self.explicit
        if explicit is not None and (sched is None or explicit[1] >= sched[1]):
            return explicit[0], explicit[2]
        if sched is not None:
            return sched[0], "schedule"
        return self.active, self.active_by

    # -- switching --------------------------------------------------------------
    def tick(self, now_wall: float | None = None) -> Switch | None:
        """Follow the schedule (call about once a second)."""
        now = self.clock.wall() if now_wall is None else now_wall
        with self._lock:
            name, by = self.wanted(now)
            if name not in self.profiles:  # a restored switch to a profile since removed
                self.explicit = None
                name, by = self.wanted(now)
                if name not in self.profiles:
                    name, by = NORMAL, "restart"
            return self._switch(name, by, now) if name != self.active else None

    def request(self, name: str, by: str, now_wall: float | None = None) -> Switch | None:
        """An explicit switch (MQTT, the page). None when ``name`` is already active.

        :raises UnknownProfile: no profile has that name (reported to on_refused)."""
        now = self.clock.wall() if now_wall is None else now_wall
        name = name.strip()
        with self._lock:
            if name not in self.profiles:
                shown = name[:MAX_NAME]
                reason = f"no profile {shown!r}; known: {', '.join(self.profiles)}"
                log.warning("profile switch by %s refused: %s", by, reason)
                if self._on_refused is not None:
                    self._on_refused(shown, by, reason)
                raise UnknownProfile(reason)
            self.explicit = (name, now, by)
            return self._switch(name, by, now) if name != self.active else None

    def _switch(self, name: str, by: str, now: float) -> Switch:
        old = self.active
        self._apply(self.profiles[name])
        self.active, self.active_by, self.active_since = name, by, now
        switch = Switch(old, name, by, now)
        log.info("%s", switch.detail())
        if self._on_switch is not None:
            self._on_switch(switch)
        return switch

    # -- status and persistence ---------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For the status page: the active profile, who chose it, what else there is."""
        with self._lock:
            now = self.clock.wall()
            sched = self.scheduled(now) if self.clock.synced() else None
            return {
                "active": self.active,
                "by": self.active_by,
                "since_ts": self.active_since,
                "description": self.profiles[self.active].description,
                "available": [{"name": p.name, "description": p.description}
                              for p in self.profiles.values()],
                "next": self._next_entry(now) if sched is not None else None,
            }

    def _next_entry(self, now_wall: float) -> dict[str, Any] | None:
        if not self.schedule:
            return None
        tz = UTC if self.utc else None
        now = datetime.fromtimestamp(now_wall, tz)
        best: tuple[float, str, str] | None = None
        for at, name in self.schedule:
            hh, mm = (int(x) for x in at.split(":"))
            start = datetime.combine(now.date(), time(hh, mm), tzinfo=tz)
            if start <= now:
                start += timedelta(days=1)
            if best is None or start.timestamp() < best[0]:
                best = (start.timestamp(), at, name)
        assert best is not None
        return {"at": best[1], "profile": best[2], "ts": best[0]}

    def to_state(self) -> dict[str, Any]:
        with self._lock:
            return {"explicit": list(self.explicit) if self.explicit else None}

    def from_state(self, state: dict[str, Any]) -> None:
        """The explicit switch saved before a restart (applied by the next tick)."""
        explicit = state.get("explicit")
        with self._lock:
            if (isinstance(explicit, list) and len(explicit) == 3
                    and isinstance(explicit[0], str) and isinstance(explicit[1], int | float)):
                self.explicit = (explicit[0], float(explicit[1]), "restart")
