"""Context crossing (after CAD-OSE's two-layer scheme): sequence memory by contexts.

Written for this code base from the published description of the Contextual
Anomaly Detector (CAD-OSE, Smirnov & Bogdanov, NAB 2016); no third-party
code. It is an alternative to the k-gram memory of ``context.py``
(``ContextConfig(mode="cad")``), with the same interface.

All fact sets are ints used as bitsets, so containment is ``a & ~b == 0``:

* the *right* facts of a reading are its value facts (fine rank bin, coarse
  bin, direction; the same facts as ``context.py``), bits ``0..W``;
* the *left* facts are the previous reading's value facts plus the ids of
  the contexts that were active at the previous reading, id ``i`` being bit
  ``W + i``. Feeding active context ids back as facts is what gives the
  scheme memory beyond one step: a context can require that another context
  was active before it.

A *context* is a pair (left subset, right subset). At each reading:

1. the anomaly is the share of the reading's right facts that the contexts
   *predicted* at the previous reading (those whose left part was contained
   in the left facts then) did not anticipate;
2. *active* contexts are those whose left part is contained in the current
   left facts and whose right part is contained in the current right facts;
3. new contexts are added: the full (left, right) pair of this reading, and
   *crossings*: a predicted context whose right part was only partly
   confirmed gives (its left, the confirmed part); a context whose right part
   happened but whose left part only partly matched gives (the matched part,
   its right). Crossings are how the memory generalises from exact
   repetitions to the facts that recur together;
4. the ids of the most recently useful active contexts (at most
   ``max_active``) become left facts of the next reading, and the contexts
   whose left part is contained in those left facts give the next prediction.

Memory is bounded: at most ``cad_contexts`` contexts in least-recently-used
order; an evicted context's id is reused (a stale id bit inside an older
context's left part then simply rarely matches again).
"""

from __future__ import annotations

from typing import Any

from agent.detect.anomaly.context import ContextConfig
from agent.detect.anomaly.robust import RollingSorted


