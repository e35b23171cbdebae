"""CAD OSE, the Contextual Anomaly Detector (open-source edition), faithfully.

Written for this code base from the published description of the algorithm
(Smirnov & Bogdanov, NAB 2016; summarised in the NAB development set's
README); no third-party code. ``scripts/check_cad_ose.py`` compares its
output reading by reading with CAD OSE's published NAB results.

The method, per reading:

1. The value is quantised into ``2**bits`` equal-width bins of the stream's
   value range ``[lo, hi]`` (NAB tells every detector each file's minimum and
   maximum; a gateway knows a sensor's valid range). Each bit of the bin code
   becomes one *fact*: ``2 * position + bit``.
2. The *left* facts are the previous reading's facts plus one fact per
   context that was active then (the feedback that gives sequence memory).
3. A *context* is a pair (left semi-context, right semi-context), each a set
   of facts, stored once and shared by every context that uses it.
   - contexts *selected* at this reading: left part contained in the
     previous left facts; those whose right part came true are *active*;
   - a zero-level context (all previous left facts, all current facts) is
     learnt at every reading; zero-level contexts whose left part was
     selected but whose right part only partly came true, or whose left
     part only partly matched and whose right part at least partly came
     true, give *potential new contexts* (the overlaps: the matched left
     facts, the matched right facts), which are learnt too.
4. Raw score = mean of (1 - share of selected contexts that are active) and
   (share of this reading's potential new contexts that were really new).
5. After any raw score of at least 0.75 the detector reports 0 for the next
   ``rest_period`` readings (NAB: probationary period / 5).

Two details of the reference run are reproduced on purpose so that the
published scores can serve as a check of this implementation
(``reference_order=True``, the default):

* ties between active contexts of equal use count are broken by CPython 2's
  hash of the contexts' fact tuples, and
* a left semi-context's contexts are visited in CPython 2's dict order.

Both only decide *which* equally good contexts feed back and in which order
new contexts get their ids; with ``reference_order=False`` insertion order is
used instead (same algorithm, scores differ on a few readings).

Memory grows with the number of distinct contexts (no bound, as in the
reference); ``max_contexts`` stops learning new ones beyond a cap (the
daemon's bounded mode; ``None`` = unbounded as published).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

_MASK64 = (1 << 64) - 1
_NEURON_BASE = 2**31  # active context ids become facts above every value fact
BASE_THRESHOLD = 0.75
DEFAULT_BITS = 3
MAX_ACTIVE = 15
MAX_LEFT_OVERLAP = 7


def _signed64(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >> 63 else x


def py2_tuple_hash(items: Sequence[int]) -> int:
    """CPython 2.7's hash of a tuple of small ints on a 64-bit build."""
    x = 0x345678
    mult = 1000003
    n = len(items)
    for item in items:
        n -= 1
        y = -2 if item == -1 else item
        x = _signed64((x ^ y) * mult)
        mult = _signed64(mult + 82520 + n + n)
    x = _signed64(x + 97531)
    return -2 if x == -1 else x


class _Py2Order:
    """Iteration order of a CPython 2.7 dict with small non-negative int keys.

    Open addressing with the 2.7 probe sequence and resize rule; no deletions
    happen here, so fill == used.
    """

    __slots__ = ("mask", "slots", "used")

    def __init__(self) -> None:
        self.slots: list[int | None] = [None] * 8
        self.mask = 7
        self.used = 0

    def add(self, key: int) -> None:
        self._place(key)
        self.used += 1
        if self.used * 3 >= (self.mask + 1) * 2:
            size = 8
            while size <= 4 * self.used:
                size <<= 1
            old = [k for k in self.slots if k is not None]
            self.slots = [None] * size
            self.mask = size - 1
            for k in old:
                self._place(k)

    def _place(self, key: int) -> None:
        i = key & self.mask
        perturb = key
        while self.slots[i & self.mask] is not None:
            i = (i << 2) + i + perturb + 1
            perturb >>= 5
        self.slots[i & self.mask] = key

    def in_order(self) -> list[int]:
        return [k for k in self.slots if k is not None]


class _LeftSemi:
    """A left semi-context: its facts, and the contexts it starts."""

    __slots__ = ("contexts", "index", "matched", "order", "size")

    def __init__(self, index: int, size: int, reference_order: bool) -> None:
        self.index = index  # creation order: semi-contexts are judged in it
        self.size = size
        self.matched: list[int] = []  # facts of the last left-fact set it contains
        self.contexts: dict[int, int] = {}  # right semi id -> context id
        self.order: _Py2Order | None = _Py2Order() if reference_order else None

    def items(self) -> list[tuple[int, int]]:
        if self.order is None:
            return list(self.contexts.items())
        return [(k, self.contexts[k]) for k in self.order.in_order()]


