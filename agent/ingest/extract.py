"""Decoded wire values -> checked, scaled reading values.

The firmware spec is compiled once into plain tuples so the per-message loop
does no attribute look-ups on pydantic models.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InvalidPayload
from agent.ingest.firmware import SAFE_ID_RE, FieldSpec, FirmwareSpec

_MISSING = object()


@dataclass(slots=True)
class Extracted:
    raw: dict[str, float] = field(default_factory=dict)
    msg_parts: list[str] = field(default_factory=list)
    animal_id: str | None = None
    source_ts: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


# (name, wire key, type, role, scale, lo, hi, required, choices)
FieldPlan = tuple[str, str, str, str, float, float, float, bool, dict[str, float] | None]


def compile_fields(spec: FirmwareSpec) -> list[FieldPlan]:
    plan: list[FieldPlan] = []
    for f in spec.fields:
        # Finite default bounds, so a value that scaled to infinity is out of range.
        lo, hi = f.range if f.range is not None else (-sys.float_info.max, sys.float_info.max)
        plan.append((f.name, f.wire_key, f.type, f.role, f.scale, lo, hi, f.required, f.choices))
    return plan


def units_of(spec: FirmwareSpec) -> dict[str, str]:
    return {f.name: f.unit for f in spec.fields if f.role == "value"}


def _check_id(name: str, value: Any) -> str:
    if isinstance(value, bool):
        raise InvalidPayload("bad_type", f"{name} is a boolean, not an id")
    if isinstance(value, int):
        if value < 0:
            raise InvalidPayload("bad_id", f"{name} is negative")
        value = str(value)
    elif not isinstance(value, str):
        raise InvalidPayload("bad_type", f"{name} is {type(value).__name__}, not an id")
    if not SAFE_ID_RE.fullmatch(value):
        raise InvalidPayload("bad_id", f"{name} fails the id allowlist")
    return value


def extract(plan: list[FieldPlan], data: dict[str, Any]) -> Extracted:
    """Check every field of ``plan`` in ``data``; raise InvalidPayload on the first defect."""
    # Locals, not the result's attributes, in the loop: it runs for every field.
    raw: dict[str, float] = {}
    msg_parts: list[str] = []
    attributes: dict[str, Any] = {}
    animal_id: str | None = None
    source_ts: float | None = None
    get = data.get
    for name, key, kind, role, scale, lo, hi, required, choices in plan:
        value = get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise InvalidPayload("missing_field", f"{key} is missing")
            continue
        number: float
        if kind == "number":
            if type(value) is float:
                if not math.isfinite(value):
                    raise InvalidPayload("non_finite", f"{key} is {value}")
                number = round(value * scale, 9)
            elif type(value) is int:
                try:
                    number = round(float(value) * scale, 9)
                except OverflowError:
                    raise InvalidPayload("out_of_range", f"{key} is far too large") from None
            else:
                raise InvalidPayload("bad_type", f"{key} is {type(value).__name__}, not a number")
        elif kind == "integer":
            if type(value) is not int:
                raise InvalidPayload("bad_type", f"{key} is {type(value).__name__}, not an integer")
            if role in ("msg_id", "animal_id"):
                if not lo <= value <= hi or value < 0:
                    raise InvalidPayload("out_of_range", f"{key} is outside [{lo}, {hi}]")
                text = str(value)
                if role == "msg_id":
                    msg_parts.append(text)
                else:
                    animal_id = text
                continue
            try:
                number = round(float(value) * scale, 9)
            except OverflowError:
                raise InvalidPayload("out_of_range", f"{key} is far too large") from None
        elif kind == "boolean":
            if type(value) is not bool:
                raise InvalidPayload("bad_type", f"{key} is {type(value).__name__}, not a bool")
            number = 1.0 if value else 0.0
        elif kind == "enum":
            if type(value) is not str or choices is None or value not in choices:
                raise InvalidPayload("bad_type", f"{key} is not one of its choices")
            number = choices[value]
            attributes[name] = value
        else:  # id
            text = _check_id(key, value)
            if role == "msg_id":
                msg_parts.append(text)
            elif role == "animal_id":
                animal_id = text
            else:
                attributes[name] = text
            continue
        if not lo <= number <= hi:
            raise InvalidPayload("out_of_range", f"{key}={number:g} outside [{lo:g}, {hi:g}]")
        if role == "value":
            raw[name] = number
        elif role == "source_ts":
            source_ts = number
        elif role == "msg_id":
            msg_parts.append(repr(value))
        else:
            attributes[name] = value
    return Extracted(raw, msg_parts, animal_id, source_ts, attributes)


def field_names(spec: FirmwareSpec) -> set[str]:
    return {f.name for f in spec.fields if f.role == "value" and _numeric(f)}


def _numeric(f: FieldSpec) -> bool:
    return f.type in ("number", "integer")
