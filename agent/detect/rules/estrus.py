"""Estrus from collar activity against the cow's own baseline (section 4).

Her baseline is an EWMA of her activity rate per hour of day, so feeding and
milking peaks do not look like heat. Each collar reading gives a log ratio of
observed to expected activity (clipped to 8x either way). The signal is the
*mean* of those ratios over three spans, half, one and two windows (2, 4 and
8 h by default), each less the herd's median over the same span, and each
judged against her own typical deviation *of that span* (the 2 h span at
1.25 x ``raise_z``): a sharp heat shows first in the 2 h span (a rise
sustained about 2 h), a weak one only in the 8 h span, whose averaging halves
the noise; one disturbed hour moves the 2 h mean most, so that span needs the
larger multiple. The finding reports the span furthest above its threshold. Guards against false heats:

- each span's threshold scales with the cow's own RMS deviation of that span
  (restless cows need a larger rise than calm ones), with a floor;
- a rise the whole herd shares (regrouping, hoof trimming, a late feed, a hot
  afternoon) is subtracted per span, and while the herd is stirred up no new
  heat is raised: heat is individual;
- hours that look like heat (any span above its clear level) stay out of her
  baseline and spreads, but only for ``max_heat_s``; a longer rise is her new
  normal;
- collars send no timestamp: a backlog delivered at once is merged into one
  reading by the window, and after a gap longer than a reading may stand for
  the spans start afresh (what the backlog covers is unknown).

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
from agent.detect.rules.collar import MAX_INTERVAL_S, Window, hour_of_day

RULE = "estrus"
HERD_REFRESH_S = 900.0  # recompute the herd's shared rise at most this often
HERD_FRESH_S = 3 * 3600.0  # a cow's signal older than this is not in the herd median
FLOOR = 1.0  # counts: keeps log ratios finite when a window holds no activity
LEVEL_TC_S = 12 * 3600.0  # time constant of a young cow's place in the herd
YOUNG_FRESH_S = 1800.0  # a young cow's window rate older than this is not in the herd median
YOUNG_SPREAD_MIN = 0.2  # log: the least robust deviation a young cow's threshold assumes
# The spans judged, in windows: a sharp rise shows first in the short one, a weak
# one needs the long one's averaging. Each has her own spread, so each has its own
# threshold and none raises more often than the others on her ordinary days.
SCALES = (0.5, 1.0, 2.0)
# The 2 h span has twice the 4 h span's independent windows a day (four times the
# 8 h span's), and one stirred hour moves it most: its threshold is this many
# times raise_z, so it raises no more often than the others on ordinary days.
SHORT_Z = 1.25
CLIP = math.log(8.0)  # one reading's log ratio is clipped to this (a mean, kept robust)


@dataclass(slots=True)
class _Span:
    """Log ratios to her baseline, (t, covered s, ratio), over the last ``span_s``,
    with running sums: the mean of a span costs O(1) per reading."""

    span_s: float
    items: deque[tuple[float, float, float]] = field(default_factory=deque)
    sum_r: float = 0.0
    covered: float = 0.0

    def add(self, t: float, dt: float, r: float) -> None:
        self.items.append((t, dt, r))
        self.sum_r += r
        self.covered += dt

    def merge(self, dt: float, r: float) -> None:
        """The last item took in a reading (a burst): its seconds and new ratio."""
        t0, dt0, r0 = self.items[-1]
        self.items[-1] = (t0, dt0 + dt, r)
        self.sum_r += r - r0
        self.covered += dt

    def trim(self, t: float) -> None:
        items = self.items
        while items and items[0][0] <= t - self.span_s:
            _, dt, r = items.popleft()
            self.sum_r -= r
            self.covered -= dt
        if not items:
            self.sum_r = self.covered = 0.0

    def mean(self) -> float:
        return self.sum_r / len(self.items) if self.items else 0.0

    def to_state(self) -> list[Any]:
        return [self.span_s, [list(x) for x in self.items]]

    @classmethod
    def from_state(cls, data: list[Any]) -> _Span:
        out = cls(float(data[0]))
        for t, dt, r in data[1]:
            out.add(float(t), float(dt), float(r))
        return out


@dataclass(slots=True)
class _Cow:
    window: Window
    first_t: float
    base: list[float | None] = field(default_factory=lambda: [None] * 24)
    count: list[int] = field(default_factory=lambda: [0] * 24)
    # Per span of SCALES: her log ratios, the EWMA RMS of their mean (herd-adjusted,
    # learnt outside heats), and that mean as last computed (for the herd's shift).
    spans: list[_Span] = field(default_factory=list)
    spreads: list[float | None] = field(default_factory=lambda: [None] * len(SCALES))
    signals: list[float] = field(default_factory=lambda: [0.0] * len(SCALES))
    signal_t: float = -1e18
    last_v: float = 0.0  # the last item's activity and expected activity (a burst merges)
    last_e: float = 0.0
    high_since: float | None = None
    rate: float | None = None  # median log activity per hour over the window (herd compare)
    rate_t: float = -1e18
    level: float | None = None  # her log activity against the herd's median (slow mean)
    level_s: float = 0.0  # seconds of history in ``level``
    place_spread: float | None = None  # RMS of her deviation from that place, log scale

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window.to_state(), "first_t": self.first_t,
                "base": self.base, "count": self.count,
                "spans": [x.to_state() for x in self.spans], "spreads": self.spreads,
                "signals": self.signals, "signal_t": self.signal_t,
                "last_v": self.last_v, "last_e": self.last_e,
                "high_since": self.high_since, "rate": self.rate, "rate_t": self.rate_t,
                "level": self.level, "level_s": self.level_s,
                "place_spread": self.place_spread}

    @classmethod
    def from_state(cls, data: dict[str, Any], window_s: float) -> _Cow:
        spans = [_Span.from_state(x) for x in data.get("spans", [])]
        if len(spans) != len(SCALES):  # an older layout: the spans refill
            spans = [_Span(k * window_s) for k in SCALES]
        spreads = data.get("spreads") or [None] * len(SCALES)
        signals = data.get("signals") or [0.0] * len(SCALES)
        return cls(Window.from_state(data["window"], _log_rate), data["first_t"], data["base"],
                   data["count"], spans, list(spreads), list(signals),
                   data.get("signal_t", -1e18), data.get("last_v", 0.0),
                   data.get("last_e", 0.0), data.get("high_since"), data.get("rate"),
                   data.get("rate_t", -1e18), data.get("level"), data.get("level_s", 0.0),
                   data.get("place_spread"))


def _log_rate(covered_s: float, activity: float) -> float:
    """Log activity per hour of one window item (kept with the item by the window)."""
    return math.log((activity + FLOOR) * 3600 / covered_s)


class EstrusRule:
    name = RULE
    roles: tuple[str, ...] = ("collar",)

    def __init__(self, config: EstrusConfig, mapping: RoleMapping) -> None:
        self.cfg = config
        self.map = mapping
        self.cows: dict[str, _Cow] = {}
        self._herd = [0.0] * len(SCALES)
        self._herd_t = -1e18
        self._disturbed_until = -1e18
        # The herd now, for young cows: median window rate, robust deviation of
        # her place in it, and when these were computed.
        self._herd_rate: float | None = None
        self._herd_spread: float | None = None
        self._young_t = -1e18
        self.tracked: Tracked = every_key_tracked

    def on_reading(self, reading: Any, t: float) -> list[Finding]:
        activity = reading.values.get(self.map.activity_key)
        animal = reading.animal_id
        if activity is None or animal is None:
            return []
        cfg = self.cfg
        cow = self.cows.get(animal)
        if cow is None:
            cow = self.cows[animal] = _Cow(Window(cfg.window_s, derive=_log_rate), t)
        hour = hour_of_day(reading.stamp.wall_ts)
        window = cow.window
        prev = window.last_t
        dt = window.add(t, activity, hour)
        spans = cow.spans
        if not spans:
            spans = cow.spans = [_Span(k * cfg.window_s) for k in SCALES]
        if dt is None:
            return []
        item_t = window.items[-1][0]
        merged = item_t != t  # a burst: the window merged this reading into its last item
        covered = window.covered() >= 0.75 * cfg.window_s
        cow.rate = median(window.derived)
        cow.rate_t = t
        self._refresh_young(t)
        young = t - cow.first_t < cfg.warmup_days * 86400
        # This reading against her own baseline for its hour of day, once learnt.
        b = cow.base[hour]
        last = spans[0].items
        join = merged and bool(last) and last[-1][0] == item_t
        if prev is not None and t - prev > MAX_INTERVAL_S:
            # A gap longer than one reading may stand for: what this reading (and a
            # backlog merged into it) covers is unknown, so the spans start afresh.
            for sp in spans:
                sp.items.clear()
                sp.sum_r = sp.covered = 0.0
        elif (join or not merged) and cow.count[hour] >= cfg.min_samples and b:
            e = b * dt / 3600
            if join:
                v, e = cow.last_v + activity, cow.last_e + e
            else:
                v = activity
            cow.last_v, cow.last_e = v, e
            r = math.log((v + FLOOR) / (e + FLOOR))
            r = CLIP if r > CLIP else max(r, -CLIP)
            for sp in spans:
                if join:
                    sp.merge(dt, r)
                else:
                    sp.add(item_t, dt, r)
        for sp in spans:
            sp.trim(t)
        # Each span's mean ratio, less the rise the herd shares over that span.
        full = [sp.covered >= 0.75 * sp.span_s for sp in spans]
        own = [sp.mean() for sp in spans]
        if full[1]:
            cow.signals, cow.signal_t = own, t
        shift = self._herd_shift(t)
        sig = [x - h for x, h in zip(own, shift, strict=True)]
        herd_rate = self._herd_rate
        place = None if herd_rate is None else cow.rate - herd_rate
        k = 1
        if young:  # no settled baseline of her own yet: her place in the herd
            judged = (covered and place is not None and cow.level is not None
                      and cow.level_s >= cfg.young_min_h * 3600
                      and self._herd_spread is not None)
            signal = (place or 0.0) - (cow.level or 0.0)
            # The herd's robust deviation misses restless cows' tails: her own too.
            spread = max(self._herd_spread or 0.0, cow.place_spread or 0.0, YOUNG_SPREAD_MIN)
            raise_at = max(math.log(cfg.raise_ratio), cfg.raise_z * spread)
            clear_at = min(raise_at, max(math.log(cfg.clear_ratio), cfg.clear_z * spread))
            high = judged and signal >= clear_at
            status: Status = ("raise" if signal >= raise_at
                              else "clear" if signal < clear_at else "hold")
        else:
            # Judged on every span she has a spread for; reported on the one furthest
            # above its threshold. High (kept out of her baseline) when any span is.
            judged = high = False
            best = -math.inf
            signal = spread = raise_at = clear_at = 0.0
            for i, sp_k in enumerate(cow.spreads):
                if not full[i] or sp_k is None:
                    continue
                z = cfg.raise_z * (SHORT_Z if i == 0 else 1.0)
                r_at = max(math.log(cfg.raise_ratio), z * sp_k)
                c_at = min(r_at, max(math.log(cfg.clear_ratio), cfg.clear_z * sp_k))
                judged = True
                high = high or sig[i] >= c_at
                if sig[i] - r_at > best:
                    best, k = sig[i] - r_at, i
                    signal, spread, raise_at, clear_at = sig[i], sp_k, r_at, c_at
            status = "raise" if best >= 0 else "hold" if high else "clear"
        if not high:
            cow.high_since = None
        elif cow.high_since is None:
            cow.high_since = t
        # Heat hours would inflate her baseline and her spread: keep them out,
        # unless the rise has lasted longer than any heat.
        if not high or t - (cow.high_since or t) > cfg.max_heat_s:
            self._learn(cow, hour, activity * 3600 / dt, dt,
                        [x if f else None for x, f in zip(sig, full, strict=True)])
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
        if not judged:
            return []
        tied = animal in cfg.tied_animals
        disturbed = t < self._disturbed_until
        if disturbed and status == "raise":
            status = "hold"  # the herd is stirred up: wait until it settles
        subject = f"cow:{animal}"
        if status != "raise" and not self.tracked(RULE, subject, ""):
            return []  # nothing open or pending for her: it would be dropped
        ratio = math.exp(signal)
        if young:
            span_s = cfg.window_s
            expected = math.exp((herd_rate or 0.0) + (cow.level or 0.0)) * window.covered() / 3600
            total = window.total()
            against = "what the herd does now (she is new)"
        else:
            span_s = spans[k].span_s
            items = [x for x in window.items if x[0] > t - span_s]
            total = sum(x[2] for x in items)
            expected = sum([(cow.base[x[3]] or 0.0) * x[1] / 3600 for x in items])
            against = "her own baseline"
        hours = f"{span_s / 3600:.0f} h"
        summary = f"Cow {animal}: activity {ratio:.1f}x {against} for {hours}, possible heat"
        if tied:
            summary += " (tied cow: activity is damped, low confidence)"
        return [Finding(
            rule=RULE, subject=subject, status=status, at=t,
            severity="info" if tied else None, summary=summary,
            signals=[Signal(f"activity ({hours})", total,
                            baseline=expected, limit=expected * math.exp(raise_at),
                            note=f"{'median' if young else 'mean'} ratio {ratio:.2f}x, "
                            f"herd-adjusted{' (herd baseline)' if young else ''}; raise at "
                            f"{math.exp(raise_at):.2f}x (her spread {spread:.2f})")],
            sensor_id=reading.sensor_id, animal_id=animal,
            extra={"ratio": round(ratio, 3), "raise_ratio": round(math.exp(raise_at), 3),
                   "span_h": round(span_s / 3600, 2),
                   "herd_shift": round(shift[k], 3), "herd_disturbed": disturbed,
                   "baseline": "herd" if young else "own",
                   "confidence": "low" if tied or young else "normal"},
        )]

    def _learn(self, cow: _Cow, hour: int, rate: float, dt: float,
               signals: list[float | None]) -> None:
        cfg = self.cfg
        base = cow.base[hour]
        if base is None:
            cow.base[hour] = rate
        else:
            alpha = 1 - (1 - cfg.baseline_alpha) ** (dt / 3600)
            cow.base[hour] = base + alpha * (min(rate, 3 * base) - base)
        cow.count[hour] += 1
        w = 1 - math.exp(-dt / (cfg.spread_days * 86400))
        spreads = cow.spreads
        for i, x in enumerate(signals):
            if x is None:
                continue
            # RMS, not a mean absolute deviation: heavy tails are what false heats
            # come from, so they must widen her threshold.
            dev, sp = abs(x), spreads[i]
            if sp is None:
                spreads[i] = dev
            else:
                dev = min(dev, 4 * sp + 0.05)  # one odd window must not swamp it
                spreads[i] = math.sqrt(sp ** 2 + w * (dev ** 2 - sp ** 2))

    def _herd_shift(self, t: float) -> list[float]:
        """The rise the whole herd shares now over each span (log scale, never negative)."""
        if t - self._herd_t >= HERD_REFRESH_S:
            self._herd_t = t
            fresh = [c.signals for c in self.cows.values() if t - c.signal_t <= HERD_FRESH_S]
            if len(fresh) >= self.cfg.herd_min_cows:
                self._herd = [max(0.0, median(x[i] for x in fresh)) for i in range(len(SCALES))]
            else:
                self._herd = [0.0] * len(SCALES)
            if self._herd[1] >= math.log(self.cfg.herd_disturbed_ratio):
                # Cows react unequally to a disturbance, so subtracting the herd's
                # median is not enough: hold new heats until the windows settle.
                self._disturbed_until = t + self.cfg.window_s / 2
        return self._herd

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
            self._disturbed_until = t + cfg.window_s / 2

    def tick(self, t: float) -> list[Finding]:
        return []

    def to_state(self) -> dict[str, Any]:
        return {"cows": {k: v.to_state() for k, v in self.cows.items()},
                "herd": self._herd, "herd_t": self._herd_t,
                "disturbed_until": self._disturbed_until, "herd_rate": self._herd_rate,
                "herd_spread": self._herd_spread, "young_t": self._young_t}

    def from_state(self, state: dict[str, Any]) -> None:
        cows = state.get("cows", state)  # older layout: the cows only
        self.cows = {k: _Cow.from_state(v, self.cfg.window_s) for k, v in cows.items()
                     if isinstance(v, dict) and "window" in v}
        herd = state.get("herd")
        self._herd = ([float(x) for x in herd] if isinstance(herd, list)
                      and len(herd) == len(SCALES) else [0.0] * len(SCALES))
        self._herd_t = float(state.get("herd_t", -1e18))
        self._disturbed_until = float(state.get("disturbed_until", -1e18))
        self._herd_rate = state.get("herd_rate")
        self._herd_spread = state.get("herd_spread")
        self._young_t = float(state.get("young_t", -1e18))
