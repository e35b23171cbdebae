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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from agent.detect.anomaly.cad_ose import CadOse
from agent.detect.anomaly.detector import DetectorConfig, SensorDetector

StreamKey = tuple[str, str]
ValueRange = tuple[float, float]
DetectorKind = Literal["default", "cad_ose"]
DETECTOR_KINDS: tuple[DetectorKind, ...] = ("default", "cad_ose")
# CAD OSE's rest after an alarm is NAB's probationary period / 5; a live
# stream has no file length, so it rests for 150 readings (NAB's cap, 750 / 5).
CAD_OSE_REST = 150
CAD_OSE_MAX_CONTEXTS = 512  # ~0.3 MB per stream (bench_detect.py --cad-ose); no learning beyond


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


class AnomalyEngine:
    """Scores readings per (sensor_id, metric) stream."""

    def __init__(self, config: DetectorConfig | None = None, max_streams: int = 100_000,
                 detector: DetectorKind = "default", rest: float = CAD_OSE_REST,
                 cad_max_contexts: int | None = CAD_OSE_MAX_CONTEXTS) -> None:
        """``rest`` and ``cad_max_contexts`` apply to CAD OSE (``None``: no
        cap, as published; offline scoring only)."""
        if detector not in DETECTOR_KINDS:
            raise ValueError(f"unknown anomaly detector {detector!r}; one of {DETECTOR_KINDS}")
        self.config = config or DetectorConfig()
        self.max_streams = max_streams
        self.detector = detector
        self.rest = rest
        self.cad_max_contexts = cad_max_contexts
        self._detectors: dict[StreamKey, SensorDetector | _CadOseStream] = {}
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
            det = self._detectors[key] = (
                SensorDetector(self.config) if self.detector == "default"
                else _CadOseStream(value_range, self.rest, self.cad_max_contexts)
            )
        self._dirty.add(key)
        return det.update(ts, value)

    def __len__(self) -> int:
        return len(self._detectors)

    def __contains__(self, key: object) -> bool:
        return key in self._detectors

    def keys(self) -> list[StreamKey]:
        return list(self._detectors)

    def export_state(self, key: StreamKey) -> dict[str, Any] | None:
        det = self._detectors.get(key)
        return det.to_state() if isinstance(det, SensorDetector) else None

    def take_dirty(self) -> dict[StreamKey, dict[str, Any]]:
        """States of the streams updated since the last call (to persist them)."""
        out = {}
        for k in self._dirty:
            det = self._detectors.get(k)
            if isinstance(det, SensorDetector):
                out[k] = det.to_state()
        self._dirty.clear()
        return out

    def restore(self, states: Iterable[tuple[StreamKey, dict[str, Any]]]) -> int:
        """Load saved states; a state that does not load is skipped (the stream
        then relearns). Returns how many loaded."""
        loaded = 0
        if self.detector != "default":
            return 0  # only the default detector's state persists
        for key, state in states:
            try:
                self._detectors[key] = SensorDetector.from_state(state)
                loaded += 1
            except (KeyError, TypeError, ValueError):
                continue
        return loaded

    def forget(self, key: StreamKey) -> None:
        self._detectors.pop(key, None)
        self._dirty.discard(key)
