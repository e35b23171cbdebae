"""Estrus from collar activity against the cow's own baseline (section 4).

Her baseline is an EWMA of her activity rate per hour of day, so feeding and
milking peaks do not look like heat. Each collar reading gives a log ratio of
observed to expected activity; the signal is the *median* ratio over the last
``window_s``, so only a rise sustained over hours counts (estrus lasts
12-18 h) and a one-hour disturbance barely moves it. Three guards against
false heats:

- the threshold scales with the cow's own typical deviation of that signal
  (restless cows need a larger rise than calm ones), with a floor;
- a rise the whole herd shares (regrouping, hoof trimming) is subtracted,
  and while the herd is stirred up no new heat is raised: heat is individual;
- hours that look like heat stay out of her baseline, but only for
  ``max_heat_s``; a longer rise is her new normal.

A weak heat (about 2x for 12-16 h) can keep the 4-h median just under a
restless cow's threshold all the way through. So a settled cow is also judged
on a second, longer window (``long_window_s``, 8 h), the same way against its
own typical deviation: a median over twice the readings wavers less, so its
threshold is lower. It raises too; both must fall below their clear level to
clear. Its hours are kept out of her baseline only once it reaches its raise
level (its clear level is low enough to catch ordinary restless days, and
leaving those out would shrink her spread and make the 4-h window raise
falsely), and after a herd-wide disturbance it waits half its own window, not
half the short one. A cow in her first week is judged on it too, by her place
in the herd over the long window (below) against the herd's robust deviation
of that place, her own deviation and the floor, both scaled by
sqrt(window_s / long_window_s), as a median's wavering scales with its count.

Tied cows are reported at low confidence, since their activity is damped.

Before ``warmup_days`` a cow has no settled baseline of her own, so she is
compared with the herd instead: her median log activity over the window
against the median of the cows heard at the same time (same hour of day, same
barn routine), less her usual place in the herd (``level``, a slow mean of
that difference learnt outside heats). The threshold is ``raise_z`` robust
deviations (1.4826 MAD) of that difference across the herd now, with the
``raise_ratio`` floor. A rise the herd shares moves the median, not her
place in it; and when many cows stand out at once it is a disturbance, not
that many heats: no new heat is raised. She needs ``young_min_h`` hours of
history (her level) first; a barn where every cow is new waits for that too.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.config.rules import EstrusConfig, RoleMapping
from agent.detect.rules.base import Finding, Signal, Status, Tracked, every_key_tracked, median
from agent.detect.rules.collar import Window

RULE = "estrus"
HERD_REFRESH_S = 900.0  # recompute the herd's shared rise at most this often
HERD_FRESH_S = 3 * 3600.0  # a cow's signal older than this is not in the herd median
FLOOR = 1.0  # counts: keeps log ratios finite when a window holds no activity
LEVEL_TC_S = 12 * 3600.0  # time constant of a young cow's place in the herd
YOUNG_FRESH_S = 1800.0  # a young cow's window rate older than this is not in the herd median
YOUNG_SPREAD_MIN = 0.2  # log: the least robust deviation a young cow's threshold assumes


@dataclass(slots=True)
class _Cow:
    window: Window
    first_t: float
    base: list[float | None] = field(default_factory=lambda: [None] * 24)
    count: list[int] = field(default_factory=lambda: [0] * 24)
    spread: float | None = None  # EWMA root mean square of the signal, log scale
    signal: float = 0.0
    signal_t: float = 0.0
    high_since: float | None = None
    rate: float | None = None  # median log activity per hour over the window (herd compare)
    rate_t: float = -1e18
    level: float | None = None  # her log activity against the herd's median (slow mean)
    level_s: float = 0.0  # seconds of history in ``level``
    place_spread: float | None = None  # RMS of her deviation from that place, log scale
    # Hours of day whose baseline changed since the window's cached ratios were
    # last brought up to date (not saved: a restored window has none cached).
    dirty: set[int] = field(default_factory=set)
    long: Window | None = None  # the second, longer window (``long_window_s``)
    # Its median log ratio, before the herd's shift; None while the long window
    # is not covered or not learnt (it is then no part of the herd's shift).
    long_signal: float | None = None
    long_spread: float | None = None  # EWMA RMS of that signal less the herd's
    long_dirty: set[int] = field(default_factory=set)

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window.to_state(), "first_t": self.first_t,
                "base": self.base, "count": self.count, "spread": self.spread,
                "signal": self.signal, "signal_t": self.signal_t,
                "high_since": self.high_since, "rate": self.rate, "rate_t": self.rate_t,
                "level": self.level, "level_s": self.level_s,
                "place_spread": self.place_spread,
                "long": None if self.long is None else self.long.to_state(),
                "long_signal": self.long_signal, "long_spread": self.long_spread}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Cow:
        long = data.get("long")  # absent in a state saved before the long window
        return cls(Window.from_state(data["window"], _log_rate, cached=True), data["first_t"],
                   data["base"],
                   data["count"], data.get("spread"), data.get("signal", 0.0),
                   data.get("signal_t", 0.0), data.get("high_since"), data.get("rate"),
                   data.get("rate_t", -1e18), data.get("level"), data.get("level_s", 0.0),
                   data.get("place_spread"),
                   long=None if long is None else Window.from_state(long, _log_rate,
                                                                    cached=True),
                   long_signal=data.get("long_signal"), long_spread=data.get("long_spread"))


def _log_rate(covered_s: float, activity: float) -> float:
    """Log activity per hour of one window item (kept with the item by the window)."""
    return math.log((activity + FLOOR) * 3600 / covered_s)


def _long_rate(cow: _Cow) -> float | None:
    """Her median log activity per hour over the long window, while it is
    covered (after a gap the rate from before it is not hers now). Computed
    when asked: for new cows at each reading, for the herd every 15 min."""
    long = cow.long
    if long is None or not long.derived or long.covered() < 0.75 * long.span_s:
        return None
    return median(long.derived)


def _ratios(w: Window, base: list[float | None], dirty: set[int]) -> deque[float]:
    """Each window item's log ratio of observed to expected activity, from the
    window's cache: an item's ratio changes only when the item does (new, or a
    reading merged into it: its slot is None) or when its hour's baseline
    does (``dirty``, the hours changed since this window was last brought up
    to date), so only those are computed again, from the newest back, and the
    rest are reused. Every hour of the window must be learnt."""
    items, cache = w.items, w.cache
    left = 0  # items of a changed hour still to recompute
    if dirty:
        hours = w.hours
        for h in dirty:
            left += hours.get(h, 0)
    log = math.log
    i = len(items) - 1
    while i >= 0:
        _, d, v, h = items[i]
        if h in dirty:
            left -= 1
        elif cache[i] is not None:
            if not left:
                break  # the None slots are a suffix: everything older is current
            i -= 1
            continue
        cache[i] = log((v + FLOOR) / ((base[h] or 0.0) * d / 3600 + FLOOR))
        i -= 1
    dirty.clear()
    return cache  # type: ignore[return-value]


class EstrusRule:
    name = RULE
    roles: tuple[str, ...] = ("collar",)

    def __init__(self, config: EstrusConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.map = mapping
        self.cows: dict[str, _Cow] = {}
        self._herd = 0.0
        self._herd_t = -1e18
        self._disturbed_until = -1e18
        self._herd_long = 0.0  # the same shift, of the long windows
        self._long_settled_t = -1e18  # the long window raises nothing before this
        self._herd_long_rate: float | None = None  # the herd now over the long windows
        self._herd_long_spread: float | None = None
        # The herd now, for young cows: median window rate, robust deviation of
        # her place in it, and when these were computed.
        self._herd_rate: float | None = None
        self._herd_spread: float | None = None
        self._young_t = -1e18
        self.tracked: Tracked = every_key_tracked
        self._logs_of: tuple[float, float] | None = None  # (raise_ratio, clear_ratio)
        self._logs = (0.0, 0.0)

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        activity = reading.values.get(self.map.activity_key)
        animal = reading.animal_id
        if activity is None or animal is None:
            return []
        cfg = self.cfg
        cow = self.cows.get(animal)
        if cow is None:
            cow = self.cows[animal] = _Cow(Window(cfg.window_s, derive=_log_rate, cached=True),
                                           t)
        hour = int(reading.stamp.wall_ts // 3600) % 24  # hour_of_day
        window = cow.window
        if window.span_s != cfg.window_s:
            window.span_s = cfg.window_s  # changed since saved: this add trims
        dt = window.add(t, activity, hour)
        long, long_s = cow.long, cfg.long_window_s
        if not long_s:  # turned off (since the state was saved)
            long = cow.long = cow.long_signal = None
        elif long is None:
            long = cow.long = Window(long_s, derive=_log_rate, cached=True)
            if cow.spread is not None and cow.long_spread is None:
                # Turned on (or upgraded) for a cow with a history: start its spread
                # from her 4-h one, scaled as a median's wavering scales, not from
                # one reading's deviation.
                cow.long_spread = cow.spread * math.sqrt(cfg.window_s / long_s)
        elif long.span_s != long_s:  # changed since saved: the next add trims
            if cow.long_spread is not None:
                cow.long_spread *= math.sqrt(long.span_s / long_s)
            long.span_s = long_s
        if long is not None:
            long.add(t, activity, hour)
        if dt is None:
            return []
        covered = window.covered() >= 0.75 * cfg.window_s
        cow.rate = median(window.derived)
        cow.rate_t = t
        if t - self._young_t >= HERD_REFRESH_S:
            self._refresh_young(t)
        young = t - cow.first_t < cfg.warmup_days * 86400
        # Every hour of day in the window learnt (each hour once, not each item).
        count, base, least = cow.count, cow.base, cfg.min_samples
        known = True
        for h in window.hours:
            if not (count[h] >= least and base[h]):
                known = False
                break
        judged = False
        signal = 0.0
        long_signal: float | None = None  # herd-adjusted, once the long window is learnt
        cow.long_signal = None
        if known:
            cow.signal, cow.signal_t = median(_ratios(window, base, cow.dirty)), t
            if (long is not None and long.covered() >= 0.75 * long.span_s
                    and all(count[h] >= least and base[h] for h in long.hours)):
                cow.long_signal = median(_ratios(long, base, cow.long_dirty))
            # (her own signals are current before the herd's shift counts them)
            herd = self._herd if t - self._herd_t < HERD_REFRESH_S else self._herd_shift(t)
            signal = cow.signal - herd
            judged = covered and not young and cow.spread is not None
            if cow.long_signal is not None:
                long_signal = cow.long_signal - self._herd_long
        # What the long window judges: a settled cow's own long signal, or a young
        # cow's long place in the herd (below), with the typical deviation of each.
        long_value, long_dev = long_signal, cow.long_spread
        long_judged = long_signal is not None and not young and cow.long_spread is not None
        own_signal = signal
        spread = cow.spread or 0.0
        herd_rate = self._herd_rate
        place = None if herd_rate is None else cow.rate - herd_rate
        if young:  # no settled baseline of her own yet: her place in the herd
            judged = (covered and place is not None and cow.level is not None
                      and cow.level_s >= cfg.young_min_h * 3600
                      and self._herd_spread is not None)
            signal = (place or 0.0) - (cow.level or 0.0)
            # The herd's robust deviation misses restless cows' tails: her own too.
            spread = max(self._herd_spread or 0.0, cow.place_spread or 0.0, YOUNG_SPREAD_MIN)
            herd_long = self._herd_long_rate
            long_rate = _long_rate(cow)
            long_judged = (long is not None and long_rate is not None
                           and herd_long is not None and self._herd_long_spread is not None
                           and cow.level is not None
                           and cow.level_s >= cfg.young_min_h * 3600)
            if long_judged and long is not None:
                # Her place over 8 h against her usual place (learnt over 4-h
                # windows: the same mean). A median over twice the readings
                # wavers sqrt(2) times less: her own deviation and the floor
                # scale so; the herd's is measured over the long windows.
                scale = math.sqrt(cfg.window_s / long.span_s)
                long_value = (long_rate or 0.0) - (herd_long or 0.0) - (cow.level or 0.0)
                long_dev = max(self._herd_long_spread or 0.0,
                               (cow.place_spread or 0.0) * scale, YOUNG_SPREAD_MIN * scale)
        ratios = (cfg.raise_ratio, cfg.clear_ratio)
        if ratios != self._logs_of:  # their logs, computed once per value
            self._logs_of = ratios
            self._logs = (math.log(ratios[0]), math.log(ratios[1]))
        log_raise, log_clear = self._logs
        raise_at = max(log_raise, cfg.raise_z * spread)
        clear_at = min(raise_at, max(log_clear, cfg.clear_z * spread))
        high = judged and signal >= clear_at
        long_raise = long_clear = math.inf
        if long_judged:
            long_raise = max(log_raise, cfg.raise_z * (long_dev or 0.0))
            long_clear = min(long_raise, max(log_clear, cfg.clear_z * (long_dev or 0.0)))
            high = high or (long_value or 0.0) >= long_raise  # (module doc: not its clear)
        if not high:
            cow.high_since = None
        elif cow.high_since is None:
            cow.high_since = t
        # Heat hours would inflate her baseline and her spread: keep them out,
        # unless the rise has lasted longer than any heat.
        if not high or t - (cow.high_since or t) > cfg.max_heat_s:
            self._learn(cow, hour, activity * 3600 / dt, dt, own_signal if known else None,
                        long_signal)
            if place is not None and covered:
                w = 1 - math.exp(-dt / LEVEL_TC_S)
                cow.level = place if cow.level is None else cow.level + w * (place - cow.level)
                cow.level_s += dt
                if cow.level_s >= cfg.young_min_h * 3600 / 2:
                    dev = abs(place - cow.level)
                    ps = cow.place_spread
                    if ps is not None:
                        dev = min(dev, 4 * ps + 0.05)
                    w = 1 - math.exp(-dt / (cfg.spread_days * 86400))
                    cow.place_spread = (dev if ps is None
                                        else math.sqrt(ps ** 2 + w * (dev ** 2 - ps ** 2)))
        if not judged and not long_judged:
            return []
        tied = animal in cfg.tied_animals
        status: Status = ("raise" if judged and signal >= raise_at
                          else "hold" if judged and signal >= clear_at else "clear")
        by_long = False
        if long_judged:
            over = long_value or 0.0
            if status != "raise" and over >= long_raise and t >= self._long_settled_t:
                status, by_long = "raise", True
            elif status == "clear" and over >= long_clear:
                status = "hold"
        disturbed = t < self._disturbed_until
        if disturbed and status == "raise":
            status = "hold"  # the herd is stirred up: wait until it settles
        subject = f"cow:{animal}"
        if status != "raise" and not self.tracked(RULE, subject, ""):
            return []  # nothing open or pending for her: it would be dropped
        shown, span = window, cfg.window_s
        if by_long and long is not None:  # the long window raised: say what it saw
            shown, span = long, long.span_s
            signal, raise_at, spread = long_value or 0.0, long_raise, long_dev or 0.0
            herd_rate = self._herd_long_rate
        ratio = math.exp(signal)
        if young:
            expected = math.exp((herd_rate or 0.0) + (cow.level or 0.0)) * shown.covered() / 3600
            against = "what the herd does now (she is new)"
        else:
            expected = sum([(base[h] or 0.0) * d / 3600 for _, d, _, h in shown.items])
            against = "her own baseline"
        hours = f"{span / 3600:.0f} h"
        summary = f"Cow {animal}: activity {ratio:.1f}x {against} for {hours}, possible heat"
        if tied:
            summary += " (tied cow: activity is damped, low confidence)"
        return [Finding(
            rule=RULE, subject=subject, status=status, at=t,
            severity="info" if tied else None, summary=summary,
            signals=[Signal(f"activity ({hours})", shown.total(),
                            baseline=expected, limit=expected * math.exp(raise_at),
                            note=f"median ratio {ratio:.2f}x, herd-adjusted"
                            f"{' (herd baseline)' if young else ''}; raise at "
                            f"{math.exp(raise_at):.2f}x (her spread {spread:.2f})")],
            sensor_id=reading.sensor_id, animal_id=animal,
            extra={"ratio": round(ratio, 3), "raise_ratio": round(math.exp(raise_at), 3),
                   "window_h": round(span / 3600, 2),
                   "herd_shift": round(self._herd_long if by_long else self._herd, 3),
                   "herd_disturbed": disturbed, "baseline": "herd" if young else "own",
                   "confidence": "low" if tied or young else "normal"},
        )]

    def _learn(self, cow: _Cow, hour: int, rate: float, dt: float,
               signal: float | None, long_signal: float | None = None) -> None:
        cfg = self.cfg
        base = cow.base[hour]
        if base is None:
            cow.base[hour] = rate
        else:
            alpha = 1 - (1 - cfg.baseline_alpha) ** (dt / 3600)
            cow.base[hour] = base + alpha * (min(rate, 3 * base) - base)
        cow.count[hour] += 1
        cow.dirty.add(hour)
        cow.long_dirty.add(hour)
        if signal is not None:
            cow.spread = self._rms(cow.spread, signal, dt)
        if long_signal is not None:
            cow.long_spread = self._rms(cow.long_spread, long_signal, dt)

    def _rms(self, spread: float | None, signal: float, dt: float) -> float:
        """A cow's typical deviation of a signal, updated with one reading's.
        RMS, not a mean absolute deviation: heavy tails are what false heats come
        from, so they must widen her threshold."""
        dev = abs(signal)
        if spread is None:
            return dev
        dev = min(dev, 4 * spread + 0.05)  # one odd window must not swamp it
        w = 1 - math.exp(-dt / (self.cfg.spread_days * 86400))
        return math.sqrt(spread ** 2 + w * (dev ** 2 - spread ** 2))

    def _herd_shift(self, t: float) -> float:
        """The rise the whole herd shares now (log scale, never negative)."""
        if t - self._herd_t >= HERD_REFRESH_S:
            self._herd_t = t
            cows = [c for c in self.cows.values() if t - c.signal_t <= HERD_FRESH_S]
            enough = len(cows) >= self.cfg.herd_min_cows
            self._herd = max(0.0, median([c.signal for c in cows])) if enough else 0.0
            longs = [c.long_signal for c in cows if c.long_signal is not None]
            self._herd_long = (max(0.0, median(longs)) if len(longs) >= self.cfg.herd_min_cows
                               else 0.0)
            if self._herd >= math.log(self.cfg.herd_disturbed_ratio):
                # Cows react unequally to a disturbance, so subtracting the herd's
                # median is not enough: hold new heats until the windows settle.
                self._disturbed(t)
        return self._herd

    def _disturbed(self, t: float) -> None:
        """The herd is stirred up now: no new heat until each window has settled
        (half of it: a median then holds more calm readings than stirred ones)."""
        self._disturbed_until = t + self.cfg.window_s / 2
        if self.cfg.long_window_s:
            self._long_settled_t = t + self.cfg.long_window_s / 2

    def _refresh_young(self, t: float) -> None:
        """The herd's median window rate now, and how far cows with a known place in
        it stray from that place (robust); many cows far above theirs at once is a
        disturbance, so no new heat is raised for a while."""
        if t - self._young_t < HERD_REFRESH_S:
            return
        self._young_t = t
        cfg = self.cfg
        fresh = [c for c in self.cows.values()
                 if c.rate is not None and t - c.rate_t <= YOUNG_FRESH_S]
        if len(fresh) < cfg.herd_min_cows:
            self._herd_rate = self._herd_spread = None
            return
        herd = median(c.rate for c in fresh)  # type: ignore[misc]
        self._herd_rate = herd
        self._refresh_young_long(fresh)
        res = [(c.rate or 0.0) - herd - c.level for c in fresh
               if c.level is not None and c.level_s >= cfg.young_min_h * 3600]
        if len(res) < cfg.herd_min_cows:
            self._herd_spread = None
            return
        mid = median(res)
        spread = max(1.4826 * median(abs(x - mid) for x in res), YOUNG_SPREAD_MIN)
        self._herd_spread = spread
        raise_at = max(math.log(cfg.raise_ratio), cfg.raise_z * spread)
        high = sum(1 for x in res if x >= raise_at)
        if high > max(2, cfg.herd_crowd_share * len(res)):
            self._disturbed(t)

    def _refresh_young_long(self, fresh: list[_Cow]) -> None:
        """The same over the long windows: the herd's median long rate, and the
        robust deviation of cows' long places from their usual place."""
        cfg = self.cfg
        rates = [(c, r) for c in fresh if (r := _long_rate(c)) is not None]
        if not cfg.long_window_s or len(rates) < cfg.herd_min_cows:
            self._herd_long_rate = self._herd_long_spread = None
            return
        herd = median(r for _, r in rates)
        self._herd_long_rate = herd
        res = [r - herd - c.level for c, r in rates
               if c.level is not None and c.level_s >= cfg.young_min_h * 3600]
        if len(res) < cfg.herd_min_cows:
            self._herd_long_spread = None
            return
        mid = median(res)
        floor = YOUNG_SPREAD_MIN * math.sqrt(cfg.window_s / cfg.long_window_s)
        self._herd_long_spread = max(1.4826 * median(abs(x - mid) for x in res), floor)

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {"cows": {k: v.to_state() for k, v in self.cows.items()},
                "herd": self._herd, "herd_t": self._herd_t,
                "disturbed_until": self._disturbed_until, "herd_rate": self._herd_rate,
                "herd_long": self._herd_long, "long_settled_t": self._long_settled_t,
                "herd_long_rate": self._herd_long_rate,
                "herd_long_spread": self._herd_long_spread,
                "herd_spread": self._herd_spread, "young_t": self._young_t}

    def from_state(self, state: dict[str, Any]) -> None:
        cows = state.get("cows", state)  # older layout: the cows only
        self.cows = {k: _Cow.from_state(v) for k, v in cows.items()
                     if isinstance(v, dict) and "window" in v}
        self._herd = float(state.get("herd", 0.0))
        self._herd_t = float(state.get("herd_t", -1e18))
        self._disturbed_until = float(state.get("disturbed_until", -1e18))
        self._herd_long = float(state.get("herd_long", 0.0))
        self._long_settled_t = float(state.get("long_settled_t", -1e18))
        self._herd_long_rate = state.get("herd_long_rate")
        self._herd_long_spread = state.get("herd_long_spread")
        self._herd_rate = state.get("herd_rate")
        self._herd_spread = state.get("herd_spread")
        self._young_t = float(state.get("young_t", -1e18))
