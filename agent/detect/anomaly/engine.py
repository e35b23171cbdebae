"""The per-reading entry point the runtime calls: one detector per stream.

Streams are keyed by (sensor_id, metric). Detectors are created on first
sight, and their state can be exported and restored (the runtime keeps it
in SQLite), so a restart resumes with the learnt baselines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.detect.anomaly.detector import DetectorConfig, SensorDetector

StreamKey = tuple[str, str]


class AnomalyEngine:
    """Scores readings per (sensor_id, metric) stream."""

    def __init__(self, config: DetectorConfig | None = None, max_streams: int = 100_000) -> None:
        self.config = config or DetectorConfig()
        self.max_streams = max_streams
        self._detectors: dict[StreamKey, SensorDetector] = {}
        self._dirty: set[StreamKey] = set()

    def score(self, key: StreamKey, ts: float, value: float) -> float:
        """Score one reading of stream ``key`` at epoch second ``ts``; in [0, 1]."""
        det = self._detectors.get(key)
        if det is None:
            if len(self._detectors) >= self.max_streams:
                # Bounded memory beats scoring a runaway number of ids.
                return 0.0
            det = self._detectors[key] = SensorDetector(self.config)
        self._dirty.add(key)
        return det.update(ts, value)

    def __len__(self) -> int:
        return len(self._detectors)

    def keys(self) -> list[StreamKey]:
        return list(self._detectors)

    def export_state(self, key: StreamKey) -> dict[str, Any] | None:
        det = self._detectors.get(key)
        return det.to_state() if det is not None else None

    def take_dirty(self) -> dict[StreamKey, dict[str, Any]]:
        """States of the streams updated since the last call (to persist them)."""
        out = {k: self._detectors[k].to_state() for k in self._dirty if k in self._detectors}
        self._dirty.clear()
        return out

    def restore(self, states: Iterable[tuple[StreamKey, dict[str, Any]]]) -> int:
        """Load saved states; a state that does not load is skipped (the stream
        then relearns). Returns how many loaded."""
        loaded = 0
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
