"""The learning parts of the sensor checks: each sensor against its own history,
each climate node against its neighbours.

All times are seconds on the sensor's clock (the engine's ``sensor_time``: the
device's ``source_ts`` where it sends one), so a backlog delivered in a burst
is judged as the hours it covers. Every update is O(1) amortised: fixed-size
rings whose median is recomputed every few samples, running maxima that decay,
exponentially weighted means; drift is O(neighbours) per climate reading.

- ``Rhythm``: a device's reporting interval (median of recent gaps) and the
  longest normal gap it has had lately; the silence that counts as a dropout.
- ``Metric``: one value key of one sensor. Spikes: a jump of more than
  ``spike_k`` times the typical change between samples (and ``spike_min_step``)
  that comes back within ``spike_max_samples``; for ``spike_ratio`` keys (a
  collar's heavy-tailed activity) a value far above the key's running high
  (a decaying maximum) that is back within that high at the next reading. Stuck: unchanged (within a
  small share of the typical change) for longer than the longest flat stretch
  this key has had, by ``stuck_margin``; climate nodes whose neighbours keep
  changing are stuck after ``stuck_neighbour_s``.
- ``DriftGroup``: climate nodes of one barn; for every pair the smoothed
  difference is compared with the pair's usual difference and spread. A node is
  drifting when most of its pairs have moved, which the other nodes' pairs
  among themselves have not (a node that drifts does not drag its neighbours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from agent.config.sensor_health import SensorHealthConfig

RING = 32
# A value's typical change is the median of this many: from 32, a noisy probe's
# median strays low often enough that its own 3.7-sigma noise passes for a spike.
DIFF_RING = 128
RECOMPUTE = 8  # samples between recomputing a ring's median
# Gaps whose 25th percentile is at most RANDOM_SHORT medians and whose 75th is
# at least RANDOM_LONG look random (exponential: 0.42 and 2). Such a device's
# timeout is dropout_median_factor x its 90th percentile gap (exponential: 2.3
# mean gaps), so e**-(3.5 x 2.3) = 3e-4 of its normal gaps reach it; message
# loss is not counted on top (random gaps would read as lost messages).
RANDOM_SHORT = 0.7
RANDOM_LONG = 1.5
MIN_GAP_S = 0.5  # shorter gaps are a burst or a resend, not the rhythm
MIN_DIFFS = 8  # changes seen before the spike check judges
SPREAD_S = 86400.0  # time constant of a drift pair's spread
VARY_ALPHA = 1 / 200  # weight of one sample in a key's share of changed samples
LOSS_ALPHA = 1 / 256  # weight of one gap in a device's message-loss estimate
MAX_LOST_IN_A_ROW = 10  # beyond this, a silence is a dropout whatever the loss
YEAR_S = 365.25 * 86400.0


def _pack(obj: Any) -> list[Any]:
    return [getattr(obj, f.name) for f in fields(obj)]


def _decayed(value: float, since: float, half_life: float) -> float:
    return value * 0.5 ** (max(0.0, since) / half_life)


def _ring_median(ring: list[float]) -> float:
    data = sorted(ring)
    return data[len(data) // 2]


@dataclass(slots=True)
class Rhythm:
    """How often one device reports, learnt from the gaps between its readings."""

    first_t: float
    last_t: float
    gaps: list[float] = field(default_factory=list)
    pos: int = 0
    n: int = 0
    median: float = 0.0
    long: float = 0.0
    long_t: float = 0.0
    # Messages this device loses: exponentially weighted counts of the
    # readings missing from its gaps and of those expected (missing + 1).
    missed: float = 0.0
    expected: float = 0.0
    # A device that reports at random (a robot's milk meter, read when a cow
    # comes) has gaps spread like an exponential's, whose median says little of
    # how long a normal one gets: for it, the 90th percentile of its recent gaps
    # (0 for a regular device; -1 not known yet).
    high: float = -1.0

    def __post_init__(self) -> None:
        if self.high < 0.0:  # new, or a state saved before ``high`` existed
            self.high = 0.0
            if self.gaps:
                self._recompute(self.median)

    def _recompute(self, median: float | None = None) -> None:
        data = sorted(self.gaps)
        n = len(data)
        self.median = data[n // 2] if median is None else median
        # Gaps of a regular device, however many messages it loses, are never
        # shorter than its period: its 25th percentile is its median. Random
        # gaps spread both ways (exponential: 0.42 and 2 medians).
        spread = (data[n // 4] <= RANDOM_SHORT * self.median
                  and data[(3 * n) // 4] >= RANDOM_LONG * self.median)
        self.high = data[min(n - 1, (9 * n) // 10)] if spread else 0.0

    def add(self, t: float, cap: float, memory_s: float) -> None:
        gap = t - self.last_t
        self.last_t = max(self.last_t, t)
        if gap < MIN_GAP_S:
            return
        gap = min(gap, cap)  # a dropout (or the gateway's outage) is not the rhythm
        if self.n >= RING and self.median > 0:
            lost = max(0, round(gap / self.median) - 1)
            self.missed += LOSS_ALPHA * (lost - self.missed)
            self.expected += LOSS_ALPHA * (lost + 1 - self.expected)
        if len(self.gaps) < RING:
            self.gaps.append(gap)
        else:
            self.gaps[self.pos] = gap
            self.pos = (self.pos + 1) % RING
        self.n += 1
        if self.n <= RECOMPUTE or self.n % RECOMPUTE == 0:
            self._recompute()
        if gap >= _decayed(self.long, t - self.long_t, memory_s):
            self.long, self.long_t = gap, t

    def to_state(self) -> list[Any]:
        return _pack(self)

    def loss_factor(self, false_per_year: float) -> float:
        """Reporting intervals of silence that this device's own message loss
        explains at most ``false_per_year`` times a year. With a share ``p`` of
        messages lost, ``k`` in a row go missing with chance ``p**k`` per reading;
        with ``k`` the smallest count that rare, up to ``k - 1`` losses in a row
        are normal: a silence of ``k`` intervals, plus half of one for jitter."""
        if self.expected <= 0.0 or self.missed <= 0.0 or self.median <= 0.0:
            return 0.0
        p = min(self.missed / self.expected, 0.5)
        per_reading = false_per_year * self.median / YEAR_S
        k = math.ceil(math.log(per_reading) / math.log(p))
        return min(k, MAX_LOST_IN_A_ROW) + 0.5

    def timeout(self, cfg: SensorHealthConfig, role_default: float) -> float:
        """Silence (seconds) after which this device counts as dropped out."""
        if self.n < cfg.dropout_min_gaps:  # a few gaps seen: generous, at least the role's
            early = cfg.dropout_early_factor * self.median if self.n >= 3 else 0.0
            return max(role_default, cfg.dropout_floor_s, early)
        learning = self.last_t - self.first_t < cfg.dropout_learn_s
        factor = cfg.dropout_early_factor if learning else cfg.dropout_median_factor
        if self.high:  # random gaps: their own tail, not lost messages, is the measure
            usual = factor * self.high
        else:
            usual = max(factor, self.loss_factor(cfg.dropout_false_per_year)) * self.median
        long = _decayed(self.long, self.last_t - self.long_t, cfg.dropout_memory_s)
        out = max(cfg.dropout_floor_s, usual, cfg.dropout_long_gap_factor * long)
        return max(out, role_default) if learning else out


@dataclass(slots=True)
class Metric:
    """One value key of one sensor: its typical change, spikes and flat stretches."""

    first_t: float
    prev: float | None = None  # the last value accepted as normal
    prev_t: float = 0.0
    diffs: list[float] = field(default_factory=list)  # |change| between normal samples
    dpos: int = 0
    dn: int = 0
    typical: float = 0.0  # median |change|
    # spike: an excursion away from ``prev`` not yet back or settled
    exc_n: int = 0
    exc_t: float = 0.0
    exc_peak: float = 0.0
    # stuck: the current flat stretch
    anchor: float | None = None
    run_t: float = 0.0
    run_last_t: float = 0.0
    run_n: int = 0
    run_group: int = 0  # neighbours' changes when the stretch began
    longest: float = 0.0  # longest normal flat stretch (s), decaying
    longest_t: float = 0.0
    longest_n: float = 0.0  # ...and in samples
    changes: int = 0
    vary: float = 1.0  # share of samples that changed (EW, while not stuck)
    stuck: bool = False
    # spike_ratio keys: the running high of accepted values, decaying (at ``high_t``)
    high: float = 0.0
    high_t: float = 0.0

    # -- spikes -----------------------------------------------------------------
    def spike(self, v: float, t: float, cfg: SensorHealthConfig, min_step: float,
              resolution: float, judge: bool) -> tuple[str, float, float]:
        """('normal' | 'away' | 'spike', size, start) for value ``v`` at ``t``.

        'away': left the level, not judged yet; 'spike': was away and is back
        now (size: the largest departure, signed; start: when it left).
        """
        prev = self.prev
        if prev is None or not judge or t - self.prev_t > cfg.spike_max_s:
            self.exc_n = 0
            self._accept(v, t, None if prev is None else abs(v - prev))
            return "normal", 0.0, 0.0
        limit = max(cfg.spike_k * max(self.typical, resolution), min_step)
        if self.exc_n:
            if abs(v - prev) <= limit:  # back at the level it left: a spike
                self.exc_n = 0
                self._accept(v, t, None)
                return "spike", self.exc_peak, self.exc_t
            if self.exc_n >= cfg.spike_max_samples or t - self.exc_t > cfg.spike_max_s:
                self.exc_n = 0  # it stayed: a step, the new level
                self._accept(v, t, None)
                return "normal", 0.0, 0.0
            self.exc_n += 1
            if abs(v - prev) > abs(self.exc_peak):
                self.exc_peak = v - prev
            return "away", 0.0, 0.0
        if self.dn >= MIN_DIFFS and abs(v - prev) > limit:
            self.exc_n, self.exc_t, self.exc_peak = 1, t, v - prev
            return "away", 0.0, 0.0
        self._accept(v, t, abs(v - prev))
        return "normal", 0.0, 0.0

    def spike_ratio(self, v: float, t: float, cfg: SensorHealthConfig, ratio: float,
                    min_step: float, interval: float, judge: bool) -> tuple[str, float, float]:
        """``spike`` for a key judged against its running high (``spike_ratio``):
        away above ``ratio`` x the high (and ``min_step`` above the level it
        left); a spike when the next reading is back within the high. A reading
        that is neither back nor away ends the excursion: a rise, not a spike.
        ``interval``: the sensor's usual time between readings (a one-reading
        spike is two of them from the level it left to the level it is back at)."""
        prev = self.prev
        max_s = max(cfg.spike_max_s, 2.5 * interval)
        high = _decayed(self.high, t - self.high_t, cfg.spike_high_half_life_s)
        if prev is None or not judge or t - self.prev_t > max_s:
            self.exc_n = 0
            self._accept_high(v, t, high)
            return "normal", 0.0, 0.0
        away = v > ratio * high and v - prev > min_step
        if self.exc_n:
            if v <= high:  # back at its usual level: a spike
                self.exc_n = 0
                self._accept_high(v, t, high)
                return "spike", self.exc_peak, self.exc_t
            if (not away or self.exc_n >= cfg.spike_max_samples
                    or t - self.exc_t > max_s):
                self.exc_n = 0  # it stayed high: a rise or a step, not a spike
                self._accept_high(v, t, high)
                return "normal", 0.0, 0.0
            self.exc_n += 1
            self.exc_peak = max(self.exc_peak, v - prev)
            return "away", 0.0, 0.0
        if away and self.dn >= MIN_DIFFS and t - self.first_t >= cfg.spike_ratio_learn_s:
            self.exc_n, self.exc_t, self.exc_peak = 1, t, v - prev
            return "away", 0.0, 0.0
        self._accept_high(v, t, high)
        return "normal", 0.0, 0.0

    def _accept_high(self, v: float, t: float, high: float) -> None:
        if v >= high:
            self.high, self.high_t = v, t
        prev = self.prev
        self._accept(v, t, None if prev is None else abs(v - prev))

    def _accept(self, v: float, t: float, diff: float | None) -> None:
        if diff is not None:
            if len(self.diffs) < DIFF_RING:
                self.diffs.append(diff)
            else:
                self.diffs[self.dpos] = diff
                self.dpos = (self.dpos + 1) % DIFF_RING
            self.dn += 1
            if self.dn <= RECOMPUTE or self.dn % RECOMPUTE == 0:
                self.typical = _ring_median(self.diffs)
        self.prev, self.prev_t = v, t

    # -- stuck ------------------------------------------------------------------
    def flat(self, v: float, t: float, cfg: SensorHealthConfig, resolution: float,
             cap_s: float | None, group_changes: int | None, neighbours: int,
             interval: float = 0.0, min_s: float | None = None) -> bool:
        """Update the flat stretch with ``v``; True while this key is stuck.

        ``group_changes``: changes counted over this key's climate neighbours
        (None when it has none), ``neighbours``: how many there are;
        ``interval``: the sensor's usual time between readings; ``min_s``: this
        key's shortest stuck stretch (default ``stuck_min_s``).
        """
        min_s = cfg.stuck_min_s if min_s is None else min_s
        eps = max(resolution, cfg.stuck_noise_frac * self.typical)
        if (self.anchor is not None and not self.stuck
                and t - self.run_last_t > max(600.0, 3 * interval)):
            self.anchor = None  # a gap in the data: silence is not flatness, start afresh
        if self.anchor is not None and abs(v - self.anchor) <= eps:
            self.run_n += 1
            self.run_last_t = t
            if not self.stuck:
                self.vary -= VARY_ALPHA * self.vary
        else:
            self.vary += VARY_ALPHA * (1.0 - self.vary)
            if self.anchor is not None:
                length = self.run_last_t - self.run_t
                if not self.stuck and length >= _decayed(self.longest, t - self.longest_t,
                                                        cfg.stuck_memory_s):
                    self.longest, self.longest_t, self.longest_n = length, t, self.run_n
                self.changes += 1
            self.anchor, self.run_t, self.run_last_t, self.run_n = v, t, t, 1
            self.run_group = group_changes or 0
            self.stuck = False
            return False
        if self.stuck:
            return True
        length = t - self.run_t
        if (length < min_s or not self.changes or self.vary < cfg.stuck_min_vary
                or self.run_n < cfg.stuck_min_samples):
            return False  # too short, or a key that is often flat (a level between milkings)
        learnt = t - self.first_t >= cfg.stuck_learn_s and self.changes >= cfg.stuck_min_changes
        need = self.samples_needed(cfg)
        if learnt:  # or twice its longest flat stretch: values that move slowly repeat in runs
            need = min(need, math.ceil(2 * _decayed(self.longest_n, t - self.longest_t,
                                                    cfg.stuck_memory_s)))
        if self.run_n < need:
            return False
        if group_changes is not None and neighbours:
            moved = group_changes - self.run_group
            if moved < neighbours:
                return False  # the whole barn is flat (saturated air): not this sensor
            if moved >= 2 * neighbours and length >= cfg.stuck_neighbour_s:
                self.stuck = True
                return True
        if not learnt:  # its normal flat stretches are not known yet: the configured limit
            self.stuck = cap_s is not None and length >= cap_s
            return self.stuck
        limit = max(min_s, cfg.stuck_margin
                    * _decayed(self.longest, t - self.longest_t, cfg.stuck_memory_s))
        self.stuck = length >= limit
        return self.stuck

    def samples_needed(self, cfg: SensorHealthConfig) -> int:
        """Repeats that chance would give with probability below ``stuck_chance``,
        from the share of samples that repeat the one before (quantised values
        repeat often, fine ones almost never)."""
        q = min(max(1.0 - self.vary, 1e-3), 0.999)
        return max(cfg.stuck_min_samples, math.ceil(math.log(cfg.stuck_chance) / math.log(q)))

    def flat_for(self, t: float) -> float:
        return t - self.run_t

    def to_state(self) -> list[Any]:
        return _pack(self)

    @classmethod
    def from_state(cls, data: list[Any]) -> Metric:
        return cls(*data)


@dataclass(slots=True)
class Pair:
    """Two climate nodes' difference in one key (first minus second)."""

    t0: float
    last_t: float
    n: int = 0
    smooth: float = 0.0
    base: float = 0.0
    spread: float = 0.0

    def update(self, d: float, t: float, cfg: SensorHealthConfig, min_abs: float) -> None:
        dt = max(0.0, t - self.last_t)
        self.last_t = t
        if self.n == 0:
            self.smooth = d
        else:
            # Once learnt, one wild value (a spike after a radio gap, too late
            # to be judged one) moves the smoothed difference by at most one
            # limit's worth: drift is slow, so a real one is never held back.
            # (While learning there is no limit yet to trust.)
            if t - self.t0 >= cfg.drift_learn_s:
                lim = self.limit(cfg, min_abs)
                d = min(max(d, self.smooth - lim), self.smooth + lim)
            self.smooth += (1.0 - math.exp(-dt / cfg.drift_smooth_s)) * (d - self.smooth)
        self.n += 1
        age = t - self.t0
        if age < cfg.drift_learn_s:
            self.base += (d - self.base) / self.n
            if age >= cfg.drift_smooth_s:
                a = 1.0 - math.exp(-dt / (cfg.drift_learn_s / 4))
                self.spread += a * (abs(self.smooth - self.base) - self.spread)
            return
        dev = self.smooth - self.base
        if abs(dev) < 0.5 * self.limit(cfg, min_abs):  # follows slow change, not drift
            self.base += (1.0 - math.exp(-dt / cfg.drift_baseline_s)) * dev
            self.spread += (1.0 - math.exp(-dt / SPREAD_S)) * (abs(dev) - self.spread)

    def limit(self, cfg: SensorHealthConfig, min_abs: float) -> float:
        return max(cfg.drift_k * self.spread, min_abs)

    def learnt(self, t: float, cfg: SensorHealthConfig) -> bool:
        return t - self.t0 >= cfg.drift_learn_s