class CadContext:
    """Per-stream context-crossing memory; ``deviation`` then ``learn`` per reading."""

    __slots__ = (
        "_coarse_base", "_dir_base", "_width", "acc", "cfg", "free", "ids", "left",
        "lefts", "pending", "predicted", "prev_bin", "rights",
    )

    def __init__(self, config: ContextConfig | None = None) -> None:
        self.cfg = cfg = config or ContextConfig(mode="cad")
        self._coarse_base = cfg.bins
        self._dir_base = cfg.bins + (cfg.bins + 3) // 4
        self._width = self._dir_base + 3  # value-fact bits; context ids above
        # Context ``i``: (lefts[i], rights[i]); ``ids`` maps the pair to i in
        # least-recently-used order (first = evicted next).
        self.lefts: list[int] = []
        self.rights: list[int] = []
        self.ids: dict[tuple[int, int], int] = {}
        self.free: list[int] = []
        self.left = 0  # left facts of the coming reading
        self.predicted = 0  # right facts anticipated for the coming reading
        self.prev_bin = -1
        self.acc = 0.0
        self.pending: tuple[int, int] = (0, 0)

    @property
    def memory(self) -> dict[tuple[int, int], int]:
        return self.ids

    def facts(self, x: float, win: RollingSorted) -> tuple[int, int]:
        """(fine bin, value-fact mask) of ``x`` against the rolling window."""
        bins = self.cfg.bins
        b = int(win.rank(x) * bins) if len(win) else bins // 2
        if b >= bins:
            b = bins - 1
        prev = self.prev_bin if self.prev_bin >= 0 else b
        d = 0 if b < prev else (1 if b == prev else 2)
        mask = (1 << b) | (1 << (self._coarse_base + (b >> 2))) | (1 << (self._dir_base + d))
        return b, mask

    def anomaly(self, mask: int) -> float:
        """Share of this reading's facts the previous step's contexts did not predict."""
        total = mask.bit_count()
        if not total or not self.ids:
            return 0.0
        return 1.0 - (mask & self.predicted).bit_count() / total

    def deviation(self, x: float, win: RollingSorted) -> float:
        b, mask = self.facts(x, win)
        a = self.anomaly(mask)
        self.pending = (b, mask)
        return self.cfg.scale * (self.acc * self.cfg.decay + a)

    def _touch(self, key: tuple[int, int]) -> int | None:
        """Mark a context used (LRU); add it if new. Returns its id, None if empty."""
        ids = self.ids
        i = ids.pop(key, None)
        if i is None:
            if not key[0] or not key[1]:
                return None
            if len(ids) >= self.cfg.cad_contexts:
                old = next(iter(ids))
                i = ids.pop(old)
            elif self.free:
                i = self.free.pop()
            else:
                i = len(self.lefts)
                self.lefts.append(0)
                self.rights.append(0)
            self.lefts[i], self.rights[i] = key
        ids[key] = i
        return i

    def learn(self, x: float, win: RollingSorted, dev: float | None = None) -> None:
        """Activate, cross and add contexts for ``x``; prepare the next prediction."""
        if dev is None:
            b, mask = self.facts(x, win)
            dev = self.cfg.scale * (self.acc * self.cfg.decay + self.anomaly(mask))
        else:
            b, mask = self.pending
        self.acc = dev / self.cfg.scale if self.cfg.scale else 0.0
        left = self.left
        nleft = ~left
        nright = ~mask
        lefts, rights = self.lefts, self.rights
        active: list[tuple[int, int]] = []
        cross: list[tuple[int, int]] = []
        if left:
            for key in self.ids:  # (left, right) pairs
                lk, rk = key
                if not lk & nleft:
                    if not rk & nright:
                        active.append(key)
                    elif len(cross) < self.cfg.cad_new:
                        r = rk & mask
                        if r:
                            cross.append((lk, r))
                elif not rk & nright and len(cross) < self.cfg.cad_new:
                    lm = lk & left
                    if lm:
                        cross.append((lm, rk))
        # Refresh the active contexts first (so adding cannot evict them),
        # then add this reading's full pair and the crossings.
        act_ids = [self.ids[key] for key in active]
        for key in active:
            self._touch(key)
        self._touch((left, mask))
        for key in cross:
            self._touch(key)
        # The most recently added active contexts are the most specific ones.
        nxt = mask
        w = self._width
        for i in act_ids[-self.cfg.max_active:]:
            nxt |= 1 << (w + i)
        self.left = nxt
        nnext = ~nxt
        pred = 0
        for i, lk in enumerate(lefts):
            if lk and not lk & nnext:
                pred |= rights[i]
        self.predicted = pred
        self.prev_bin = b

    # -- persistence ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "mode": "cad",
            "acc": self.acc,
            "left": self.left,
            "predicted": self.predicted,
            "prev_bin": self.prev_bin,
            "contexts": [[lk, rk, i] for (lk, rk), i in self.ids.items()],  # LRU order
            "slots": len(self.lefts),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: ContextConfig) -> CadContext:
        if state.get("mode") != "cad":
            raise ValueError("not a context-crossing state")
        ch = cls(config)
        ch.acc = float(state["acc"])
        ch.left = int(state["left"])
        ch.predicted = int(state["predicted"])
        ch.prev_bin = int(state["prev_bin"])
        slots = int(state["slots"])
        if not 0 <= slots <= config.cad_contexts:
            raise ValueError("context-crossing state larger than the configured cap")
        ch.lefts = [0] * slots
        ch.rights = [0] * slots
        for lk, rk, i in state["contexts"]:
            i = int(i)
            ch.lefts[i], ch.rights[i] = int(lk), int(rk)
            ch.ids[(int(lk), int(rk))] = i
        used = set(ch.ids.values())
        ch.free = [i for i in range(slots) if i not in used]
        return ch
