"""Per-device calibration (calibration/*.yaml), applied at ingest.

A file holds a list of devices; each names its firmware and sensor id, when it
was calibrated, when the next calibration is due, and a correction per field:
``offset`` and ``gain`` (corrected = gain * raw + offset) or a ``polynomial``
(coefficients from the constant up). The raw value is kept beside the
corrected one, so a wrong calibration can be undone later.

    devices:
      - firmware: barn-climate
        sensor_id: climate-01
        calibrated_on: 2025-03-01
        due: 2026-03-01
        fields:
          temperature_c: {offset: -0.3}
          humidity_pct: {polynomial: [1.5, 0.97, 0.0002]}
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import ConfigError
from agent.ingest.firmware import FIELD_NAME, SAFE_ID, safe_load


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCorrection(_Strict):
    offset: float | None = None
    gain: float | None = None
    polynomial: list[float] | None = Field(None, min_length=1, max_length=8)

    @model_validator(mode="after")
    def _one_kind(self) -> FieldCorrection:
        linear = self.offset is not None or self.gain is not None
        if linear == (self.polynomial is not None):
            raise ValueError("give offset/gain or polynomial, not both and not neither")
        return self

    def coefficients(self) -> tuple[float, ...]:
        """Polynomial coefficients, constant first; offset/gain is the degree-1 case."""
        if self.polynomial is not None:
            return tuple(self.polynomial)
        return (self.offset or 0.0, 1.0 if self.gain is None else self.gain)


class DeviceCalibration(_Strict):
    firmware: str = Field(pattern=SAFE_ID)
    sensor_id: str = Field(pattern=SAFE_ID)
    calibrated_on: dt.date
    due: dt.date
    by: str | None = Field(None, max_length=128, description="Who calibrated it.")
    fields: dict[str, FieldCorrection] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> DeviceCalibration:
        if self.due < self.calibrated_on:
            raise ValueError("due is before calibrated_on")
        for name in self.fields:
            if not re.fullmatch(FIELD_NAME, name):
                raise ValueError(f"field name {name!r} is not valid")
        return self


class CalibrationFile(_Strict):
    devices: list[DeviceCalibration] = Field(default_factory=list)


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Calibration:
    """One device's corrections, ready to apply."""

    firmware: str
    sensor_id: str
    calibrated_on_ts: float
    due_ts: float
    source: str
    fields: dict[str, tuple[float, ...]]

    def apply(self, name: str, raw: float) -> float:
        coeffs = self.fields.get(name)
        if coeffs is None:
            return raw
        # Horner's rule, highest power first.
        out = 0.0
        for c in reversed(coeffs):
            out = out * raw + c
        # Drop binary noise (8.87 + 0.1 = 8.969999999999999) far below any sensor's resolution.
        return round(out, 9)


class CalibrationTable:
    """All calibrations, looked up by (firmware, sensor_id)."""

    def __init__(self, entries: list[Calibration]) -> None:
        self._by_device = {(e.firmware, e.sensor_id): e for e in entries}

    def __len__(self) -> int:
        return len(self._by_device)

    def get(self, firmware: str, sensor_id: str) -> Calibration | None:
        return self._by_device.get((firmware, sensor_id))

    def entries(self) -> list[Calibration]:
        return sorted(self._by_device.values(), key=lambda e: (e.firmware, e.sensor_id))

    def overdue(self, now_wall: float) -> list[Calibration]:
        """Devices whose calibration was due at or before ``now_wall`` (epoch seconds).

        Only meaningful while the wall clock is synced; the caller checks that.
        """
        return [e for e in self.entries() if e.due_ts <= now_wall]


def load_calibration_dir(folder: Path) -> CalibrationTable:
    """Every *.yaml in ``folder``; a missing folder means no calibrations."""
    entries: list[Calibration] = []
    seen: dict[tuple[str, str], str] = {}
    if not folder.is_dir():
        return CalibrationTable([])
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        try:
            parsed = CalibrationFile.model_validate(data or {})
        except ValidationError as err:
            lines = [f"{path}: invalid calibration file"]
            for item in err.errors():
                where = ".".join(str(p) for p in item["loc"]) or "<top>"
                lines.append(f"  {where}: {item['msg']}")
            raise ConfigError("\n".join(lines)) from err
        for index, device in enumerate(parsed.devices):
            key = (device.firmware, device.sensor_id)
            if key in seen:
                raise ConfigError(
                    f"{path}: devices.{index}: {key[0]}/{key[1]} is also calibrated in {seen[key]}"
                )
            seen[key] = str(path)
            entries.append(
                Calibration(
                    firmware=device.firmware,
                    sensor_id=device.sensor_id,
                    calibrated_on_ts=_epoch(device.calibrated_on),
                    due_ts=_epoch(device.due),
                    source=f"{path}: devices.{index}",
                    fields={n: c.coefficients() for n, c in device.fields.items()},
                )
            )
    return CalibrationTable(entries)