@dataclass(slots=True)
class DriftScore:
    ratio: float  # departure / limit, over most of the node's pairs (lower median)
    departure: float  # the node's median departure from its usual difference
    limit: float
    pairs: int
    # A barn of two nodes: the one other node. Their difference shows that one of
    # the two drifts, not which (both are told; neither is taken out of use).
    partner: str | None = None


class DriftGroup:
    """Climate nodes of one barn: latest values, per-key change counts, pairs."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, tuple[float, float]]] = {}  # sid -> key -> (v, t)
        self.changes: dict[str, dict[str, int]] = {}  # sid -> key -> changes
        self.totals: dict[str, list[int]] = {}  # key -> [changes over all nodes, nodes]
        self.pairs: dict[tuple[str, str, str], Pair] = {}

    def neighbour_changes(self, sid: str, key: str) -> tuple[int, int]:
        """(changes over the other nodes in ``key``, how many other nodes)."""
        total = self.totals.get(key)
        if total is None:
            return 0, 0
        own = self.changes.get(sid, {}).get(key)
        if own is None:
            return total[0], total[1]
        return total[0] - own, total[1] - 1

    def note_change(self, sid: str, key: str, changes: int) -> None:
        counts = self.changes.setdefault(sid, {})
        total = self.totals.setdefault(key, [0, 0])
        old = counts.get(key)
        if old is None:
            total[1] += 1
            old = 0
        total[0] += changes - old
        counts[key] = changes

    def update(self, sid: str, key: str, v: float, t: float, cfg: SensorHealthConfig,
               min_abs: float) -> DriftScore | None:
        """Compare ``sid``'s value with each fresh neighbour; its drift score."""
        self.latest.setdefault(sid, {})[key] = (v, t)
        ratios: list[float] = []
        departures: list[float] = []
        limits: list[float] = []
        compared: list[str] = []
        for other, values in self.latest.items():
            if other == sid:
                continue
            got = values.get(key)
            if got is None or abs(t - got[1]) > cfg.drift_fresh_s:
                continue
            first = sid < other
            pk = (sid, other, key) if first else (other, sid, key)
            pair = self.pairs.get(pk)
            if pair is None:
                pair = self.pairs[pk] = Pair(t, t)
            pair.update((v - got[0]) if first else (got[0] - v), t, cfg, min_abs)
            if pair.learnt(t, cfg):
                lim = pair.limit(cfg, min_abs)
                dev = (pair.smooth - pair.base) * (1.0 if first else -1.0)
                ratios.append(abs(dev) / lim)
                compared.append(other)
                departures.append(dev)
                limits.append(lim)
        partner = None
        if len(ratios) < 2:
            # With one neighbour there is no telling which of the two moved; in a
            # barn of just two nodes their drifting apart is still worth telling.
            # (Not a barn whose third node is silent or stuck: ever paired counts.)
            if not ratios or len({n for a, b, k in self.pairs if k == key
                                  for n in (a, b)}) != 2:
                return None
            partner = compared[0]
        ratios.sort()
        departures.sort()
        limits.sort()
        mid = (len(ratios) - 1) // 2
        return DriftScore(ratios[mid], departures[len(departures) // 2],
                          limits[len(limits) // 2], len(ratios), partner)

    def forget(self, sid: str) -> None:
        """A node that is faulty (stuck) is not compared until it is back."""
        self.latest.pop(sid, None)

    def to_state(self) -> dict[str, Any]:
        return {"latest": {s: {k: list(v) for k, v in d.items()} for s, d in self.latest.items()},
                "changes": self.changes, "totals": self.totals,
                "pairs": [[*k, *_pack(p)] for k, p in self.pairs.items()]}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> DriftGroup:
        g = cls()
        g.latest = {s: {k: (v[0], v[1]) for k, v in d.items()}
                    for s, d in data.get("latest", {}).items()}
        g.changes = {s: dict(d) for s, d in data.get("changes", {}).items()}
        g.totals = {k: list(v) for k, v in data.get("totals", {}).items()}
        g.pairs = {(p[0], p[1], p[2]): Pair(*p[3:]) for p in data.get("pairs", [])}
        return g
