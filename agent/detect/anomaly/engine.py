"""The per-reading entry point the runtime calls: one detector per stream.

Streams are keyed by (sensor_id, metric). Detectors are created on first
sight, and their state can be exported and restored (the runtime keeps it
in SQLite), so a restart resumes with the learnt baselines.

Two detector kinds (one for every stream of an engine):

* ``default``: the multi-channel detector (``detector.py``); it learns each
  stream's range itself and ignores a given one;
* ``cad_ose``: CAD OSE (``cad_ose.py``), which needs the stream's value range
  (the firmware's valid range after calibration in the daemon; NAB's file
  minimum and maximum offline) and learns it online without one. Its memory
  is capped at ``CAD_OSE_MAX_CONTEXTS`` contexts per stream and it is not
  persisted: after a restart such a stream relearns.
* ``seq_lik``: the sequence likelihood detector (``seq_lik.py``): a
  transition memory over 48 bins of the value range, HTM's anomaly
  likelihood, a spatial check and rest after an alarm. It uses the range
  like CAD OSE (learnt online without one, its memory moved with the bins);
  its state is small and persisted like the default detector's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from agent.detect.anomaly.cad_ose import CadOse
from agent.detect.anomaly.detector import DetectorConfig, SensorDetector
from agent.detect.anomaly.seq_lik import SeqLik

StreamKey = tuple[str, str]
ValueRange = tuple[float, float]
DetectorKind = Literal["default", "cad_ose", "seq_lik"]
DETECTOR_KINDS: tuple[DetectorKind, ...] = ("default", "cad_ose", "seq_lik")
# What the daemon (detect.anomaly_detector) and ``dairy-edge anomaly score``
# use unless told otherwise; "default" names the older multi-channel detector
# (the name predates seq_lik and is kept so existing configs keep their meaning).
PRODUCT_DETECTOR: DetectorKind = "seq_lik"
# CAD OSE's rest after an alarm is NAB's probationary period / 5; a live
# stream has no file length, so it rests for 150 readings (NAB's cap, 750 / 5).
CAD_OSE_REST = 150
CAD_OSE_MAX_CONTEXTS = 512  # ~0.3 MB per stream (bench_detect.py --cad-ose); no learning beyond
# The likelihood's probation on a live stream: NAB's cap (750 readings), half
# of it learning the raw score, half estimating its distribution.
SEQ_LIK_PROBATION = 750


class _CadOseStream:
    """CAD OSE behind the detector interface (``update``; no persistence)."""

    def __init__(self, value_range: ValueRange | None, rest: float,
                 max_contexts: int | None) -> None:
        lo, hi = value_range if value_range is not None else (None, None)
        self.cad = CadOse(lo, hi, rest, max_contexts=max_contexts)

    def update(self, ts: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        return self.cad.score(value)


class _SeqLikStream:
    """The sequence likelihood detector behind the detector interface."""

    def __init__(self, value_range: ValueRange | None, rest: float, probation: int) -> None:
        self.det = SeqLik(value_range, rest, probation // 2, probation - probation // 2)

    def update(self, ts: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        return self.det.score(value)

    def to_state(self) -> dict[str, Any]:
        return self.det.to_state()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _SeqLikStream:
        obj = cls.__new__(cls)
        obj.det = SeqLik.from_state(state)
        return obj


Detector = SensorDetector | _CadOseStream | _SeqLikStream


class AnomalyEngine:
    """Scores readings per (sensor_id, metric) stream."""

    def __init__(self, config: DetectorConfig | None = None, max_streams: int = 100_000,
                 detector: DetectorKind = "default", rest: float = CAD_OSE_REST,
                 cad_max_contexts: int | None = CAD_OSE_MAX_CONTEXTS,
                 probation: int = SEQ_LIK_PROBATION) -> None:
        """``rest`` (readings reported as 0 after an alarm) applies to CAD OSE
        and seq_lik, ``cad_max_contexts`` to CAD OSE (``None``: no cap, as
        published; offline scoring only), ``probation`` to seq_lik's
        likelihood (offline: NAB's probationary period of the file)."""
        if detector not in DETECTOR_KINDS:
            raise ValueError(f"unknown anomaly detector {detector!r}; one of {DETECTOR_KINDS}")
        self.config = config or DetectorConfig()
        self.max_streams = max_streams
        self.detector = detector
        self.rest = rest
        self.cad_max_contexts = cad_max_contexts
        self.probation = probation
        self._detectors: dict[StreamKey, Detector] = {}
        self._dirty: set[StreamKey] = set()

    def score(self, key: StreamKey, ts: float, value: float,
              value_range: ValueRange | None = None) -> float:
        """Score one reading of stream ``key`` at epoch second ``ts``; in [0, 1].

        ``value_range`` (the stream's valid [min, max]) is read when the
        stream is first seen, by the detectors that use one.
        """
        det = self._detectors.get(key)
        if det is None:
            if len(self._detectors) >= self.max_streams:
                # Bounded memory beats scoring a runaway number of ids.
                return 0.0
            det = self._detectors[key] = self._new(value_range)
        self._dirty.add(key)
        return det.update(ts, value)

    def _new(self, value_range: ValueRange | None) -> Detector:
        if self.detector == "seq_lik":
            return _SeqLikStream(value_range, self.rest, self.probation)
        if self.detector == "cad_ose":
            return _CadOseStream(value_range, self.rest, self.cad_max_contexts)
        return SensorDetector(self.config)

    def __len__(self) -> int:
        return len(self._detectors)

    def __contains__(self, key: object) -> bool:
        return key in self._detectors

    def keys(self) -> list[StreamKey]:
        return list(self._detectors)

    def export_state(self, key: StreamKey) -> dict[str, Any] | None:
        det = self._detectors.get(key)
        return det.to_state() if isinstance(det, SensorDetector | _SeqLikStream) else None

    def take_dirty(self) -> dict[StreamKey, dict[str, Any]]:
        """States of the streams updated since the last call (to persist them)."""
        out = {}
        for k in self._dirty:
            det = self._detectors.get(k)
            if isinstance(det, SensorDetector | _SeqLikStream):
                out[k] = det.to_state()
        self._dirty.clear()
        return out

    def restore(self, states: Iterable[tuple[StreamKey, dict[str, Any]]]) -> int:
        """Load saved states; a state that does not load is skipped (the stream
        then relearns). Returns how many loaded."""
        loaded = 0
        if self.detector == "cad_ose":
            return 0  # CAD OSE's state is not persisted
        load = SensorDetector.from_state if self.detector == "default" else _SeqLikStream.from_state
        for key, state in states:
            try:
                self._detectors[key] = load(state)
                loaded += 1
            except (KeyError, TypeError, ValueError):
                continue
        return loaded

    def forget(self, key: StreamKey) -> None:
        self._detectors.pop(key, None)
        self._dirty.discard(key)
