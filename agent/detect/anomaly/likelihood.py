"""HTM-style anomaly likelihood: how unusual a raw score is *for this stream*.

Written here from the published description of Numenta's anomaly likelihood
(Ahmad, Lavin, Purdy, Agha 2017, "Unsupervised real-time anomaly detection
for streaming data"; NAB's Numenta detector); no third-party code.

A raw score (share of a reading the stream's model did not predict) is noisy
and its normal level differs per stream: a noisy stream is always partly
unpredicted. The likelihood turns it into "how improbable is the recent
average raw score, given this stream's history of it":

1. ``avg`` = mean of the last ``averaging`` raw scores;
2. every ``reestimation`` readings, a normal distribution is fitted to the
   averages of the last ``history`` readings (the first ``learning``
   readings of the stream excluded), with floors (mean >= 0.03, variance >=
   0.0003) so a near-perfectly predicted stream does not alarm on a blip;
3. likelihood = 1 - Q((avg - mean) / std) (Q: the Gaussian tail, folded so
   averages below the mean count as their mirror image), 0.5 while learning;
4. reported as ``log(1.0000000001 - likelihood) / log(1e-10)``: 0.5 is a
   likelihood of 0.99999, 1.0 the certain anomaly.

A stream whose values are (nearly) constant over the fitting window gets a
flat distribution (likelihood 0.5): its model is not trusted to be stable.

Everything is O(1) per reading: sliding sums over fixed ring buffers.
"""

from __future__ import annotations

import math
from array import array
from math import erfc, isinf, log
from typing import Any

LOG_SCALE = -23.02585084720009  # log(1e-10)
MEAN_FLOOR = 0.03
VAR_FLOOR = 0.0003
FLAT_METRIC_VAR = 1.5e-5
SQRT2 = math.sqrt(2.0)


class _SlidingStats:
    """Mean and variance of the last ``size`` values (shifted sums, O(1))."""

    __slots__ = ("buf", "count", "pos", "shift", "size", "sum", "sumsq")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = array("d", bytes(8 * size))
        self.pos = 0
        self.count = 0
        self.shift: float | None = None  # first value: keeps the sums small
        self.sum = 0.0
        self.sumsq = 0.0

    def push(self, x: float) -> None:
        shift = self.shift
        if shift is None:
            self.shift = shift = x
        d = x - shift
        buf, pos = self.buf, self.pos
        if self.count == self.size:
            old = buf[pos]
            self.sum -= old
            self.sumsq -= old * old
        else:
            self.count += 1
        buf[pos] = d
        self.pos = (pos + 1) % self.size
        self.sum += d
        self.sumsq += d * d

    def to_state(self) -> dict[str, Any]:
        return {"size": self.size, "buf": self.buf.tolist(), "pos": self.pos,
                "count": self.count, "shift": self.shift, "sum": self.sum, "sumsq": self.sumsq}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> _SlidingStats:
        obj = cls(int(st["size"]))
        if len(st["buf"]) != obj.size:
            raise ValueError("sliding window of the wrong size")
        obj.buf = array("d", st["buf"])
        obj.pos, obj.count = int(st["pos"]), int(st["count"])
        obj.shift = None if st["shift"] is None else float(st["shift"])
        obj.sum, obj.sumsq = float(st["sum"]), float(st["sumsq"])
        return obj

    def mean_var(self) -> tuple[float, float]:
        n = self.count
        if n == 0:
            return 0.0, 0.0
        m = self.sum / n
        return m + (self.shift or 0.0), max(self.sumsq / n - m * m, 0.0)


class AnomalyLikelihood:
    """One stream's likelihood layer; ``update(value, raw) -> log-likelihood``."""

    def __init__(self, learning: int = 375, estimation: int = 375, history: int = 8640,
                 reestimation: int = 100, averaging: int = 10) -> None:
        self.learning = learning
        self.probation = learning + estimation
        self.reestimation = reestimation
        self.averaging = averaging
        self.recent = array("d", bytes(8 * averaging))
        self.recent_sum = 0.0
        self.n = 0
        self.avgs = _SlidingStats(history)  # moving averages of the raw score
        self.values = _SlidingStats(history)  # the metric itself (flatness check)
        self.mean = 0.0
        self.std = 0.0  # 0: no distribution yet; inf: flat metric, no judgement
        self.fitted = False

    def update(self, value: float, raw: float) -> float:
        """Log-scaled likelihood of ``raw`` (this reading's raw score), in [0, 1]."""
        n, averaging = self.n, self.averaging
        i = n % averaging
        recent = self.recent
        self.recent_sum += raw - recent[i]
        recent[i] = raw
        avg = self.recent_sum / min(n + 1, averaging)
        if n < self.probation:
            likelihood = 0.5
        else:
            if not self.fitted or n % self.reestimation == 0:
                self._fit()
            std, mean = self.std, self.mean  # ``self._tail(avg)``, written out
            if isinf(std):
                likelihood = 0.5  # 1.0 - 0.5
            else:
                x = 2.0 * mean - avg if avg < mean else avg
                likelihood = 1.0 - 0.5 * erfc((x - mean) / (std * SQRT2))
        # The learning readings are kept out of the fitted distribution.
        if n >= self.learning:
            self.avgs.push(avg)
            self.values.push(value)
        self.n = n + 1
        return log(1.0000000001 - likelihood) / LOG_SCALE

    def to_state(self) -> dict[str, Any]:
        return {"learning": self.learning, "probation": self.probation,
                "reestimation": self.reestimation, "recent": self.recent.tolist(),
                "recent_sum": self.recent_sum, "n": self.n, "avgs": self.avgs.to_state(),
                "values": self.values.to_state(), "mean": self.mean,
                "std": None if math.isinf(self.std) else self.std, "fitted": self.fitted}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> AnomalyLikelihood:
        obj = cls.__new__(cls)
        obj.learning, obj.probation = int(st["learning"]), int(st["probation"])
        obj.reestimation = int(st["reestimation"])
        obj.recent = array("d", st["recent"])
        obj.averaging = len(obj.recent)
        if obj.averaging < 1:
            raise ValueError("empty averaging window")
        obj.recent_sum, obj.n = float(st["recent_sum"]), int(st["n"])
        obj.avgs = _SlidingStats.from_state(st["avgs"])
        obj.values = _SlidingStats.from_state(st["values"])
        obj.mean = float(st["mean"])
        obj.std = math.inf if st["std"] is None else float(st["std"])
        obj.fitted = bool(st["fitted"])
        return obj

    def _fit(self) -> None:
        self.fitted = True
        if self.values.mean_var()[1] < FLAT_METRIC_VAR:
            self.mean, self.std = 0.5, math.inf
            return
        mean, var = self.avgs.mean_var()
        self.mean = max(mean, MEAN_FLOOR)
        self.std = math.sqrt(max(var, VAR_FLOOR))

    def _tail(self, x: float) -> float:
        std, mean = self.std, self.mean
        if isinf(std):
            return 0.5
        if x < mean:
            x = 2.0 * mean - x
        return 0.5 * erfc((x - mean) / (std * SQRT2))
