"""Sequence likelihood detector: a transition memory, HTM's anomaly likelihood,
a spatial check and rest after an alarm.

The structure of Numenta's NAB detector, with a much smaller sequence model
in place of HTM's temporal memory (written here from the published
descriptions; no third-party code):

1. **Raw score** (``TransitionMemory``): the value is quantised into
   ``bins`` equal bins of the stream's value range; the memory keeps, per
   left context (the last ``order`` bins), the set of bins that ever
   followed it. The raw score is how far the reading's bin lies from the
   nearest bin its context predicted, in units of ``tolerance`` bins, capped
   at 1 (0: predicted, 1: nothing predicted anywhere near). An unknown
   context predicts nothing (raw 1).
2. **Likelihood** (``likelihood.AnomalyLikelihood``): the raw score's short
   moving average judged against the stream's own history of it, as a
   log-scaled tail probability. A noisy stream that is always partly
   unpredicted stays quiet; a well-predicted stream alarms on a short burst.
3. **Spatial anomaly** (as in Numenta's NAB detector): a value beyond the
   minimum or maximum seen so far by more than ``spatial_tol`` of that span
   scores 1.
4. **Rest** (as CAD OSE does): after a reported score of at least
   ``alarm`` the next ``rest`` readings report 0, so one event is one alarm.
5. **Re-arm**: a likelihood alarm is reported only after ``rearm x rest``
   readings in a row below the alarm level; an excursion during a rest, or
   too soon after one, restarts that wait instead of alarming. A noisy
   stream's bursts of unpredicted transitions then give one alarm, not one
   per rest. New extremes (3.) alarm whenever no rest is running.

Cost: a dict of at most ``bins ** order`` bit masks and the likelihood's two
ring buffers of float32 (``history`` readings each).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from math import isfinite
from typing import Any

from agent.detect.anomaly.likelihood import AnomalyLikelihood

STATE_KIND = "seq_lik"
STATE_VERSION = 1
RANGE_LIMIT = 1e300  # a learnt range is clamped to this: its span stays finite
ERROR_CODE_ABS = 1e15  # a learnt range ignores values this large: no barn sensor measures them


@dataclass(frozen=True)
class SeqLikConfig:
    """The one configuration every stream gets (chosen on NAB with --cv)."""

    bins: int = 48  # equal bins of the value range
    order: int = 1  # left context length in bins
    tolerance: int = 2  # bins of distance that count as fully unpredicted
    averaging: int = 5  # moving average of the raw score fed to the likelihood
    history: int = 4096  # readings the likelihood's distribution is fitted on
    reestimation: int = 100  # refit every this many readings
    spatial_tol: float = 0.05  # share of the seen span a new extreme may exceed freely
    alarm: float = 0.5  # a reported score >= this starts a rest
    rearm: float = 1.0  # calm readings a likelihood alarm needs first, x the rest (0: off)
    max_contexts: int = 4096  # memory bound (order 1: at most ``bins`` contexts)
    learn_margin: float = 0.25  # a learnt range grows past a new extreme by this x its span


class TransitionMemory:
    """Which bins followed each left context; raw score of a new bin."""

    __slots__ = ("bins", "contexts", "hist", "max_contexts", "order", "pred", "tolerance")

    def __init__(self, bins: int, order: int, tolerance: int, max_contexts: int) -> None:
        self.bins = bins
        self.order = order
        self.tolerance = tolerance
        self.max_contexts = max_contexts
        self.contexts: dict[int, int] = {}  # packed left context -> mask of next bins
        self.hist: list[int] = []  # the last ``order`` bins, oldest first
        self.pred: int | None = None  # mask predicted for the next bin

    def _key(self) -> int:
        key = 0
        for b in self.hist:
            key = key * (self.bins + 1) + b + 1
        return key

    def step(self, b: int) -> float:
        """Raw score of bin ``b`` against the prediction, then learn it."""
        pred = self.pred  # ``self.raw(b)``, written out for the common cases
        if pred is None:
            raw = 1.0
        elif (pred >> b) & 1:
            raw = 0.0
        else:
            raw = self.raw(b)
        hist, contexts, order = self.hist, self.contexts, self.order
        if order == 1 and len(hist) == 1:  # one bin of context: its key is the bin + 1
            key = hist[0] + 1
            mask = contexts.get(key)
            if mask is not None:
                contexts[key] = mask | (1 << b)
            elif len(contexts) < self.max_contexts:  # full: no new contexts
                contexts[key] = 1 << b
            hist[0] = b
            self.pred = contexts.get(b + 1)
            return raw
        if len(hist) == order:
            key = self._key()
            mask = contexts.get(key)
            if mask is not None:
                contexts[key] = mask | (1 << b)
            elif len(contexts) < self.max_contexts:  # full: no new contexts
                contexts[key] = 1 << b
        hist.append(b)
        if len(hist) > order:
            del hist[0]
        self.pred = contexts.get(self._key()) if len(hist) == order else None
        return raw

    def remap(self, new_bin: list[int]) -> None:
        """Move every stored bin ``i`` to ``new_bin[i]`` (the value range grew)."""
        base = self.bins + 1

        def mask(m: int) -> int:
            out = 0
            while m:
                low = m & -m
                out |= 1 << new_bin[low.bit_length() - 1]
                m ^= low
            return out

        contexts: dict[int, int] = {}
        for key, m in self.contexts.items():
            digits = []
            while key:
                key, d = divmod(key, base)
                digits.append(new_bin[d - 1] + 1)
            new_key = 0
            for d in reversed(digits):
                new_key = new_key * base + d
            contexts[new_key] = contexts.get(new_key, 0) | mask(m)
        self.contexts = contexts
        self.hist = [new_bin[b] for b in self.hist]
        if self.pred is not None:
            self.pred = mask(self.pred)

    def raw(self, b: int) -> float:
        pred = self.pred
        if pred is None:
            return 1.0
        if (pred >> b) & 1:
            return 0.0
        tol = self.tolerance
        for d in range(1, tol):
            if (b >= d and (pred >> (b - d)) & 1) or (pred >> (b + d)) & 1:
                return d / tol
        return 1.0


class SeqLik:
    """One stream's detector; ``score(value) -> [0, 1]`` per reading, in order."""

    def __init__(self, value_range: tuple[float, float] | None, rest: float,
                 learning: int = 375, estimation: int = 375,
                 config: SeqLikConfig | None = None) -> None:
        """``value_range``: the stream's valid [min, max] (``None``: learnt
        online, so bins move while the range widens); ``rest``: readings
        reported as 0 after an alarm; ``learning`` + ``estimation``: the
        likelihood's probation (0.5 until then)."""
        cfg = config or SeqLikConfig()
        self.cfg = cfg
        self.learn_range = value_range is None
        self.lo, self.hi = value_range if value_range is not None else (math.nan, math.nan)
        self.memory = TransitionMemory(cfg.bins, cfg.order, cfg.tolerance, cfg.max_contexts)
        self.likelihood = AnomalyLikelihood(learning, estimation, cfg.history,
                                            cfg.reestimation, cfg.averaging)
        self.rest = int(rest)
        self.seen_lo = math.inf
        self.seen_hi = -math.inf
        self.quiet = 0  # readings still to report 0
        self.calm = 0  # readings in a row whose score stayed below the alarm level

    def bin(self, value: float) -> int:
        span = self.hi - self.lo
        if not span > 0.0 or not math.isfinite(span):
            return 0
        x = (value - self.lo) / span * self.cfg.bins
        if not math.isfinite(x):  # an extreme value: the edge bin
            return 0 if not x > 0 else self.cfg.bins - 1
        return min(max(int(x), 0), self.cfg.bins - 1)  # outside the range: edge bin

    def _widen(self, value: float) -> None:
        """Grow the learnt range to ``value`` (and a margin beyond); what was
        learnt moves with its values (each old bin to the new bin of its
        centre)."""
        old_lo, old_hi = self.lo, self.hi
        # A learnt range stays finite: a sensor's error code of 1.7e308 must not
        # make every later bin inf / inf.
        value = min(max(value, -RANGE_LIMIT), RANGE_LIMIT)
        if math.isnan(old_lo):
            self.lo = self.hi = value
            return
        lo, hi = min(old_lo, value), max(old_hi, value)
        # Widen past the new extreme by a margin: fewer moves of every bin
        # while the range is still being learnt (measured: docs/anomaly.md).
        margin = self.cfg.learn_margin * (hi - lo)
        self.lo = max(lo - margin if value < old_lo else lo, -RANGE_LIMIT)
        self.hi = min(hi + margin if value > old_hi else hi, RANGE_LIMIT)
        width = (old_hi - old_lo) / self.cfg.bins
        if width > 0.0:
            self.memory.remap([self.bin(old_lo + (i + 0.5) * width)
                               for i in range(self.cfg.bins)])

    def score(self, value: float) -> float:
        if abs(value) >= ERROR_CODE_ABS:
            # An error code (1.7e308), not a measurement: scored as an anomaly,
            # but the range, memory and extremes learn nothing (a learnt range
            # would put every later value in bin 0, and the new-extreme check
            # would never fire again).
            return 1.0
        if self.learn_range and not self.lo <= value <= self.hi:
            self._widen(value)
        cfg = self.cfg
        # ``self.bin(value)``, written out: this runs for every reading.
        lo, span, bins = self.lo, self.hi - self.lo, cfg.bins
        if not span > 0.0 or not isfinite(span):
            b = 0
        else:
            x = (value - lo) / span * bins
            if not isfinite(x):  # an extreme value: the edge bin
                b = 0 if not x > 0 else bins - 1
            else:
                b = int(x)
                if b < 0:
                    b = 0
                elif b > bins - 1:
                    b = bins - 1  # outside the range: edge bin
        raw = self.memory.step(b)
        lik = self.likelihood
        out = lik.update(value, raw)
        if lik.n <= lik.probation:
            out = 0.0  # still learning: no judgement (NAB does not score these rows)
        # Spatial anomaly: outside the span seen so far, beyond a margin.
        lo, hi = self.seen_lo, self.seen_hi
        spatial = False
        if hi > lo:
            margin = (hi - lo) * cfg.spatial_tol
            spatial = value > hi + margin or value < lo - margin
            if spatial:
                out = 1.0
        if value < lo:  # min(lo, value), max(hi, value)
            self.seen_lo = value
        if value > hi:
            self.seen_hi = value
        calm = self.calm
        alarm = cfg.alarm
        self.calm = calm + 1 if out < alarm else 0
        if self.quiet > 0:
            self.quiet -= 1
            return 0.0
        if out >= alarm:
            if not spatial and calm < cfg.rearm * self.rest:
                return 0.0  # the likelihood has not settled since its last excursion
            self.quiet = self.rest
        return min(max(out, 0.0), 1.0)

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot; ``from_state`` restores it exactly."""
        mem = self.memory
        return {
            "kind": STATE_KIND, "version": STATE_VERSION, "config": asdict(self.cfg),
            "learn_range": self.learn_range,
            "lo": None if math.isnan(self.lo) else self.lo,
            "hi": None if math.isnan(self.hi) else self.hi,
            "contexts": [[k, m] for k, m in mem.contexts.items()], "hist": list(mem.hist),
            "pred": mem.pred, "likelihood": self.likelihood.to_state(), "rest": self.rest,
            "seen": [self.seen_lo, self.seen_hi] if self.seen_hi >= self.seen_lo else None,
            "quiet": self.quiet, "calm": self.calm,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> SeqLik:
        """Raises ValueError (or KeyError/TypeError) for a state that is not
        this detector's current format (the stream then relearns)."""
        if st.get("kind") != STATE_KIND or st.get("version") != STATE_VERSION:
            raise ValueError("not a seq_lik state of this version")
        cfg = SeqLikConfig(**st["config"])
        lo, hi = st["lo"], st["hi"]
        obj = cls(None, 0, config=cfg)
        obj.learn_range = bool(st["learn_range"])
        obj.lo = math.nan if lo is None else float(lo)
        obj.hi = math.nan if hi is None else float(hi)
        if math.isinf(obj.lo) or math.isinf(obj.hi):
            raise ValueError("a seq_lik state with an infinite range")
        obj.memory.contexts = {int(k): int(m) for k, m in st["contexts"]}
        obj.memory.hist = [int(b) for b in st["hist"]]
        obj.memory.pred = None if st["pred"] is None else int(st["pred"])
        obj.likelihood = AnomalyLikelihood.from_state(st["likelihood"])
        obj.rest = int(st["rest"])
        if st["seen"] is not None:
            obj.seen_lo, obj.seen_hi = float(st["seen"][0]), float(st["seen"][1])
        obj.quiet = int(st["quiet"])
        # A state saved before the re-arm rule has no count: wait a full re-arm.
        obj.calm = int(st.get("calm", 0))
        return obj
