"""The contextual sequence channel: has this *pattern* been seen here before?

Written for this code base after the idea of the Contextual Anomaly Detector
(CAD-OSE, Smirnov & Bogdanov, NAB 2016): a reading is turned into a few
discrete *facts*, the facts of the recent past form the *left context*, and a
bounded memory learns which facts followed (the *right context*) each left
context. The anomaly of a reading is the share of its facts that none of the
active left contexts predicted. Point detectors need a new extreme; this
channel also notices a familiar range traversed in an unfamiliar order (a
daily shape that flattens, a noise pattern that changes rhythm).

Facts of one reading (bits of one int, so prediction and matching are
integer OR/AND, no sets):

* its fine bin: the value's rank in the stream's rolling window, in ``bins``
  equal-frequency bins (quantising by rank keeps one configuration valid for
  every scale and survives outliers that would squash equal-width bins);
* its coarse bin (``bins // 4`` groups), so a near miss is half predicted;
* its direction against the previous fine bin (down / same / up).

Left contexts are the last k fine bins for k = 1..``order``, keyed by one
int packing k and those bins. Each maps to the OR of the fact masks that followed
it. The memory is one dict in least-recently-used order, capped at
``max_contexts`` entries, so memory per stream is bounded whatever the data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from agent.detect.anomaly.robust import RollingSorted


@dataclass(frozen=True)
class ContextConfig:
    bins: int = 16  # equal-frequency value bins (facts per reading: 3)
    order: int = 4  # longest left context, in readings
    max_contexts: int = 2048  # LRU cap of the learnt left contexts
    decay: float = 0.9  # leaky sum of per-reading anomalies -> channel deviation
    scale: float = 6.0  # channel deviation multiplier (robust-sigma units)
    min_order: int = 1  # shortest left context that votes
    mean_vote: bool = False  # anomaly = mean over orders (else: union of predictions)
    mode: str = "kgram"  # "kgram" (this module) or "cad" (context crossing, cad.py)
    cad_contexts: int = 256  # cad: LRU cap of contexts
    cad_new: int = 4  # cad: crossings added per reading at most
    max_active: int = 15  # cad: active context ids fed back as facts


class ContextChannel:
    """Per-stream contextual memory; ``deviation`` then ``learn`` per reading."""

    __slots__ = ("_bits", "_coarse_base", "_dir_base", "acc", "cfg", "hist", "memory", "pending")

    def __init__(self, config: ContextConfig | None = None) -> None:
        self.cfg = cfg = config or ContextConfig()
        self.hist: deque[int] = deque(maxlen=cfg.order)
        self.memory: dict[int, int] = {}
        self.acc = 0.0
        self.pending: tuple[int, int] = (0, 0)
        self._coarse_base = cfg.bins
        self._bits = max(1, (cfg.bins - 1).bit_length())
        self._dir_base = cfg.bins + (cfg.bins + 3) // 4

    def facts(self, x: float, win: RollingSorted) -> tuple[int, int]:
        """(fine bin, fact mask) of ``x`` against the rolling window."""
        bins = self.cfg.bins
        b = int(win.rank(x) * bins) if len(win) else bins // 2
        if b >= bins:
            b = bins - 1
        prev = self.hist[-1] if self.hist else b
        d = 0 if b < prev else (1 if b == prev else 2)
        mask = (1 << b) | (1 << (self._coarse_base + (b >> 2))) | (1 << (self._dir_base + d))
        return b, mask

    def _keys(self) -> list[int]:
        # One int per context: the last k bins packed ``_bits`` apiece, plus k
        # on top (an int key costs a third of a tuple's memory and hashes faster).
        bits = self._bits
        keys = []
        packed = 0
        for k, b in enumerate(reversed(self.hist), 1):
            packed |= b << (bits * (k - 1))
            if k >= self.cfg.min_order:
                keys.append(packed | (k << (bits * self.cfg.order)))
        return keys

    def anomaly(self, mask: int) -> float:
        """Share of this reading's facts that no known left context predicted."""
        memory = self.memory
        total = mask.bit_count()
        keys = self._keys()
        if not keys or not total:
            return 0.0
        if self.cfg.mean_vote:
            # Each context order votes its own unpredicted share (unknown = 1):
            # a transition seen before but never in this longer sequence counts.
            miss = 0
            for key in keys:
                miss += total - (mask & memory.get(key, 0)).bit_count()
            return miss / (total * len(keys))
        predicted = 0
        for key in keys:
            predicted |= memory.get(key, 0)
        return 1.0 - (mask & predicted).bit_count() / total

    def deviation(self, x: float, win: RollingSorted) -> float:
        """The channel's deviation for ``x`` (a leaky sum of recent anomalies,
        so a run of unpredicted readings outweighs one odd reading)."""
        b, mask = self.facts(x, win)
        a = self.anomaly(mask)
        self.pending = (b, mask)
        return self.cfg.scale * (self.acc * self.cfg.decay + a)

    def learn(self, x: float, win: RollingSorted, dev: float | None = None) -> None:
        """Teach the memory that ``x`` followed the current left contexts.

        ``win`` must be the window ``deviation`` saw (before ``x`` joined it);
        ``dev`` is the value ``deviation`` returned (None if it was not called).
        """
        if dev is None:
            b, mask = self.facts(x, win)
            dev = self.cfg.scale * (self.acc * self.cfg.decay + self.anomaly(mask))
        else:
            b, mask = self.pending
        self.acc = dev / self.cfg.scale if self.cfg.scale else 0.0
        memory = self.memory
        cap = self.cfg.max_contexts
        for key in self._keys():
            right = memory.pop(key, 0)
            memory[key] = right | mask  # (re)inserted last = most recently used
        while len(memory) > cap:
            del memory[next(iter(memory))]
        self.hist.append(b)

    # -- persistence ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "hist": list(self.hist),
            "acc": self.acc,
            "memory": [[k, v] for k, v in self.memory.items()],  # LRU order
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: ContextConfig) -> ContextChannel:
        ch = cls(config)
        ch.hist.extend(int(b) for b in state["hist"])
        ch.acc = float(state["acc"])
        for key, right in state["memory"][-config.max_contexts :]:
            ch.memory[int(key)] = int(right)
        return ch
