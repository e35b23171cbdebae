"""Visits: many noisy per-frame tag readings -> one identification per cow, or none.

A visit is a run of frames on one camera with tag sightings (read or not),
ended by ``visit_gap_s`` without one or cut at ``max_visit_s``. One visit per
camera at a time: the cameras watch single-file lanes, and both ears of a cow
carry the same number.

Voting (``vote``). A wrong number is worse than no number, so the voter only
names a number it can defend:

* readings whose number does not match ``tag_pattern`` are never evidence;
  numbers equal but for leading zeros ("0042", "42") are one candidate;
* in each frame a candidate counts once (both ears read alike are one
  observation, at the better confidence);
* each candidate's posterior probability comes from a simple noisy-reader
  model: a frame reading N at confidence c says "N" with likelihood c, and any
  other number with likelihood (1 - c) * q, where q (``misread_share``) is the
  chance that a misread lands on exactly that number. Frames of one visit are
  not independent (same dirt, same blur), so the log-likelihoods are tempered
  (``temper``, 0.5: two frames weigh like one independent look). A hypothesis
  "the true number was never read" competes with the candidates. The reported
  confidence is the winner's posterior: about the chance the number is right
  if the reader's confidences are honest;
* the winner must be read in at least ``min_frames`` frames (2: one frame
  alone never names a cow, however confident; it goes to review);
* another number read in ``min_frames`` frames or more, with at least
  ``rival_ratio`` of the winner's weight and more than one digit away from it,
  means two tags in view: review ("two_numbers"), not a pick. A rival one
  digit away is the typical misread and only lowers the posterior;
* below ``min_confidence`` the visit goes to review: ``tag_number`` is None,
  the votes stay in the evidence.

Register and RFID. A winner not in the register is flagged
``not_in_register`` (a new cow or a misread: staff decide). An EID read
(``note_rfid``) from the same station within ``rfid_window_s`` of the visit is
cross-checked: the visit is held until the window has passed (only once the
station has sent a read, or with ``expect_rfid``). A read that belongs to the
same animal as the number raises the confidence by the likelihood ratio
``rfid_odds`` (and may lift a low-confidence winner over the line, never a
single frame or two numbers); a read of another animal flags
``rfid_mismatch`` and both are kept. A read lying closer to another visit is
left to that visit; an agreeing read is used by one visit only. EID reads with
no tag seen make no identification: the reads themselves are stored as
readings by ingest.

Every identification's ``record_id`` comes from the camera, the boot and the
first frame's monotonic time, so emitting the same visit again is a
duplicate, never a second cow.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.config.model import EartagConfig
from agent.errors import ConfigError
from agent.metrics import IDENTIFICATIONS
from agent.records.types import Identification, Stamp, stable_id
from agent.vision.eartag.register import Animal, HerdRegister, normalise_eid, tag_key
from agent.vision.eartag.types import TagReading

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class VoteRules:
    """The voter's tuning; the defaults lean towards saying nothing."""

    min_frames: int = 2
    misread_share: float = 0.2  # q: share of misreads that land on one given number
    temper: float = 0.5  # weight of one frame's log-likelihood (frames are correlated)
    max_frame_confidence: float = 0.99  # a reader's 1.0 is not certainty
    rival_ratio: float = 0.25
    rfid_odds: float = 8.0  # likelihood ratio of an agreeing EID read
    max_evidence_readings: int = 40
    max_crops: int = 3
    max_candidates: int = 64
    max_rfid_reads: int = 256


@dataclass(slots=True)
class _Candidate:
    frames: int = 0
    weight: float = 0.0  # sum of per-frame confidences
    gain: float = 0.0  # sum of log(c / ((1 - c) q)): evidence for this number
    spellings: dict[str, float] = field(default_factory=dict)

    def spelling(self) -> str:
        return max(self.spellings.items(), key=lambda kv: (kv[1], kv[0]))[0]


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """The voter's verdict. ``key`` is the best candidate (None when nothing was
    read); ``reason`` is None when it may be reported, else why not."""

    key: str | None
    number: str | None
    posterior: float
    frames: int
    share: float
    reason: str | None  # no_number | too_few_frames | two_numbers | low_confidence
    table: dict[str, dict[str, float]]


