"""Detection inside the runtime: anomaly scores and dairy rules per reading.

Filled in once the detect engines land; until then no alerts are raised.
"""

from __future__ import annotations

from typing import Any

from agent.clock import Clock
from agent.config.model import DetectConfig
from agent.records.types import Alert, Reading


class Detection:
    def __init__(self, config: DetectConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock

    def on_reading(self, reading: Reading) -> list[Alert]:
        return []

    def tick(self, now_mono: float) -> list[Alert]:
        return []

    def restore(self, writer: Any) -> None:
        return None

    def save(self, writer: Any) -> None:
        return None
