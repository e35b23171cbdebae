"""Shared pieces for the ingest and simulator tests."""

from __future__ import annotations

from pathlib import Path

from agent.config.model import IngestConfig
from agent.ingest import Ingestor

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = ROOT / "firmware_configs"
CALIBRATION_DIR = ROOT / "calibration"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mqtt"
BOOT = "test-boot"


class FakeClock:
    """A clock the test sets; starts unsynced in 1970 like a Pi without RTC."""

    def __init__(self, wall: float = 12.5, mono_ns: int = 5_000_000_000, synced: bool = False):
        self.wall_ts = wall
        self.mono_ns = mono_ns
        self.is_synced = synced

    def wall(self) -> float:
        return self.wall_ts

    def monotonic(self) -> float:
        return self.mono_ns / 1e9

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def synced(self) -> bool:
        return self.is_synced


def make_ingestor(
    calibration_dir: Path | None = None,
    clock: FakeClock | None = None,
    **config: object,
) -> Ingestor:
    """An Ingestor over the shipped firmware; no calibrations unless a folder is given."""
    return Ingestor(
        FIRMWARE_DIR,
        calibration_dir if calibration_dir is not None else ROOT / "tests" / "no-such-dir",
        IngestConfig.model_validate(config),
        clock or FakeClock(),
        BOOT,
    )