def vote(
    candidates: Mapping[str, _Candidate], min_confidence: float, rules: VoteRules
) -> VoteOutcome:
    """The verdict over a visit's candidates (see the module docstring)."""
    if not candidates:
        return VoteOutcome(None, None, 0.0, 0, 0.0, "no_number", {})
    scores = {key: rules.temper * c.gain for key, c in candidates.items()}
    top = max(scores.values())
    # Softmax with "never read" (score 0) as one more hypothesis, shifted for safety.
    exp = {key: math.exp(s - top) for key, s in scores.items()}
    norm = sum(exp.values()) + math.exp(-top)
    post = {key: e / norm for key, e in exp.items()}
    total_weight = sum(c.weight for c in candidates.values()) or 1.0
    key = max(candidates, key=lambda k: (post[k], candidates[k].weight, k))
    best = candidates[key]
    ranked = sorted(candidates, key=lambda k: -candidates[k].weight)[:8]
    table = {
        candidates[k].spelling(): {
            "frames": candidates[k].frames,
            "weight": round(candidates[k].weight, 3),
            "p": round(post[k], 4),
        }
        for k in ranked
    }
    reason: str | None = None
    if best.frames < rules.min_frames:
        reason = "too_few_frames"
    elif any(
        other != key
        and c.frames >= rules.min_frames
        and c.weight >= rules.rival_ratio * best.weight
        and not _within_one_edit(other, key)
        for other, c in candidates.items()
    ):
        reason = "two_numbers"
    elif post[key] < min_confidence:
        reason = "low_confidence"
    return VoteOutcome(
        key=key,
        number=best.spelling(),
        posterior=post[key],
        frames=best.frames,
        share=best.weight / total_weight,
        reason=reason,
        table=table,
    )


