"""How a reading is shown: a display name, a unit and a rounding for each
firmware field (the names and units of ``firmware_configs/*.yaml``), on/off
for switches, ages as "40 s ago". Unknown fields fall back to their name with
the unit its suffix gives (``_c`` -> degC), so a new firmware still reads well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.web.i18n import N_, _, number


@dataclass(frozen=True, slots=True)
class FieldDisplay:
    label: str
    unit: str = ""
    digits: int = 1
    switch: bool = False


# name -> how to show it; the unit strings as the firmware configs give them.
FIELDS: dict[str, FieldDisplay] = {
    # bulk tank (firmware bulk-tank)
    "milk_temp_c": FieldDisplay(N_("Milk temperature"), "°C", 1),
    "agitator": FieldDisplay(N_("Agitator"), switch=True),
    "level_l": FieldDisplay(N_("Level"), "l", 0),
    "wash": FieldDisplay(N_("Wash"), switch=True),
    # barn climate (barn-climate)
    "temperature_c": FieldDisplay(N_("Temperature"), "°C", 1),
    "humidity_pct": FieldDisplay(N_("Humidity"), "%", 0),
    "battery_v": FieldDisplay(N_("Battery"), "V", 2),
    # collar (neck-collar)
    "activity": FieldDisplay(N_("Activity"), "", 0),
    "rumination_min": FieldDisplay(N_("Rumination"), "min", 0),
    # milk meter (milk-meter)
    "yield_kg": FieldDisplay(N_("Yield"), "kg", 1),
    "conductivity_lf": FieldDisplay(N_("Conductivity LF"), "mS/cm", 2),
    "conductivity_rf": FieldDisplay(N_("Conductivity RF"), "mS/cm", 2),
    "conductivity_lr": FieldDisplay(N_("Conductivity LR"), "mS/cm", 2),
    "conductivity_rr": FieldDisplay(N_("Conductivity RR"), "mS/cm", 2),
    "duration_s": FieldDisplay(N_("Milking time"), "s", 0),
    # water (water-flow), RFID (rfid-reader)
    "flow_lpm": FieldDisplay(N_("Flow"), "l/min", 1),
    "total_l": FieldDisplay(N_("Total"), "l", 0),
    "antenna": FieldDisplay(N_("Antenna"), "", 0),
    "rssi_dbm": FieldDisplay(N_("Signal"), "dBm", 0),
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


def label(name: str) -> str:
    """The field's display name in the current language."""
    return _(field_display(name).label)


def value_text(name: str, value: Any) -> str:
    """``3.55394025`` as ``3.6 °C``; ``1.0`` as ``on`` for a switch."""
    spec = field_display(name)
    if isinstance(value, bool):
        return _("on") if value else _("off")
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    if spec.switch:
        return _("on") if value else _("off")
    text = number(value, spec.digits)
    return f"{text}\u00a0{spec.unit}" if spec.unit else text


def age_text(seconds: Any) -> str:
    """``40 s ago``, ``12 min ago``, ``3.1 h ago``, ``2 d ago``; '-' when unknown."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    s = max(0.0, float(seconds))
    if s < 90:
        text = _("{n} s ago").format(n=number(s, 0))
    elif s < 5400:
        text = _("{n} min ago").format(n=number(s / 60, 0))
    elif s < 172800:
        text = _("{n} h ago").format(n=number(s / 3600, 1))
    else:
        text = _("{n} d ago").format(n=number(s / 86400, 0))
    return text.replace(" ", "\u00a0", 1)


def bytes_text(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{number(size, 0)}\u00a0{unit}"
        size /= 1024
    return f"{number(size, 1)}\u00a0TiB"
