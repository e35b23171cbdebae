"""THI heat stress with cumulative load (dairy-rules.md section 2).

THI = (1.8 T + 32) - (0.55 - 0.0055 RH)(1.8 T - 26), the NRC form. The load is
THI-hours above ``load_base_thi`` over the last 24 h; hours below the raise
threshold in the same window tell whether the cows got any night relief.

Episodes, per afternoon: heat stress is raised once THI has stayed at or
above the raise threshold for ``SPELL_S`` (dips shorter than ``DIP_S`` do not
break a spell; the alert policy's minimum duration comes on top, so the alert
comes about two hours into the spell) and was above it for at least
``SPELL_SHARE`` of the time seen in the last ``SPELL_S``, so marginal
afternoons with half-hour runs above 72 raise nothing. It clears when THI
falls below the clear threshold, or is below the raise threshold after being
below it for ``RELIEF_S`` / ``RELIEF_WINDOW_S`` (two thirds) of the time seen
in the last ``RELIEF_WINDOW_S``: a night that never gets below 70 still ends
the afternoon's episode, and the next hot afternoon is a new alert. (Shares
of the time seen, because a humid night just under 72 read by a noisy sensor
pokes above it for a minute every few minutes: its "dips" are short, but it
is no spell, and its relief has no unbroken two hours; and a radio gap is
neither heat nor relief.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import HeatStressConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status, Tracked, every_key_tracked

RULE = "heat_stress"
DAY_S = 86400.0
MAX_GAP_S = 1800.0  # a reading stands for at most this long; longer gaps are unknown
SPELL_S = 5400.0
DIP_S = 900.0
SPELL_SHARE = 1 / 3
RELIEF_S = 2 * 3600.0
RELIEF_WINDOW_S = 3 * 3600.0
RELIEF_MIN_SEEN_S = 3600.0


def thi(temp_c: float, rh_pct: float) -> float:
    return (1.8 * temp_c + 32) - (0.55 - 0.0055 * rh_pct) * (1.8 * temp_c - 26)


@dataclass(slots=True)
class _Share:
    """The share of the observed time within a window (hours seen, of them
    hours on one side of the raise THI), with running sums: O(1) per reading."""

    window_s: float
    items: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, yes, seen)
    yes: float = 0.0
    seen: float = 0.0

    def __post_init__(self) -> None:
        self.yes = sum(x[1] for x in self.items)
        self.seen = sum(x[2] for x in self.items)

    def add(self, t: float, yes: float, seen: float) -> None:
        self.items.append((t, yes, seen))
        self.yes += yes
        self.seen += seen

    def expire(self, t: float) -> None:
        items = self.items
        while items and items[0][0] <= t - self.window_s:
            _, yes, seen = items.popleft()
            self.yes -= yes
            self.seen -= seen
        if not items:  # (float sums drift: an empty window is exactly nothing)
            self.yes = self.seen = 0.0

    def at_least(self, share: float, seen_s: float) -> bool:
        """Seen for ``seen_s`` or more, and ``share`` of that on the side counted."""
        return self.seen * 3600 >= seen_s - 1e-6 and self.yes >= share * self.seen - 1e-9

    def to_state(self) -> list[list[float]]:
        return [list(x) for x in self.items]


def _share(window_s: float, data: Any) -> _Share:
    # (A state saved by an earlier layout of these windows is counted afresh.)
    items = [x for x in (data or []) if isinstance(x, list) and len(x) == 3]
    return _Share(window_s, deque((a, b, c) for a, b, c in items))


@dataclass(slots=True)
class _Barn:
    last_t: float | None = None
    # (t, THI-hours above base, hours below raise threshold) per reading interval
    load: deque[tuple[float, float, float]] = field(default_factory=deque)
    # Running sums over ``load`` (THI-hours, relief hours): O(1) per reading.
    load_sum: float = 0.0
    relief_sum: float = 0.0
    above_since: float | None = None  # the current spell at or above the raise THI
    below_since: float | None = None  # below the raise THI since
    last_below: bool | None = None  # the last reading was below the raise THI
    # Of the time seen: at or above the raise THI within SPELL_S, below it within
    # RELIEF_WINDOW_S (a gap longer than MAX_GAP_S is not seen).
    spell: _Share = field(default_factory=lambda: _Share(SPELL_S))
    relief: _Share = field(default_factory=lambda: _Share(RELIEF_WINDOW_S))

    def __post_init__(self) -> None:
        self.load_sum = sum(x[1] for x in self.load)
        self.relief_sum = sum(x[2] for x in self.load)

    def add(self, t: float, thi_h: float, hours: float, below: bool) -> None:
        relief = hours if below else 0.0
        self.load.append((t, thi_h, relief))
        self.load_sum += thi_h
        self.relief_sum += relief
        self.spell.add(t, hours - relief, hours)
        self.relief.add(t, relief, hours)

    def expire(self, t: float) -> None:
        while self.load and self.load[0][0] < t - DAY_S:
            _, thi_h, relief = self.load.popleft()
            self.load_sum -= thi_h
            self.relief_sum -= relief
        if not self.load:
            self.load_sum = self.relief_sum = 0.0
        self.spell.expire(t)
        self.relief.expire(t)

    def to_state(self) -> dict[str, Any]:
        return {"last_t": self.last_t, "load": [list(x) for x in self.load],
                "above_since": self.above_since, "below_since": self.below_since,
                "last_below": self.last_below, "spell": self.spell.to_state(),
                "relief": self.relief.to_state()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Barn:
        # (An older state has no shares: they are counted afresh.)
        return cls(data["last_t"], deque((a, b, c) for a, b, c in data["load"]),
                   above_since=data.get("above_since"), below_since=data.get("below_since"),
                   last_below=data.get("last_below"),
                   spell=_share(SPELL_S, data.get("spell")),
                   relief=_share(RELIEF_WINDOW_S, data.get("relief")))


class HeatStressRule:
    name = RULE
    roles: tuple[str, ...] = ("climate",)

    def __init__(self, config: HeatStressConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.tracked: Tracked = every_key_tracked
        self.profile = config.profiles[config.profile]
        self.map = mapping
        self.barns: dict[str, _Barn] = {}

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        temp = reading.values.get(self.map.temperature_key)
        rh = reading.values.get(self.map.humidity_key)
        if temp is None or rh is None:
            return []
        p = self.profile
        value = thi(temp, rh)
        barn = self.barns.get(reading.sensor_id)
        if barn is None:
            barn = self.barns[reading.sensor_id] = _Barn()
        below = value < p.raise_thi
        if barn.last_t is not None and t - barn.last_t > MAX_GAP_S:
            barn.above_since = barn.below_since = None  # a spell is not carried over a gap
        if barn.last_t is not None and 0 < t - barn.last_t <= MAX_GAP_S:
            hours = (t - barn.last_t) / 3600
            # The time since the last reading is on the side that reading was on.
            was_below = below if barn.last_below is None else barn.last_below
            barn.add(t, max(0.0, value - p.load_base_thi) * hours, hours, was_below)
        barn.last_t, barn.last_below = t, below
        barn.expire(t)
        load = max(0.0, barn.load_sum)
        relief_h = max(0.0, barn.relief_sum)

        if not below:
            if barn.above_since is None or (barn.below_since is not None
                                            and t - barn.below_since > DIP_S):
                barn.above_since = t
            barn.below_since = None
        elif barn.below_since is None:
            barn.below_since = t
        # Relief wins: the shares overlap (a third above in 90 min, two thirds
        # below in 3 h), and a night that gave relief is no spell, however
        # often a noisy reading pokes above 72.
        relieved = barn.relief.at_least(RELIEF_S / RELIEF_WINDOW_S, RELIEF_MIN_SEEN_S)
        spell = (not relieved and barn.above_since is not None
                 and t - barn.above_since >= SPELL_S
                 and barn.spell.at_least(SPELL_SHARE, SPELL_S / 3))
        status: Status
        if value >= p.raise_thi:
            # A short run above 72 after the relief (a noisy reading, the
            # morning's first warm hour) does not hold the last episode open.
            status = "raise" if spell else "clear" if relieved else "hold"
        elif value < p.clear_thi or relieved:
            status = "clear"
        else:
            status = "hold"
        subject = f"barn:{reading.sensor_id}"
        if status != "raise" and not self.tracked(RULE, subject, ""):
            return []  # nothing open or pending for this barn: it would be dropped
        critical = value >= p.critical_thi or load >= p.load_critical_thi_h
        signals = [
            Signal("THI", value, limit=p.raise_thi,
                   note=f"air {temp:.1f} °C, RH {rh:.0f} %"),
            Signal("heat load (24 h)", load, limit=p.load_critical_thi_h, unit=" THI-h",
                   note=f"{relief_h:.1f} h below THI {p.raise_thi:.0f} (relief)"),
        ]
        return [Finding(
            rule=RULE, subject=subject, status=status, at=t,
            severity="critical" if critical else None,
            summary=f"Heat stress at {reading.sensor_id}",
            signals=signals, sensor_id=reading.sensor_id,
            extra={"thi": round(value, 2), "thi_hours_24h": round(load, 2),
                   "relief_hours_24h": round(relief_h, 2), "profile": self.cfg.profile},
        )]

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {k: v.to_state() for k, v in self.barns.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.barns = {k: _Barn.from_state(v) for k, v in state.items()}
