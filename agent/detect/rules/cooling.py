"""Bulk-tank cooling compliance (dairy-rules.md section 1).

Per tank the rule follows the milk: ``wash`` (hot water: suppress), ``empty``
(after a wash, until milk arrives), ``storage`` (cooled milk) and ``episode``
(warm milk above the target, from the first warm milk until it is cooled).
Violations: the profile's time limit passed above target; the blend above its
limit; the tank warming fast while above target (a working cooler keeps the
blend nearly flat, so this is the fast signal of a failed compressor); still
not cooling down after a first milking began; freezing.

Each cause has its own alert track (``Finding.cause``): ``cooler`` (not
cooling a milking, or running without cooling in storage), ``slow`` (a first
milking taking far longer than this tank's usual to reach target), ``time_limit``,
``blend`` and ``freezing``. A blend or time-limit alert open when the
compressor then fails does not hide the failure: ``cooler`` raises its own
alert. While ``cooler`` is raised, the limits it breaks are the same incident
and raise nothing new.

Signals: ``milk_temp_c`` is needed; ``level_l`` and ``agitator`` make it
better. A tank without a level value (many have none) is judged on
temperature alone: warm milk blending into cooled milk is normal (3.4 -> 7 °C
during a milking, back under 4 °C within two hours), so a rise is no failure
by itself. Without a level the rule raises ``not_cooling`` only when the
blend rises ``NO_LEVEL_RISE_FACTOR`` times ``not_cooling_rise_c`` within the rise
window, climbs ``NO_LEVEL_BLEND_RISE_C`` above where the episode started (far
beyond a working cooler's blend), or when the milk, above its starting level,
has not cooled ``NO_LEVEL_FALL_C`` from its peak for ``NO_LEVEL_FLAT_S`` (a
working cooler turns a blend around soon after the milking ends); the stalled
cooler check needs the agitator running ``NO_LEVEL_STALL_FACTOR`` times as long,
with the milk neither colder nor warming as a milking would warm it.

What the herd system records (farm events: milkings, the milking schedule,
collections) tells a temperature-only tank's milkings and drains from
failures; a tank whose probe reads the air until the milk covers it, and whose
cooler waits for enough milk, is judged on this tank's learnt first milkings.
So do the barn's milk meters (``MeterMilkings``): a parlour's meters report
each cow as she is milked, so while they are silent no milk is arriving. A
temperature-only tank whose cooled milk jumps (``milking_rise_c`` within the
rise window) while the meters are silent has been drained (its probe is in
the air): it is empty until the meters show the next milking; and an agitator
run or a warming swing that began with a metered milking is taken for its
blend until STORE_BLEND_S after the meters fall silent.

Every tank, with or without a level or agitator: cooled milk in storage that
climbs ``STORE_WARM_C`` above the tops of this tank's own thermostat swings,
slowly and with no turn, raises ``cooler`` (the compressor was called and does
not cool), hours before the milk reaches the legal limit.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from agent.config.rules import CoolingConfig, RoleMapping
from agent.detect.farm_events import FarmContext
from agent.detect.rules.base import Finding, Signal, Status, Tracked, every_key_tracked, median
from agent.records import Reading

RULE = "cooling"
# The cooler failing (not cooling a milking, or running without cooling in
# storage) is one cause; the compliance limits it leads to later are the same
# incident while it is alerted, and a cause of their own otherwise.
CAUSES = ("cooler", "slow", "time_limit", "blend", "freezing")
CONSEQUENCES = ("slow", "time_limit", "blend")
# Temperature-only tanks (no level value): see the module doc.
NO_LEVEL_BLEND_RISE_C = 6.0
NO_LEVEL_RISE_FACTOR = 2.0  # x not_cooling_rise_c within rise_window_s: far too steep
NO_LEVEL_FLAT_S = 3600.0
NO_LEVEL_FALL_C = 0.5
NO_LEVEL_PEAK_STEP_C = 0.3  # the peak moves only on a rise this large (noise, slow drift)
NO_LEVEL_STALL_FACTOR = 2.0
NO_LEVEL_STALL_RISE_C = 0.5
# Readings kept per tank window, at most. A tank whose readings carry no usable
# time (no `ts`, or a device clock more than a week off) is judged on arrival,
# and a backlog then arrives within minutes: its windows would hold all of it
# and every reading rescan them. 1,024 covers the longest span (40 min) at a
# reading every 2.3 s; the firmware sends every 30 s.
MAX_KEPT = 1024
# An agitator that has run this long (or three stalled-check spans, if longer)
# without a break is stirring, not following the compressor (robots stir while
# milk trickles in for days): a compressor that runs and does not cool is found
# within one span of its start (stalled_run_s, twice that without a level), and
# warming held milk is the storage-warming check's to judge.
CONTINUOUS_STIR_S = 6 * 3600.0
# A temperature-only tank cannot see milk arriving, and a working cooler holds a
# milking's blend flat: a long agitator run that starts at this barn's usual
# milking time (within ROUTINE_TOL_S of when long runs started on at least
# ROUTINE_DAYS of the last ROUTINE_MEMORY_DAYS days) is a milking, not a stall.
ROUTINE_TOL_S = 2700.0
ROUTINE_DAYS = 3
ROUTINE_MEMORY_DAYS = 7
DAY_S = 86400.0
NOTE_GAP_S = 3600.0
# A first milking into an empty tank: the cooler starts once enough milk covers
# its evaporator, minutes at a parlour but up to half an hour on a robot's
# trickle (and a robot that held milk back during the wash fills fast: the same
# tank varies day to day). A tank with a level starts the episode at
# empty_level_l, when there is milk to cool; a temperature-only tank starts it
# at the first warm milk, so "not cooling" waits FIRST_GRACE_UNLEARNT_S, or,
# once FIRST_MEMORY first milkings have cooled, FIRST_GRACE_FACTOR x the
# slowest of them when that is shorter (never below FIRST_GRACE_MIN_S). A big
# tank's cooler may wait an hour or more (compliant: the limits allow hours):
# once FIRST_WAIT_LEARNT first milkings have cooled and their median waited
# FIRST_WAIT_LONG_S or more, the grace is at least FIRST_WAIT_FACTOR x that
# median + FIRST_WAIT_MARGIN_S (at most FIRST_GRACE_ROBOTS_S). Alerted first
# milkings that cooled in the end count while fewer than FIRST_WAIT_LEARNT are
# known or the tank usually waits long (on a tank that cools at once they were
# failures put right); one that waited longer than FIRST_LEARN_MAX_S teaches
# nothing.
FIRST_GRACE_UNLEARNT_S = 2700.0
# Robots (the milk meters report all day) fill an empty tank at a trickle: the
# cooler may wait an hour or more for enough milk to cover its evaporator.
FIRST_GRACE_ROBOTS_S = 7200.0
FIRST_GRACE_FACTOR = 2.0
FIRST_MEMORY = 5
FIRST_GRACE_MIN_S = 1800.0  # learnt, never below: the same tank varies day to day
FIRST_WAIT_LEARNT = 3
FIRST_WAIT_LONG_S = 1800.0
FIRST_WAIT_FACTOR = 1.25
FIRST_WAIT_MARGIN_S = 900.0
FIRST_LEARN_MAX_S = 7200.0
# Cooled milk in storage swings inside the thermostat's band: it warms until the
# compressor starts, then drops. The tops of those swings (turns: a rise then a
# drop of STORE_HYST_C) are this tank's band; milk that climbs STORE_WARM_C above
# the highest of the last STORE_TURNS turns, at most STORE_RATE_MAX_C_H (a
# milking's blend warms faster and is judged as one), with no turn, is a cooler
# that no longer cools: seen hours before the milk reaches the legal limit.
# Unless warm milk arrived (an episode) within STORE_BLEND_S, or the swing left
# the band within STORE_BLEND_S after a time of day (ROUTINE_TOL_S either way)
# at which milkings began on ROUTINE_DAYS of the last days (episodes, and
# swings that went half as high and turned by themselves: slow blends), or the
# agitator run going on began at such a time; and not before the tank has been
# heard for ROUTINE_DAYS (those times are not known).
# Every swing is kept in ``run``: at least STORE_RATE_SPAN_S of readings.
STORE_HYST_C = 0.4
STORE_TURNS = 10
STORE_MIN_TURNS = 3
STORE_WARM_C = 0.6
STORE_RATE_MAX_C_H = 1.5
STORE_RATE_SPAN_S = 1800.0
STORE_SMOOTH_S = 600.0  # swings are followed on the median of this span (probe noise)
STORE_RISE_MIN_S = 3600.0  # a cooler failing in storage warms for hours, not minutes
STORE_BLEND_S = 7200.0  # a slow blend turns within this long of its milking's start
# A cooler that still cools, but slowly (a weak compressor, a refrigerant leak,
# a fouled condenser): a first milking not yet at target SLOW_FACTOR x (and
# SLOW_MIN_S past) this tank's usual time for one, once SLOW_LEARNT first
# milkings have been timed. Learnt, so it needs no profile: it warns before
# (or without) the legal limit. Slow ones are not learnt.
SLOW_FACTOR = 1.5
SLOW_MIN_S = 2700.0
SLOW_LEARNT = 3
SLOW_MEMORY = 10
# After a collection the herd system recorded, a temperature-only tank is empty:
# a rise (or the agitator starting) within this long is its probe in the air or
# the milk still waiting to be pumped out, not new milk; a wash ends it early.
COLLECT_QUIET_S = 3600.0
# A tank drained on a barn whose robots milk all day is taken for empty this long
# (or until a wash): the meters cannot say when its milk comes again.
DRAIN_HOLD_S = 7200.0
# Milk meters: readings less than METER_GAP_S apart are one milking; meters heard
# within METER_KNOWN_S meter this barn's milkings, and silent for METER_QUIET_S
# they say that no milk is arriving (a parlour's meters report a cow every minute
# or two while it milks). A session longer than METER_SESSION_MAX_S is no
# parlour milking but robots milking all day: while one is remembered (sessions
# are kept for METER_MEMORY_S) the meters tell no milking times.
METER_GAP_S = 1800.0
METER_SESSION_MAX_S = 5 * 3600.0
METER_QUIET_S = 1800.0
METER_KNOWN_S = 14 * 3600.0  # a parlour milks at least twice a day
METER_MEMORY_S = 2 * DAY_S
METERS_KEY = "\x1fmeters"  # in the rule's state beside the tanks; never a sensor id


@dataclass(slots=True)
class MeterMilkings:
    """When the barn's milk meters reported: its milkings, as the meters saw them
    (on the meters' own clock). Herd-wide: a meter does not say which tank."""

    sessions: list[list[float]] = field(default_factory=list)  # [start, last reading]

    def note(self, t: float) -> None:
        last = self.sessions[-1] if self.sessions else None
        if last is not None and t - last[1] <= METER_GAP_S:
            last[1] = max(last[1], t)
            return
        if last is not None and t < last[1]:
            return  # an old reading from before the latest milking: nothing new
        self.sessions = [x for x in self.sessions if x[1] >= t - METER_MEMORY_S] + [[t, t]]

    def known(self, t: float) -> bool:
        """Do meters report this barn's milkings (heard lately)?"""
        return bool(self.sessions) and t - self.sessions[-1][1] <= METER_KNOWN_S

    def quiet(self, t: float) -> bool:
        """Meters known, and silent for METER_QUIET_S: no milk is arriving."""
        return self.known(t) and t - self.sessions[-1][1] > METER_QUIET_S

    def robots(self) -> bool:
        """Do the meters show milking all day (robots), not milkings?"""
        return any(b - a > METER_SESSION_MAX_S for a, b in self.sessions)

    def milking(self, lo: float, hi: float) -> bool:
        """Did the meters report a milking at some time in [lo, hi]? Never on a
        barn whose robots milk all day."""
        return not self.robots() and any(a <= hi and lo <= b for a, b in self.sessions)

    def to_state(self) -> list[list[float]]:
        return [list(x) for x in self.sessions]

    @classmethod
    def from_state(cls, data: list[list[float]]) -> MeterMilkings:
        return cls([[float(a), float(b)] for a, b in data])


def _routine(starts: list[float], since: float) -> bool:
    """Did such runs begin near this time of day on enough recent days?"""
    days = set()
    for s in starts:
        k = round((since - s) / DAY_S)
        if 1 <= k <= ROUTINE_MEMORY_DAYS and abs(since - s - k * DAY_S) <= ROUTINE_TOL_S:
            days.add(k)
    return len(days) >= ROUTINE_DAYS


def _routine_within(starts: list[float], a: float, b: float) -> bool:
    """Did such runs begin between these times of day (within ROUTINE_TOL_S) on
    enough recent days?"""
    days = set()
    for s in starts:
        for k in range(1, ROUTINE_MEMORY_DAYS + 1):
            if a - ROUTINE_TOL_S <= s + k * DAY_S <= b + ROUTINE_TOL_S:
                days.add(k)
    return len(days) >= ROUTINE_DAYS


def _note(starts: list[float], since: float) -> list[float]:
    if starts and since - starts[-1] < NOTE_GAP_S:  # the same run, or the same milking
        return starts
    horizon = since - (ROUTINE_MEMORY_DAYS + 1) * DAY_S
    return [s for s in starts if s >= horizon] + [since]


@dataclass(slots=True)
class _Tank:
    phase: str = "unknown"  # wash | empty | storage | episode | unknown
    window: deque[tuple[float, float]] = field(default_factory=deque)
    start: float = 0.0
    peak_t: float = 0.0
    peak_c: float = -99.0
    blend: bool = False
    # Started by cooled milk drifting above target, not by milk arriving; the
    # level when it started (None: no level value).
    drift_level: float | None = None
    agitator: float = 0.0
    agitator_since: float | None = None
    run: deque[tuple[float, float, float | None]] = field(default_factory=deque)
    times_to_target: list[float] = field(default_factory=list)
    has_level: bool = False  # a level value seen from this tank
    base_c: float = 99.0  # the coldest milk in the rise window when the episode began
    rpeak_c: float = -99.0  # peak that moves only on real rises (temperature-only)
    rpeak_t: float = 0.0
    stall_c: float | None = None  # temperature when the stalled cooler was found
    cooler_on: bool = False  # the cooler cause is raised and has not ended
    # Sensor times at which agitator runs that lasted the stall span began: the
    # barn's milking routine, learnt (temperature-only tanks).
    long_runs: list[float] = field(default_factory=list)
    # How long this tank's first milkings took to cool first_drop_c below their
    # peak (not alerted ones only), and whether this episode has done so yet.
    first_delays: list[float] = field(default_factory=list)
    first_cooled: bool = False
    first_ttt: list[float] = field(default_factory=list)  # first milkings' times to target
    # The thermostat band in storage: the last turns, and the swing now (rising
    # from lo_c since rise_t, or falling from hi_c).
    turns: list[float] = field(default_factory=list)
    rising: bool = False
    lo_c: float = 99.0
    hi_c: float = -99.0
    rise_t: float = 0.0
    rise_level: float | None = None
    lo_t: float = 0.0
    lo_level: float | None = None
    smooth_c: float = 0.0
    first_t: float | None = None  # the first reading's time
    collected_t: float | None = None  # the latest collection the herd system recorded
    # Until then a rise in the empty tank (no level) is its probe in the air; None
    # once a wash has begun or the quiet is over. ``held``: a rise was held back.
    quiet_until: float | None = None
    held: bool = False
    # Drained (see ``_drained``) at ``drained_t``: empty until the meters show a
    # milking (robots: for DRAIN_HOLD_S, or until a wash).
    drained: bool = False
    drained_t: float = 0.0
    # When milkings began: episodes, and swings that climbed STORE_WARM_C / 2
    # above the band and then turned by themselves (a slow blend).
    excursions: list[float] = field(default_factory=list)
    cross_t: float | None = None  # when this swing left the band (by STORE_WARM_C / 2)
    high_turns: list[float] = field(default_factory=list)  # high turns in a row
    # Kept from ``window`` and ``run`` so that neither is rescanned at every
    # reading; not saved (rebuilt after a restore). ``lows``: the running minimum
    # of ``window``, (count of readings added before it, temperature), rising
    # from the oldest; ``recent``: the readings of ``run`` from the last
    # STORE_SMOOTH_S and ``recent_sorted`` their temperatures, sorted (None
    # while ``run``'s times are not in order: then it is rescanned).
    lows: deque[tuple[int, float]] | None = field(default=None, compare=False, repr=False)
    added: int = field(default=0, compare=False, repr=False)
    recent: deque[tuple[float, float]] | None = field(default=None, compare=False, repr=False)
    recent_sorted: list[float] = field(default_factory=list, compare=False, repr=False)

    def add_to_window(self, t: float, temp: float, span_s: float) -> float:
        """Add a reading to the rise window and drop those older than ``span_s``
        (or beyond MAX_KEPT); the coldest temperature left, as min() gives it."""
        window = self.window
        if self.lows is None:
            self.lows, self.added = deque(), 0
            for _, v in window:
                self._add_low(v)
        window.append((t, temp))
        self._add_low(temp)
        while window and (window[0][0] < t - span_s or len(window) > MAX_KEPT):
            window.popleft()
        lows, first = self.lows, self.added - len(window)  # the oldest reading left
        while lows[0][0] < first:
            lows.popleft()
        return lows[0][1]

    def _add_low(self, v: float) -> None:
        lows = self.lows
        assert lows is not None
        while lows and lows[-1][1] > v:  # never the minimum again; equal ones stay
            lows.pop()
        lows.append((self.added, v))
        self.added += 1

    def smoothed(self, t: float, raw: float) -> float:
        """The median (upper) of the temperatures in ``run`` from the last
        STORE_SMOOTH_S, ``raw`` being the one just added at ``t``."""
        recent, cutoff = self.recent, t - STORE_SMOOTH_S
        if recent is None or (recent and recent[-1][0] > t):
            return self._rescan(cutoff, raw)
        # Times in order: the readings in the span are the newest ones of ``run``.
        ordered, kept = self.recent_sorted, len(self.run)
        recent.append((t, raw))
        insort(ordered, raw)  # after equal ones: the order sorted() gives
        while recent[0][0] < cutoff or len(recent) > kept:
            _, v = recent.popleft()
            del ordered[bisect_left(ordered, v)]  # the oldest of equal ones
        return ordered[len(ordered) // 2]

    def _rescan(self, cutoff: float, raw: float) -> float:
        run = self.run
        ordered = sorted(v for tt, v, _ in run if tt >= cutoff)
        if all(a[0] <= b[0] for a, b in pairwise(run)):
            self.recent = deque((tt, v) for tt, v, _ in run if tt >= cutoff)
            self.recent_sorted = ordered
        else:
            self.recent = None
        return ordered[len(ordered) // 2] if ordered else raw

    def slow_after(self) -> float:
        """How long a first milking may take to reach target before it is slow."""
        if len(self.first_ttt) < SLOW_LEARNT:
            return float("inf")
        usual = median(self.first_ttt)
        return max(SLOW_FACTOR * usual, usual + SLOW_MIN_S)

    def first_grace(self, floor: float, robots: bool = False) -> float:
        grace = FIRST_GRACE_ROBOTS_S if robots else FIRST_GRACE_UNLEARNT_S
        if len(self.first_delays) >= FIRST_MEMORY:
            # With a level the episode began at empty_level_l, yet the cooler may
            # wait until the milk covers its evaporator (or the probe): learnt.
            low = floor if self.has_level else FIRST_GRACE_MIN_S
            grace = min(grace, max(low, FIRST_GRACE_FACTOR * max(self.first_delays)))
        if len(self.first_delays) >= FIRST_WAIT_LEARNT:
            usual = median(self.first_delays)
            if usual >= FIRST_WAIT_LONG_S:
                grace = max(grace, min(FIRST_WAIT_FACTOR * usual + FIRST_WAIT_MARGIN_S,
                                       FIRST_GRACE_ROBOTS_S))
        return max(floor, grace)

    def may_wait_long(self) -> bool:
        """May a first milking that cooled only after its allowance (it was
        alerted) teach the wait? While too few are known, or when this tank's
        cooler usually waits long; not on a tank that usually cools at once,
        where it was a failure put right (learning those would report each
        repeat of a fault later than the last)."""
        delays = self.first_delays
        return len(delays) < FIRST_WAIT_LEARNT or median(delays) >= FIRST_WAIT_LONG_S

    def routine(self, since: float) -> bool:
        """Did long agitator runs begin near this time of day on enough recent days?"""
        return _routine(self.long_runs, since)

    def note_long_run(self, since: float) -> None:
        self.long_runs = _note(self.long_runs, since)

    def to_state(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "window": [list(p) for p in self.window],
            "start": self.start,
            "peak_t": self.peak_t,
            "peak_c": self.peak_c,
            "blend": self.blend,
            "drift_level": self.drift_level,
            "agitator": self.agitator,
            "agitator_since": self.agitator_since,
            "run": [list(p) for p in self.run],
            "times_to_target": self.times_to_target,
            "has_level": self.has_level,
            "base_c": self.base_c,
            "rpeak_c": self.rpeak_c,
            "rpeak_t": self.rpeak_t,
            "stall_c": self.stall_c,
            "cooler_on": self.cooler_on,
            "long_runs": self.long_runs,
            "first_delays": self.first_delays,
            "first_cooled": self.first_cooled,
            "first_ttt": self.first_ttt,
            "turns": self.turns,
            "rising": self.rising,
            "lo_c": self.lo_c,
            "hi_c": self.hi_c,
            "rise_t": self.rise_t,
            "rise_level": self.rise_level,
            "lo_t": self.lo_t,
            "lo_level": self.lo_level,
            "smooth_c": self.smooth_c,
            "first_t": self.first_t,
            "collected_t": self.collected_t,
            "quiet_until": self.quiet_until,
            "held": self.held,
            "drained": self.drained,
            "drained_t": self.drained_t,
            "excursions": self.excursions,
            "cross_t": self.cross_t,
            "high_turns": self.high_turns,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Tank:
        tank = cls(**{k: v for k, v in data.items() if k not in ("window", "run")})
        tank.window = deque((float(t), float(v)) for t, v in data["window"])
        tank.run = deque((float(t), float(v), lv) for t, v, lv in data.get("run", []))
        return tank


class CoolingRule:
    name = RULE
    # Milk meters too: when they report, the barn is milking (``MeterMilkings``).
    roles: tuple[str, ...] = ("bulk_tank", "milk_meter")

    def __init__(self, config: CoolingConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.tracked: Tracked = every_key_tracked
        self.profile = config.profiles[config.profile]
        self.map = mapping
        self.tanks: dict[str, _Tank] = {}
        # What the herd system records (milkings, the schedule, collections): the
        # engine's, set by it; and wall time minus engine time (None: the clock is
        # not set), for the schedule's times of day.
        self.farm: FarmContext | None = None
        self.wall_shift: Callable[[], float | None] = lambda: None
        self.meters = MeterMilkings()

    def _farm_milking(self, sid: str, lo: float, hi: float,
                      planned: bool = False) -> bool | None:
        """Did the herd system record or schedule (``planned``: schedule only) a
        milking of this tank near [lo, hi]? None when it tells nothing of them."""
        farm = self.farm
        if farm is None or not farm.knows_milkings(sid, planned):
            return None
        shift = self.wall_shift()
        if planned and shift is None:
            return None  # the schedule's times of day cannot be placed
        return farm.milking_near(sid, lo, hi, ROUTINE_TOL_S, planned, shift)

    def _milk_unseen(self, tank: _Tank, t: float, level: float | None) -> bool:
        """A first milking filling the tank whose probe has not yet read warm milk
        (it reads the air of a cold barn until the milk covers it): not over."""
        if (tank.blend or level is None or tank.peak_c > self.profile.target_c
                or t - tank.start >= self.cfg.max_milking_s):
            return False
        old = next((x for x in tank.run if x[0] >= t - self.cfg.rise_window_s), None)
        return old is not None and old[2] is not None and level - old[2] > self.cfg.level_rise_l

    def _milk_may_arrive(self, tank: _Tank, sid: str, t: float, stirred: bool) -> bool:
        """Can a rise (or the agitator starting: ``stirred``) in an empty
        temperature-only tank be warm milk? Not within COLLECT_QUIET_S of a
        recorded collection (the milk may still be there, its thermostat cycling,
        until it is pumped out; then the probe warms in the air), nor a rise when
        the milking schedule says no milking now. (A recorded milking may be sent
        only once it is over: only the schedule says it in time.)"""
        if tank.quiet_until is not None and t < tank.quiet_until:
            tank.held = True
            return False
        if tank.drained and (self.meters.quiet(t) or (
                self.meters.robots() and t - tank.drained_t < DRAIN_HOLD_S)):
            return False  # drained, and no milking since: its probe warming in the air
        return stirred or self._farm_milking(sid, t, t, planned=True) is not False

    def _drained(self, tank: _Tank, t: float, rise: float) -> bool:
        """Temperature only: milk in storage (or a blend) warming ``rise`` within
        the rise window with no milk that could warm it so fast: in storage with
        the meters silent, or on robots, whose trickle cannot warm a tank holding
        milk NO_LEVEL_RISE_FACTOR x not_cooling_rise_c so fast. Its probe is in
        the air: the tank was drained."""
        cfg = self.cfg
        if (tank.phase == "storage" and rise >= cfg.milking_rise_c and self.meters.quiet(t)
                and not _routine_within(tank.excursions, t, t)):
            return True  # (at this barn's usual milking time the meters may be broken)
        return self.meters.robots() and rise >= cfg.not_cooling_rise_c * NO_LEVEL_RISE_FACTOR

    def _recheck_drain(self, tank: _Tank, t: float, temp: float) -> None:
        """A drain is a guess: meters that report late (a cow is reported when her
        cluster comes off) make the start of a milking look like one, and a robot
        barn's drain may be no drain. The meters heard within METER_QUIET_S of it
        (a parlour): it was milk arriving, an episode from then. Robots, no wash
        within DRAIN_HOLD_S and the milk above target: judged as a first milking."""
        meters, since = self.meters, tank.drained_t
        if meters.robots():
            if t - since >= DRAIN_HOLD_S and temp > self.profile.target_c:
                self._start(tank, t, blend=False)
        elif t - since <= METER_QUIET_S and meters.milking(since - METER_QUIET_S, t):
            self._start(tank, since, blend=True)

    def _metered(self, began: float, t: float) -> bool:
        """Did what began at ``began`` (an agitator run, a swing warming) begin
        with a milking the meters reported, which ran within STORE_BLEND_S of
        ``t``? Its milk may explain it: a working cooler holds a milking's blend
        flat, or turns it within STORE_BLEND_S. Warming that began before the
        milking, or goes on long after it, is not explained."""
        meters = self.meters
        return (meters.milking(began - METER_QUIET_S, began + METER_QUIET_S)
                and meters.milking(t - STORE_BLEND_S, t))

    def on_reading(self, reading: Reading, t: float) -> list[Finding]:
        values = reading.values
        if reading.firmware in self.map.milk_meter or (
                self.map.yield_key in values and self.map.milk_temp_key not in values):
            self.meters.note(t)  # a meter (its milk temperature is a cow's, not a tank's)
            return []
        temp = values.get(self.map.milk_temp_key)
        if temp is None:
            return []
        tank = self.tanks.setdefault(reading.sensor_id, _Tank())
        if tank.first_t is None:
            tank.first_t = t
        agitator = reading.values.get(self.map.agitator_key, tank.agitator)
        washing = reading.values.get(self.map.wash_key, 0.0) >= 0.5
        started_agitator = agitator >= 0.5 and tank.agitator < 0.5
        tank.agitator = agitator
        if agitator < 0.5:
            tank.agitator_since = None
        elif tank.agitator_since is None:
            tank.agitator_since = t
        level = reading.values.get(self.map.level_key)
        if level is not None:
            tank.has_level = True
        run = tank.run
        run.append((t, temp, level))
        span = max((self.cfg.stalled_run_s or 0.0) * NO_LEVEL_STALL_FACTOR, STORE_RATE_SPAN_S)
        while len(run) > 1 and (run[1][0] <= t - span or len(run) > MAX_KEPT):
            run.popleft()
        window = tank.window
        rise = temp - tank.add_to_window(t, temp, self.cfg.rise_window_s)
        p, cfg = self.profile, self.cfg

        # Phase transitions. A level value, where the tank sends one, says directly
        # whether there is milk to cool; without it, temperature and agitator tell.
        empty = level is not None and level <= cfg.empty_level_l
        sid = reading.sensor_id
        collected = (None if self.farm is None or tank.has_level else self.farm.collected_since(
            sid, -math.inf if tank.collected_t is None else tank.collected_t))
        if collected is not None and collected <= t:
            # Without a level only the herd system can say the milk was collected:
            # what follows is an empty tank (its probe in air), not cooled milk;
            # unless milk has come since (the event came late).
            tank.collected_t = collected
            if tank.phase in ("storage", "episode") and collected > tank.start:
                tank.phase = "empty"
                tank.quiet_until, tank.held = collected + COLLECT_QUIET_S, False
        if tank.quiet_until is not None and (washing or t >= tank.quiet_until):
            if (not washing and tank.held and tank.phase == "empty"
                    and temp > p.target_c + cfg.clear_margin_c):
                self._start(tank, t, blend=False)  # the rise held back was warm milk
            tank.quiet_until, tank.held = None, False
        if tank.drained and tank.phase == "empty" and not washing:
            self._recheck_drain(tank, t, temp)
        if washing or temp >= cfg.wash_detect_c:
            tank.phase = "wash"
            if self.meters.robots():
                tank.drained = False  # washed: the robots' milk comes next
        elif empty or tank.phase == "wash":
            tank.phase = "empty"
        elif tank.phase == "unknown":
            tank.phase = "storage" if temp <= p.target_c else "empty"
        if tank.phase == "empty" and not empty and (
                level is not None or started_agitator or rise >= cfg.milking_rise_c) and (
                level is not None or self._milk_may_arrive(tank, sid, t, started_agitator)):
            self._start(tank, t, blend=False)
        elif (tank.phase == "storage" or (tank.phase == "episode" and tank.blend)) and (
                not tank.has_level and self._drained(tank, t, rise)):
            tank.phase, tank.drained, tank.drained_t = "empty", True, t
        elif tank.phase == "storage" and (temp > p.target_c or rise >= cfg.milking_rise_c):
            self._start(tank, t, blend=True, drift=rise < cfg.milking_rise_c)
            if rise < cfg.milking_rise_c:
                tank.drift_level = level
        elif (tank.phase == "episode" and tank.drift_level is not None and level is not None
              and level - tank.drift_level > cfg.level_rise_l):
            # Milk now arrives after a thermostat drift above target: the time
            # limit counts from this milking, not from the drift.
            self._start(tank, t, blend=True)
        elif (tank.phase == "episode" and temp <= p.target_c - cfg.clear_margin_c
              and not self._milk_unseen(tank, t, level)):
            tank.times_to_target = (tank.times_to_target + [t - tank.start])[-20:]
            if not tank.blend and not t - tank.start > tank.slow_after():
                tank.first_ttt = (tank.first_ttt + [t - tank.start])[-SLOW_MEMORY:]
            tank.phase = "storage"
        if tank.phase == "episode" and temp > tank.peak_c:
            tank.peak_c, tank.peak_t = temp, t
        if tank.phase == "episode" and temp > tank.rpeak_c + NO_LEVEL_PEAK_STEP_C:
            tank.rpeak_c, tank.rpeak_t = temp, t

        found: dict[str, list[Signal]] = {}
        if tank.phase == "episode":
            anchor = tank.start
            if p.anchor == "peak":
                anchor = min(tank.peak_t, tank.start + cfg.max_milking_s)
            elapsed = t - anchor
            if elapsed > p.time_limit_s and temp > p.target_c:
                found["time_limit"] = [Signal(
                    "milk temperature", temp, limit=p.target_c, unit=" °C",
                    note=f"not cooled {elapsed / 3600:.1f} h after the milking "
                    f"{'peak' if p.anchor == 'peak' else 'start'} (limit "
                    f"{p.time_limit_s / 3600:.1f} h)",
                )]
            slow_after = tank.slow_after()
            if not tank.blend and t - tank.start > slow_after and temp > p.target_c:
                usual = median(tank.first_ttt)
                found["slow"] = [Signal(
                    "milk temperature", temp, limit=p.target_c, unit=" °C",
                    note=f"not at target {(t - tank.start) / 60:.0f} min after the first milk; "
                    f"this tank usually takes {usual / 60:.0f} min: the cooler cools too slowly",
                )]
            if tank.blend and p.blend_max_c is not None and temp > p.blend_max_c:
                found["blend"] = [Signal("blend temperature", temp, limit=p.blend_max_c,
                                         unit=" °C")]
            in_grace = not tank.blend and t - tank.start < cfg.hot_grace_s
            if not tank.blend:
                # The warm milk's own arrival is no rise, nor is the probe going
                # from air to milk once the milk covers it: only warming after
                # the peak (after the cooler has begun) counts.
                rise = temp - min(v for tt, v in window if tt >= max(tank.start, tank.peak_t))
            failing: list[Signal] = []
            if tank.has_level:
                if (not in_grace and rise >= cfg.not_cooling_rise_c
                        and self._uncooled(tank, temp)):
                    failing.append(Signal(
                        "temperature rise", rise, limit=cfg.not_cooling_rise_c, unit=" °C",
                        note=f"warming in {cfg.rise_window_s / 60:.0f} min: the tank is not "
                        f"cooling",
                    ))
            elif tank.blend:
                failing += self._uncooled_blend(tank, t, temp, rise)
            drop = tank.peak_c - temp
            first_grace = tank.first_grace(cfg.hot_grace_s, self.meters.robots())
            if not tank.blend and not tank.first_cooled and drop >= cfg.first_drop_c:
                tank.first_cooled = True
                if t - tank.start <= first_grace or (t - tank.start <= FIRST_LEARN_MAX_S
                                                     and tank.may_wait_long()):
                    tank.first_delays = (tank.first_delays + [t - tank.start])[-FIRST_MEMORY:]
            if (not tank.blend and t - tank.start >= first_grace and temp > p.target_c
                    and drop < cfg.first_drop_c):
                failing.append(Signal(
                    "milk temperature", temp, baseline=tank.peak_c, unit=" °C",
                    note=f"first milking cooled only {drop:.1f} °C from its peak in "
                    f"{(t - tank.start) / 60:.0f} min: the tank is not cooling",
                ))
            if failing:
                found["cooler"] = failing
        self._swing(tank, t, temp, level)
        stalled = (self._stalled(tank, sid, t, temp, level)
                   or self._warming(tank, sid, t, temp, level))
        if stalled is not None:
            found.setdefault("cooler", []).append(stalled)
            if tank.stall_c is None:
                tank.stall_c = tank.smooth_c  # the 10-min median: a coarse probe jitters
        if tank.phase in ("storage", "episode") and temp < p.freeze_c:
            found["freezing"] = [Signal("milk temperature", temp, limit=p.freeze_c, unit=" °C",
                                        note="milk is freezing")]

        extra = {"profile": self.cfg.profile, "phase": tank.phase,
                 "level": "yes" if tank.has_level else "none (temperature only)"}
        idle = tank.phase in ("wash", "empty")
        cooled = idle or temp <= p.target_c - cfg.clear_margin_c
        if tank.stall_c is not None and (
                idle or tank.smooth_c <= tank.stall_c - 2 * cfg.stalled_min_drop_c):
            tank.stall_c = None  # cooling again
        ended = {
            "cooler": cooled and tank.stall_c is None,
            "slow": cooled,
            "time_limit": cooled,
            "blend": cooled or (p.blend_max_c is not None
                                and temp <= p.blend_max_c - cfg.clear_margin_c),
            "freezing": idle or temp >= p.freeze_c + cfg.clear_margin_c,
        }
        if "cooler" in found:
            tank.cooler_on = True
        elif ended["cooler"]:
            tank.cooler_on = False
        subject = f"tank:{sid}"
        tracked = self.tracked
        out: list[Finding] = []
        for cause in CAUSES:
            signals = found.get(cause)
            covered = bool(signals) and cause in CONSEQUENCES and tank.cooler_on
            if (covered or not signals) and not tracked(RULE, subject, cause):
                continue  # a hold or clear with nothing open or pending: it would be dropped
            status: Status
            if covered:
                status, severity = "hold", None  # the failure's own alert covers it
                summary = f"Bulk tank {sid} cooling out of compliance ({p.source})"
            elif signals:
                status = "raise"
                severity = "warning" if cause in ("freezing", "slow") else None
                summary = (f"Bulk tank {sid} cooling more slowly than usual" if cause == "slow"
                           else f"Bulk tank {sid} cooling out of compliance ({p.source})")
            elif ended[cause]:
                status, severity, summary = "clear", None, f"Bulk tank {sid} cooled"
            else:
                status, severity, summary = "hold", None, f"Bulk tank {sid} cooling"
            out.append(Finding(
                rule=RULE, subject=subject, status=status, at=t, severity=severity,
                summary=summary, signals=signals or [], sensor_id=sid,
                extra={**extra, "cause": cause}, cause=cause,
            ))
        return out

    def _uncooled_blend(self, tank: _Tank, t: float, temp: float,
                        rise: float) -> list[Signal]:
        """Temperature only: a blend far steeper or higher than a working cooler's,
        or one that does not turn around."""
        out: list[Signal] = []
        steep = self.cfg.not_cooling_rise_c * NO_LEVEL_RISE_FACTOR
        if rise >= steep:
            out.append(Signal(
                "temperature rise", rise, limit=steep, unit=" °C",
                note=f"warming in {self.cfg.rise_window_s / 60:.0f} min far faster than a "
                f"cooled blend: the tank is not cooling (no level value: judged on "
                "temperature alone)"))
        rise = temp - tank.base_c
        if rise >= NO_LEVEL_BLEND_RISE_C:
            out.append(Signal(
                "blend rise", rise, baseline=tank.base_c, limit=NO_LEVEL_BLEND_RISE_C,
                unit=" °C", note="warm milk is not being cooled (no level value: judged on "
                "temperature alone)"))
        flat = t - tank.rpeak_t
        if (flat >= NO_LEVEL_FLAT_S and tank.rpeak_c - temp < NO_LEVEL_FALL_C
                and temp >= tank.base_c + self.cfg.milking_rise_c):
            out.append(Signal(
                "milk temperature", temp, baseline=tank.rpeak_c, unit=" °C",
                note=f"not cooled {NO_LEVEL_FALL_C:.1f} °C from its peak in "
                f"{flat / 60:.0f} min: the tank is not cooling (temperature only)"))
        return out

    def _uncooled(self, tank: _Tank, temp: float) -> bool:
        """Is the rise all warm milk and no cooling? Without a level: assume so."""
        t0 = tank.window[0][0]
        old = next((x for x in tank.run if x[0] >= t0), None)
        level = tank.run[-1][2]
        if old is None or old[2] is None or level is None or level <= old[2]:
            return True
        v0, temp0 = max(old[2], 1.0), old[1]
        mixed = (v0 * temp0 + (level - old[2]) * self.cfg.milk_in_c) / level
        return mixed - temp < self.cfg.min_cooling_c

    def _stalled(self, tank: _Tank, sid: str, t: float, temp: float,
                 level: float | None) -> Signal | None:
        """Cooled milk in storage, the cooler running (agitator on) for stalled_run_s,
        no milk arriving, and the milk not getting colder: the cooler does not cool."""
        cfg = self.cfg
        span = cfg.stalled_run_s
        if span is None or tank.phase != "storage" or tank.agitator_since is None:
            return None
        if not tank.has_level:
            span *= NO_LEVEL_STALL_FACTOR
        if not span <= t - tank.agitator_since <= max(CONTINUOUS_STIR_S, 3 * span):
            return None
        if not tank.has_level:
            since = tank.agitator_since
            # The meters stand in for the routine while it is not learnt yet.
            learnt = tank.first_t is not None and t - tank.first_t >= ROUTINE_DAYS * DAY_S
            milking = (tank.routine(since) or (not learnt and self._metered(since, t))
                       or bool(self._farm_milking(sid, since, since)))
            tank.note_long_run(since)
            if milking:
                return None
        ref = tank.run[0]
        for item in tank.run:  # the last sample at or before t - span
            if item[0] > t - span:
                break
            ref = item
        t0, temp0, level0 = ref
        if t - t0 < span:
            return None
        if tank.has_level:
            if level is None or level0 is None or level - level0 > cfg.level_rise_l:
                return None
        else:
            if temp - temp0 > NO_LEVEL_STALL_RISE_C:
                return None  # warming like a milking: the blend checks judge it
            high = temp0
            for item in tank.run:  # any cooling at all in the span: the cooler works
                if item[0] >= t0:
                    high = max(high, item[1])
                    if high - item[1] >= cfg.stalled_min_drop_c:
                        return None
        if temp0 - temp >= cfg.stalled_min_drop_c:
            return None
        return Signal("milk temperature", temp, baseline=temp0, unit=" °C",
                      note=f"agitator running {(t - tank.agitator_since) / 60:.0f} min with no "
                      f"milk arriving{'' if tank.has_level else ' (no level: by temperature)'}, but the milk is not getting colder: the cooler runs "
                      f"and does not cool")

    def _swing(self, tank: _Tank, t: float, raw: float, level: float | None) -> None:
        """Follow the thermostat's swings in storage (on the median of the last
        STORE_SMOOTH_S: a coarse, noisy probe jitters); note the top of each."""
        temp = tank.smoothed(t, raw)
        tank.smooth_c = temp
        if tank.phase != "storage":
            # judged afresh from the next storage
            tank.rising, tank.lo_c, tank.lo_t, tank.lo_level = False, temp, t, level
            tank.cross_t = None
            return
        if tank.rising:
            tank.hi_c = max(tank.hi_c, temp)
            high = bool(tank.turns) and temp >= max(tank.turns) + STORE_WARM_C / 2
            if high and tank.cross_t is None:
                tank.cross_t = t  # the swing left the band: when a blend shows
            if tank.hi_c - temp >= STORE_HYST_C:  # the compressor turned it around
                self._turn(tank)
                tank.rising, tank.lo_c, tank.lo_t, tank.lo_level = False, temp, t, level
        elif temp < tank.lo_c:
            tank.lo_c, tank.lo_t, tank.lo_level = temp, t, level
        elif temp - tank.lo_c >= STORE_HYST_C:
            tank.rising, tank.hi_c = True, temp
            tank.rise_t, tank.rise_level = tank.lo_t, tank.lo_level

    def _turn(self, tank: _Tank) -> None:
        """A swing turned by itself at ``hi_c``: a thermostat top, or, well above
        the band, a milking's slow blend (its time of day is noted, unless the
        swing was alerted as a failure). Three high turns in a row with no
        blend between are the band itself, moved (the setpoint was changed)."""
        top = tank.hi_c
        if tank.turns and top >= max(tank.turns) + STORE_WARM_C / 2:
            if tank.stall_c is None and tank.cross_t is not None:
                tank.excursions = _note(tank.excursions, tank.cross_t)
            tank.high_turns = (tank.high_turns + [top])[-STORE_MIN_TURNS:]
            if len(tank.high_turns) >= STORE_MIN_TURNS:
                tank.turns, tank.high_turns = list(tank.high_turns), []
        else:
            tank.turns = (tank.turns + [top])[-STORE_TURNS:]
            tank.high_turns = []
        tank.cross_t = None

    def _warming(self, tank: _Tank, sid: str, t: float, temp: float,
                 level: float | None) -> Signal | None:
        """Cooled milk in storage climbing above this tank's thermostat band, slowly
        (no milking), with no turn: the compressor was called and did not cool."""
        heard = 0.0 if tank.first_t is None else t - tank.first_t
        if (tank.phase != "storage" or not tank.rising or len(tank.turns) < STORE_MIN_TURNS
                or heard < ROUTINE_DAYS * DAY_S):  # its milking times are not known yet
            return None
        top = max(tank.turns)
        now = tank.smooth_c
        if now < top + STORE_WARM_C or t - tank.rise_t < STORE_RISE_MIN_S:
            return None
        if (level is not None and tank.rise_level is not None
                and level - tank.rise_level > self.cfg.level_rise_l):
            return None  # milk arriving: the blend checks judge it
        past = next((x for x in tank.run if x[0] >= t - STORE_RATE_SPAN_S), None)
        if past is None or t - past[0] < STORE_RATE_SPAN_S / 2:
            return None
        rate = (temp - past[1]) / (t - past[0]) * 3600
        if rate > STORE_RATE_MAX_C_H:
            return None  # as fast as a milking's blend
        cross = tank.cross_t if tank.cross_t is not None else t
        if (_routine_within(tank.excursions, cross - STORE_BLEND_S, cross)
                or t - tank.start < STORE_BLEND_S  # warm milk arrived lately: a blend
                or (tank.agitator_since is not None and tank.routine(tank.agitator_since))
                or (not tank.has_level  # a level shows arriving milk itself
                    and (self._metered(tank.rise_t, t)
                         or self._farm_milking(sid, cross - STORE_BLEND_S, cross)))):
            return None  # a slow blend at this barn's milking time
        return Signal("milk temperature", now, baseline=top, limit=top + STORE_WARM_C,
                      unit=" °C", note=f"cooled milk warming {(t - tank.rise_t) / 60:.0f} min "
                      f"without cooling, {now - top:.1f} °C above this tank's thermostat "
                      "band: the cooler does not cool")

    def _start(self, tank: _Tank, t: float, blend: bool, drift: bool = False) -> None:
        if not drift:  # cooled milk drifting above target is no milking
            tank.excursions = _note(tank.excursions, t)  # a milking's time of day
        tank.phase, tank.start, tank.blend = "episode", t, blend
        tank.drained = False
        tank.first_cooled = False
        tank.drift_level = None
        tank.peak_t, tank.peak_c = t, -99.0
        tank.rpeak_t, tank.rpeak_c = t, -99.0
        tank.base_c = min(v for _, v in tank.window) if tank.window else 99.0

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {**{k: v.to_state() for k, v in self.tanks.items()},
                METERS_KEY: self.meters.to_state()}

    def from_state(self, state: dict[str, Any]) -> None:
        self.tanks = {k: _Tank.from_state(v) for k, v in state.items() if k != METERS_KEY}
        self.meters = MeterMilkings.from_state(state.get(METERS_KEY, []))