class _RightSemi:
    __slots__ = ("index", "matched", "size")

    def __init__(self, index: int, size: int) -> None:
        self.index = index
        self.size = size
        self.matched: list[int] = []


class _Context:
    __slots__ = ("left_hash", "right_hash", "uses", "zero_level")

    def __init__(self, zero_level: bool, left_hash: int, right_hash: int) -> None:
        self.uses = 0
        self.zero_level = zero_level
        self.left_hash = left_hash
        self.right_hash = right_hash


class ContextMemory:
    """The contexts and semi-contexts learnt so far, and their crossing."""

    def __init__(self, reference_order: bool = True, max_contexts: int | None = None) -> None:
        self.reference_order = reference_order
        self.max_contexts = max_contexts
        self.left_ids: dict[int, int] = {}  # hash of the fact tuple -> semi id
        self.right_ids: dict[int, int] = {}
        self.lefts: list[_LeftSemi] = []
        self.rights: list[_RightSemi] = []
        self.left_by_fact: dict[int, list[_LeftSemi]] = {}
        self.right_by_fact: dict[int, list[_RightSemi]] = {}
        self.crossed_left: list[_LeftSemi] = []
        self.crossed_right: list[_RightSemi] = []
        self.contexts: list[_Context] = []
        self.new_context_id: int | None = None

    def _hash(self, facts: tuple[int, ...]) -> int:
        return py2_tuple_hash(facts) if self.reference_order else hash(facts)

    def learn(self, pairs: Iterable[tuple[tuple[int, ...], tuple[int, ...]]],
              zero_level: bool = False) -> int:
        """Store contexts not yet known; returns how many were new.

        For a zero-level pair, returns 1 if it was new (and remembers its id,
        so that it is not counted at the reading that made it) else 0.
        """
        added = 0
        for left, right in pairs:
            lh, rh = self._hash(left), self._hash(right)
            lid = self.left_ids.setdefault(lh, len(self.lefts))
            if lid == len(self.lefts):
                semi = _LeftSemi(lid, len(left), self.reference_order)
                self.lefts.append(semi)
                for fact in left:
                    self.left_by_fact.setdefault(fact, []).append(semi)
            rid = self.right_ids.setdefault(rh, len(self.rights))
            if rid == len(self.rights):
                rsemi = _RightSemi(rid, len(right))
                self.rights.append(rsemi)
                for fact in right:
                    self.right_by_fact.setdefault(fact, []).append(rsemi)
            lsemi = self.lefts[lid]
            cid = lsemi.contexts.get(rid)
            if cid is None:
                if self.max_contexts is not None and len(self.contexts) >= self.max_contexts:
                    continue  # bounded mode: memory full, nothing new is learnt
                cid = len(self.contexts)
                lsemi.contexts[rid] = cid
                if lsemi.order is not None:
                    lsemi.order.add(rid)
                self.contexts.append(_Context(zero_level, lh, rh))
                added += 1
                if zero_level:
                    self.new_context_id = cid
                    return 1
            elif zero_level:
                self.contexts[cid].zero_level = True
                return 0
        return added

    def cross_left(self, facts: Sequence[int]) -> None:
        """Mark every left semi-context with the part of ``facts`` it holds."""
        self.crossed_left = _cross(self.crossed_left, self.left_by_fact, facts)

    def cross_right(self, facts: Sequence[int], crossings: bool) -> tuple[list[tuple[int, int, int, int]], int,
                                                         list[tuple[tuple[int, ...], tuple[int, ...]]]]:
        """Judge the contexts selected by the last left facts against ``facts``.

        Potential new contexts are formed only when ``crossings`` (the
        reading's zero-level context was new: otherwise every overlap of it
        is known already). Returns (active contexts as (id, uses, left hash,
        right hash), number of selected contexts, potential new contexts).
        """
        self.crossed_right = _cross(self.crossed_right, self.right_by_fact, facts)
        active: list[tuple[int, int, int, int]] = []
        selected = 0
        potential: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        rights, contexts = self.rights, self.contexts
        # The reference compares ids with ``False`` when no context was new,
        # and ``0 == False``: context 0 is then never judged either.
        skip = self.new_context_id if self.new_context_id is not None else 0
        for lsemi in self.crossed_left:
            left_hit = len(lsemi.matched)
            left_full = left_hit == lsemi.size
            overlap_ok = crossings and left_hit <= MAX_LEFT_OVERLAP
            for rid, cid in lsemi.items():
                if cid == skip:
                    continue
                ctx = contexts[cid]
                rsemi = rights[rid]
                r_hit = len(rsemi.matched)
                if left_full:
                    selected += 1
                    if r_hit > 0:
                        if r_hit == rsemi.size:
                            ctx.uses += 1
                            active.append((cid, ctx.uses, ctx.left_hash, ctx.right_hash))
                        elif ctx.zero_level and overlap_ok:
                            potential.append((tuple(lsemi.matched), tuple(rsemi.matched)))
                elif ctx.zero_level and overlap_ok and r_hit > 0:
                    # left only partly matched: any overlap on the right
                    # counts (the published outputs need it; requiring the
                    # whole right part matched 22.8 % of the readings)
                    potential.append((tuple(lsemi.matched), tuple(rsemi.matched)))
        self.new_context_id = None
        return active, selected, potential


