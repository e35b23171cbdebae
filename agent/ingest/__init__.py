"""Ingest: firmware formats, decoding, validation and calibration of sensor messages."""

from agent.ingest.calibration import Calibration, CalibrationTable, load_calibration_dir
from agent.ingest.firmware import FirmwareSpec, load_firmware, load_firmware_dir
from agent.ingest.pipeline import REASONS, Ingestor, record_id_for

__all__ = [
    "REASONS",
    "Calibration",
    "CalibrationTable",
    "FirmwareSpec",
    "Ingestor",
    "load_calibration_dir",
    "load_firmware",
    "load_firmware_dir",
    "record_id_for",
]
