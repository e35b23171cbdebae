"""The agent without cameras: what the daemon asks of vision, doing nothing.

``agent.runtime.vision`` imports OpenCV and the vision models (about 34 MiB of
resident memory, measured) at import; a gateway with no camera configured, the
usual one, never needs them, so the daemon imports it only when a camera is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.records import Reading


class NoVision:
    """Vision with no cameras: ``agent.runtime.vision.Vision``'s answers when it has none."""

    enabled = False

    def __init__(self) -> None:
        self.problems: list[str] = []

    def note_reading(self, reading: Reading) -> None:
        """No station has a camera: an RFID read has nothing to cross-check."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    async def watch(self, stop: asyncio.Event) -> None:
        await stop.wait()

    def camera_status(self) -> list[dict[str, Any]]:
        return []

    def model_status(self) -> dict[str, dict[str, Any]]:
        return {}