def _cross(previous: list[Any], by_fact: dict[int, list[Any]], facts: Sequence[int]) -> list[Any]:
    for semi in previous:
        semi.matched = []
    touched: list[Any] = []
    for fact in facts:
        for semi in by_fact.get(fact, ()):
            if not semi.matched:
                touched.append(semi)
            semi.matched.append(fact)
    touched.sort(key=lambda semi: semi.index)
    return touched


class CadOse:
    """One stream's CAD OSE detector; ``score(value)`` per reading, in order."""

    def __init__(self, lo: float | None, hi: float | None, rest_period: float,
                 bits: int = DEFAULT_BITS, max_active: int = MAX_ACTIVE,
                 reference_order: bool = True, max_contexts: int | None = None) -> None:
        """``lo``/``hi``: the stream's value range; ``None`` for both learns it
        online (the range widens to every value seen, so bins drift while it
        grows: the handicap of a sensor without a configured range)."""
        self.learn_range = lo is None or hi is None
        self.bits = bits
        self.max_active = max_active
        self.top_bin = 2**bits - 1.0
        self.top_code = 2**bits - 1
        self.lo = 0.0
        self.step = 1.0
        if lo is not None and hi is not None:
            self._set_range(lo, hi)
        self.hi = hi
        self.rest_period = int(rest_period)
        self.memory = ContextMemory(reference_order, max_contexts)
        self.left_facts: tuple[int, ...] = ()
        # Readings since the last raw score >= BASE_THRESHOLD, counting this
        # one; the reference's history starts with one 1.0, an "alarm" just
        # before the first reading.
        self.gap = 1
        self.last_raw = 0.0

    def _set_range(self, lo: float, hi: float) -> None:
        self.lo = lo
        span = hi - lo
        self.step = (span if span != 0.0 else self.top_bin) / self.top_bin

    def facts(self, value: float) -> tuple[int, ...]:
        """The bin code's bits as facts (``2 * position + bit``), sorted.

        A value outside the range falls into the nearest edge bin (with the
        file's own minimum and maximum, NAB's convention, none is outside).
        """
        code = int((value - self.lo) / self.step)
        code = min(max(code, 0), self.top_code)
        return tuple(2 * pos + ((code >> pos) & 1) for pos in range(self.bits))

    def raw(self, value: float) -> float:
        """Raw anomaly of the reading (no suppression), and learning."""
        if self.learn_range:
            if self.hi is None:
                self.hi = self.lo = value
            lo, hi = min(self.lo, value), max(self.hi, value)
            if lo != self.lo or hi != self.hi:
                self.hi = hi
                self._set_range(lo, hi)
        sens = self.facts(value)
        mem = self.memory
        pot_zero: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        new_zero = 0
        if self.left_facts and sens:
            pair = (self.left_facts, sens)
            pot_zero.add(pair)
            new_zero = mem.learn([pair], zero_level=True)
        active, selected, potential = mem.cross_right(sens, crossings=new_zero > 0)
        n_potential = len(set(potential) | pot_zero)
        hit_share = len(active) / selected if selected > 0 else 0.0
        active.sort(key=lambda a: (a[1], a[2], a[3]))
        neurons = {_NEURON_BASE + a[0] for a in active[-self.max_active:]}
        self.left_facts = tuple(sorted(set(sens) | neurons))
        new = mem.learn(potential) if potential else 0
        mem.cross_left(self.left_facts)  # after learning: new semi-contexts take part
        new += new_zero
        new_share = new / n_potential if n_potential > 0 else 0.0
        return (1.0 - hit_share + new_share) / 2.0

    def score(self, value: float) -> float:
        """Reported score: 0 during ``rest_period`` readings after an alarm."""
        raw = self.raw(value)
        # rest_period 0 keeps the initial alarm in view for ever, as in the
        # reference (its window history[-0:] is the whole history).
        quiet = self.gap <= self.rest_period or self.rest_period == 0
        self.gap = 1 if raw >= BASE_THRESHOLD else self.gap + 1
        self.last_raw = raw
        return 0.0 if quiet else raw
