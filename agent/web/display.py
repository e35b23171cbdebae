"""How a reading is shown: a display name, a unit and a rounding for each
firmware field (the names and units of ``firmware_configs/*.yaml``), on/off
for switches, ages as "40 s ago". Unknown fields fall back to their name with
the unit its suffix gives (``_c`` -> degC), so a new firmware still reads well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldDisplay:
    label: str
    unit: str = ""
    digits: int = 1
    switch: bool = False


# name -> how to show it; the unit strings as the firmware configs give them.
FIELDS: dict[str, FieldDisplay] = {
    # bulk tank (firmware bulk-tank)
    "milk_temp_c": FieldDisplay("Milk temperature", "°C", 1),
    "agitator": FieldDisplay("Agitator", switch=True),
    "level_l": FieldDisplay("Level", "l", 0),
    "wash": FieldDisplay("Wash", switch=True),
    # barn climate (barn-climate)
    "temperature_c": FieldDisplay("Temperature", "°C", 1),
    "humidity_pct": FieldDisplay("Humidity", "%", 0),
    "battery_v": FieldDisplay("Battery", "V", 2),
    # collar (neck-collar)
    "activity": FieldDisplay("Activity", "", 0),
    "rumination_min": FieldDisplay("Rumination", "min", 0),
    # milk meter (milk-meter)
    "yield_kg": FieldDisplay("Yield", "kg", 1),
    "conductivity_lf": FieldDisplay("Conductivity LF", "mS/cm", 2),
    "conductivity_rf": FieldDisplay("Conductivity RF", "mS/cm", 2),
    "conductivity_lr": FieldDisplay("Conductivity LR", "mS/cm", 2),
    "conductivity_rr": FieldDisplay("Conductivity RR", "mS/cm", 2),
    "duration_s": FieldDisplay("Milking time", "s", 0),
    # water (water-flow), RFID (rfid-reader)
    "flow_lpm": FieldDisplay("Flow", "l/min", 1),
    "total_l": FieldDisplay("Total", "l", 0),
    "antenna": FieldDisplay("Antenna", "", 0),
    "rssi_dbm": FieldDisplay("Signal", "dBm", 0),
}
_SUFFIX_UNITS = {"_c": "°C", "_pct": "%", "_v": "V", "_l": "l", "_kg": "kg", "_s": "s",
                 "_min": "min", "_dbm": "dBm", "_lpm": "l/min"}
# Firmware name -> the part of the page its devices belong to.
GROUPS = {
    "bulk-tank": "tank",
    "barn-climate": "climate",
    "neck-collar": "collar",
    "milk-meter": "milk",
}
# Fields not worth a line of their own in a reading summary.
QUIET = frozenset({"battery_v", "rssi_dbm", "antenna"})
LOW_BATTERY_V = 2.6


def field_display(name: str) -> FieldDisplay:
    known = FIELDS.get(name)
    if known is not None:
        return known
    for suffix, unit in _SUFFIX_UNITS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return FieldDisplay(name[: -len(suffix)].replace("_", " ").capitalize(), unit, 2)
    return FieldDisplay(name.replace("_", " ").capitalize(), "", 2)


def value_text(name: str, value: Any) -> str:
    """``3.55394025`` as ``3.6 °C``; ``1.0`` as ``on`` for a switch."""
    spec = field_display(name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    if spec.switch:
        return "on" if value else "off"
    text = f"{value:,.{spec.digits}f}".replace(",", "\u2009")  # thin space: no wrap break
    return f"{text}\u00a0{spec.unit}" if spec.unit else text


def age_text(seconds: Any) -> str:
    """``40 s ago``, ``12 min ago``, ``3.1 h ago``, ``2 d ago``; '-' when unknown."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    s = max(0.0, float(seconds))
    if s < 90:
        text = f"{s:.0f}\u00a0s"
    elif s < 5400:
        text = f"{s / 60:.0f}\u00a0min"
    elif s < 172800:
        text = f"{s / 3600:.1f}\u00a0h"
    else:
        text = f"{s / 86400:.0f}\u00a0d"
    return f"{text} ago"


def bytes_text(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f}\u00a0{unit}"
        size /= 1024
    return f"{size:.1f}\u00a0TiB"