def _within_one_edit(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one substitution, deletion or insertion (or none)."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass(frozen=True, slots=True)
class VisitResult:
    """A closed visit: its record, and its best tag crops (best first, few)."""

    identification: Identification
    crops: tuple[np.ndarray, ...]


@dataclass(frozen=True, slots=True)
class _Read:
    seq: int
    eid: str
    mono_ns: int
    wall_ts: float


@dataclass(slots=True)
class _Visit:
    first_mono: int
    first_wall: float
    last_mono: int
    last_wall: float
    first_index: int
    frames_seen: int = 0
    frames_read: int = 0
    rejected_pattern: int = 0
    candidates: dict[str, _Candidate] = field(default_factory=dict)
    readings: list[list[Any]] = field(default_factory=list)
    readings_dropped: int = 0
    crops: list[tuple[float, int, np.ndarray]] = field(default_factory=list)  # min-heap
    closed_by: str = ""
    outcome: VoteOutcome | None = None
    due_mono: int = 0  # when the RFID window after the visit has passed


class VisitTracker:
    """Turns one camera's per-frame readings into identifications.

    Not thread-safe: feed it from the camera's vision worker (``add``, ``tick``)
    and hand it RFID reads on the same thread (or under one lock). It has no
    clock of its own: every method takes the monotonic time it should act at,
    and ``stamp`` makes the record stamps.
    """

    def __init__(
        self,
        cfg: EartagConfig,
        camera_id: str,
        *,
        boot_id: str,
        stamp: Callable[[], Stamp],
        station: str | None = None,
        register: HerdRegister | None = None,
        model_versions: Callable[[], Mapping[str, str]] = dict,
        expect_rfid: bool = False,
        rules: VoteRules | None = None,
    ) -> None:
        try:
            self._pattern = re.compile(cfg.tag_pattern)
        except re.error as err:
            raise ConfigError(
                f"vision.eartag.tag_pattern: {cfg.tag_pattern!r} is not a regular expression: {err}"
            ) from err
        self._cfg = cfg
        self.camera_id = camera_id
        self.station = station
        self._boot_id = boot_id
        self._stamp = stamp
        self._register = register
        self._model_versions = model_versions
        self._expect_rfid = expect_rfid  # becomes True at the first EID read
        self.rules = rules or VoteRules()
        self._gap_ns = int(cfg.visit_gap_s * _NS)
        self._max_ns = int(cfg.max_visit_s * _NS)
        self._window_ns = int(cfg.rfid_window_s * _NS)
        self._open: _Visit | None = None
        self._held: list[_Visit] = []
        self._reads: deque[_Read] = deque(maxlen=self.rules.max_rfid_reads)
        self._used_reads: set[int] = set()
        self._read_seq = itertools.count()
        self._crop_seq = itertools.count()

    # -- input ----------------------------------------------------------------

    def add(
        self,
        frame_mono_ns: int,
        frame_wall_ts: float,
        frame_index: int,
        readings: Sequence[TagReading],
    ) -> list[VisitResult]:
        """One inferred frame's readings (possibly none); returns visits it closed."""
        out = self.tick(frame_mono_ns)
        if not readings:
            return out
        visit = self._open
        if visit is None:
            visit = self._open = _Visit(
                first_mono=frame_mono_ns,
                first_wall=frame_wall_ts,
                last_mono=frame_mono_ns,
                last_wall=frame_wall_ts,
                first_index=frame_index,
            )
        visit.last_mono = max(visit.last_mono, frame_mono_ns)
        visit.last_wall = frame_wall_ts
        visit.frames_seen += 1
        self._absorb(visit, frame_index, readings)
        return out

    def note_rfid(self, eid: str, mono_ns: int, wall_ts: float) -> list[VisitResult]:
        """An EID read at this camera's station; returns visits it let go (none today)."""
        self._expect_rfid = True  # this station has a reader: hold visits for its reads
        self._reads.append(_Read(next(self._read_seq), normalise_eid(eid), mono_ns, wall_ts))
        return []

    def tick(self, now_mono_ns: int) -> list[VisitResult]:
        """Close the open visit when idle for visit_gap_s or older than max_visit_s,
        and emit held visits whose RFID window has passed."""
        visit = self._open
        if visit is not None:
            if now_mono_ns - visit.last_mono > self._gap_ns:
                self._close(visit, "gap")
            elif now_mono_ns - visit.first_mono >= self._max_ns:
                self._close(visit, "max_length")
        out: list[VisitResult] = []
        while self._held and (self._held[0].due_mono <= now_mono_ns):
            out.append(self._emit(self._held.pop(0)))
        self._prune_reads(now_mono_ns)
        return out

    def end_visit(self, now_mono_ns: int) -> list[VisitResult]:
        """The camera sees its empty scene (the presence gate): the open visit, if
        any, is over now, even when the next cow follows within visit_gap_s
        (cows walk nose to tail: a gap alone merged neighbours into one visit)."""
        if self._open is not None:
            self._close(self._open, "empty")
        return self.tick(now_mono_ns)

    def flush(self) -> list[VisitResult]:
        """Close everything now (shutdown): RFID reads not yet arrived are not waited for."""
        if self._open is not None:
            self._close(self._open, "flush")
        out = [self._emit(v) for v in self._held]
        self._held.clear()
        return out

    @property
    def open_visit(self) -> bool:
        return self._open is not None

    @property
    def held(self) -> int:
        """Closed visits waiting for their RFID window."""
        return len(self._held)

    # -- accumulation ---------------------------------------------------------

    def _absorb(self, visit: _Visit, frame_index: int, readings: Sequence[TagReading]) -> None:
        rules = self.rules
        per_frame: dict[str, tuple[float, str]] = {}
        for reading in readings:
            conf = min(max(float(reading.confidence), 0.0), 1.0)
            if not math.isfinite(conf):
                conf = 0.0
            number = reading.number
            if number is not None and not self._pattern.fullmatch(number):
                visit.rejected_pattern += 1
                number = None
            self._evidence(visit, frame_index, number, conf)
            if reading.crop is not None:
                self._keep_crop(visit, conf, reading.crop)
            if number is None:
                continue
            key = tag_key(number)
            if key not in per_frame or conf > per_frame[key][0]:
                per_frame[key] = (conf, number)
        if per_frame:
            visit.frames_read += 1
        q = rules.misread_share
        for key, (conf, number) in per_frame.items():
            cand = visit.candidates.get(key)
            if cand is None:
                if len(visit.candidates) >= rules.max_candidates:
                    continue
                cand = visit.candidates[key] = _Candidate()
            c = min(max(conf, 1e-6), rules.max_frame_confidence)
            cand.frames += 1
            cand.weight += conf
            # A low-confidence reading is weak evidence for its number, never against it.
            cand.gain += max(0.0, math.log(c / ((1.0 - c) * q)))
            cand.spellings[number] = cand.spellings.get(number, 0.0) + conf

    def _evidence(self, visit: _Visit, frame_index: int, number: str | None, conf: float) -> None:
        if len(visit.readings) < self.rules.max_evidence_readings:
            visit.readings.append([frame_index, number, round(conf, 3)])
        else:
            visit.readings_dropped += 1

    def _keep_crop(self, visit: _Visit, conf: float, crop: np.ndarray) -> None:
        heap = visit.crops
        if len(heap) >= self.rules.max_crops and conf <= heap[0][0]:
            return
        # A copy: the reader's crop may be a view into a frame buffer that is reused.
        item = (conf, next(self._crop_seq), np.array(crop, copy=True))
        if len(heap) < self.rules.max_crops:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)

    # -- closing --------------------------------------------------------------

    def _close(self, visit: _Visit, why: str) -> None:
        self._open = None
        visit.closed_by = why
        visit.outcome = vote(visit.candidates, self._cfg.min_confidence, self.rules)
        visit.due_mono = visit.last_mono + (self._window_ns if self._expect_rfid else 0)
        self._held.append(visit)

    def _prune_reads(self, now_mono_ns: int) -> None:
        horizon = now_mono_ns - (self._max_ns + self._gap_ns + 2 * self._window_ns)
        visits = [*self._held, *([self._open] if self._open else [])]
        oldest_needed = min((v.first_mono for v in visits), default=now_mono_ns)
        horizon = min(horizon, oldest_needed - self._window_ns)
        while self._reads and self._reads[0].mono_ns < horizon:
            self._used_reads.discard(self._reads.popleft().seq)

    def _distance(self, visit: _Visit, mono_ns: int) -> int:
        if mono_ns < visit.first_mono:
            return visit.first_mono - mono_ns
        return max(0, mono_ns - visit.last_mono)

    def _candidate_reads(self, visit: _Visit) -> list[_Read]:
        others = [v for v in (*self._held, self._open) if v is not None and v is not visit]
        found = []
        for read in self._reads:
            if read.seq in self._used_reads:
                continue
            mine = self._distance(visit, read.mono_ns)
            if mine > self._window_ns:
                continue
            if any(self._distance(o, read.mono_ns) < mine for o in others):
                continue  # nearer another visit: most likely that cow's
            found.append(read)
        return sorted(found, key=lambda r: (self._distance(visit, r.mono_ns), r.seq))

    def _rfid_agrees(self, visual: Animal | None, key: str, eid: str) -> bool | None:
        """Whether the EID is the same animal as the number; None when it cannot be told."""
        register = self._register
        if register is None:
            return None
        by_eid = register.by_eid(eid)
        if by_eid is not None:
            return tag_key(by_eid.tag_number) == key
        if visual is not None and visual.eid is not None:
            return False  # the register gives this cow another EID
        return None

    def _emit(self, visit: _Visit) -> VisitResult:
        outcome = visit.outcome
        assert outcome is not None
        register = self._register
        flags: list[str] = []
        visual = register.by_tag(outcome.key) if register and outcome.key else None
        confidence = outcome.posterior
        rfid_eid: str | None = None
        agrees: bool | None = None
        rfid_evidence: dict[str, Any] | None = None
        reads = self._candidate_reads(visit)
        if reads:
            chosen = reads[0]
            if outcome.key is not None:
                for read in reads:
                    if self._rfid_agrees(visual, outcome.key, read.eid):
                        chosen = read
                        break
                agrees = self._rfid_agrees(visual, outcome.key, chosen.eid)
            rfid_eid = chosen.eid
            rfid_animal = register.by_eid(chosen.eid) if register else None
            rfid_evidence = {
                "eid": chosen.eid,
                "animal_id": rfid_animal.animal_id if rfid_animal else None,
                "dt_s": round(self._distance(visit, chosen.mono_ns) / _NS, 3),
                "candidates": len(reads),
            }
            if agrees:
                self._used_reads.add(chosen.seq)
                odds = confidence / max(1.0 - confidence, 1e-12) * self.rules.rfid_odds
                confidence = odds / (1.0 + odds)
        reason = outcome.reason
        if reason == "low_confidence" and confidence >= self._cfg.min_confidence:
            reason = None  # the EID read vouches for the number
        if reason is not None:
            status, tag_number, animal_id = "review", None, None
            flags.append(reason)
            if agrees is not None:
                agrees = None  # nothing claimed, nothing to agree with
        else:
            tag_number = visual.tag_number if visual else outcome.number
            animal_id = visual.animal_id if visual else None
            if register is not None and visual is None:
                flags.append("not_in_register")
            if agrees is False:
                flags.append("rfid_mismatch")
            status = "flagged" if flags else "identified"
        evidence: dict[str, Any] = {
            "frames_seen": visit.frames_seen,
            "frames_read": visit.frames_read,
            "frames_used": outcome.frames if reason is None else 0,
            "readings": visit.readings,
            "votes": outcome.table,
            "posterior": round(outcome.posterior, 4),
            "share": round(outcome.share, 4),
            "closed_by": visit.closed_by,
            "first_frame": visit.first_index,
            "duration_s": round((visit.last_mono - visit.first_mono) / _NS, 3),
        }
        if visit.readings_dropped:
            evidence["readings_dropped"] = visit.readings_dropped
        if visit.rejected_pattern:
            evidence["rejected_pattern"] = visit.rejected_pattern
        if reason is not None and outcome.number is not None:
            evidence["candidate"] = outcome.number
        if rfid_evidence is not None:
            evidence["rfid"] = rfid_evidence
        if "not_in_register" in flags and register is not None and outcome.number:
            near = register.nearest(outcome.number)
            if near:
                evidence["register_near"] = [a.tag_number for a in near]
        visit_id = stable_id("visit", self.camera_id, self._boot_id, str(visit.first_mono))[:16]
        identification = Identification(
            record_id=stable_id("identification", self.camera_id, visit_id),
            camera_id=self.camera_id,
            visit_id=visit_id,
            status=status,
            confidence=round(confidence, 4),
            stamp=self._stamp(),
            started_wall_ts=visit.first_wall,
            ended_wall_ts=visit.last_wall,
            tag_number=tag_number,
            animal_id=animal_id,
            station=self.station,
            rfid_eid=rfid_eid,
            rfid_agrees=agrees,
            flags=flags,
            evidence=evidence,
            model_versions=dict(self._model_versions()),
        )
        IDENTIFICATIONS.labels(status=status).inc()
        crops = tuple(c for _, _, c in sorted(visit.crops, key=lambda t: (-t[0], t[1])))
        return VisitResult(identification, crops)
