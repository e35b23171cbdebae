"""Payload decoders: bytes on the wire -> a mapping of wire key to Python value.

Each decoder is strict and raises ``InvalidPayload`` with a stable reason code.
They run on the MQTT network thread, so the common path is a few C calls.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import struct
from collections.abc import Callable
from typing import Any

from agent.errors import InvalidPayload
from agent.ingest.firmware import BinarySpec, CsvSpec, FieldSpec

Decoder = Callable[[bytes], dict[str, Any]]

_INT_RE = re.compile(r"-?[0-9]+", re.ASCII)
_NUM_RE = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
_NON_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidPayload("duplicate_key", f"key {key[:64]!r} appears twice")
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    raise InvalidPayload("non_finite", f"{name} is not a number a sensor can send")


_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
# The C scanner builds dicts itself when there is no pairs hook: several times faster.
_scan: Callable[[str, int], tuple[Any, int]] = (
    json.JSONDecoder(parse_constant=_reject_constant).scan_once  # type: ignore[attr-defined]
)


def _depth(obj: Any, limit: int, level: int = 1) -> int:
    """Nesting depth of ``obj`` (a scalar is 0), stopping once past ``limit``."""
    if isinstance(obj, dict):
        children: Any = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return level - 1
    deepest = level
    if level > limit:
        return level
    for child in children:
        if isinstance(child, dict | list):
            deepest = max(deepest, _depth(child, limit, level + 1))
            if deepest > limit:
                break
    return deepest


def decode_utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidPayload("bad_encoding", f"not UTF-8 at byte {err.start}") from None


def json_decoder(max_depth: int) -> Decoder:
    """A decoder for one JSON object per message."""

    def decode(payload: bytes) -> dict[str, Any]:
        text = decode_utf8(payload)
        # Fast path for a flat object (the common sensor message): decoded without
        # the duplicate-key hook, then proven free of duplicates by counting. Every
        # key is followed by a colon, so ``colons >= pairs on the wire >= keys kept``;
        # when the colons equal the keys kept, no key was repeated. Anything else
        # (nesting, a colon inside a string, an error) takes the strict path below.
        if text[:1] == "{" and payload.count(b"{") == 1 and b"[" not in payload:
            try:
                obj, end = _scan(text, 0)
            except (StopIteration, ValueError):
                obj, end = None, 0
            if end == len(text) and type(obj) is dict and payload.count(b":") == len(obj):
                return obj
        try:
            obj = _JSON.decode(text)
        except RecursionError:
            raise InvalidPayload("too_deep", "nesting exceeds the parser's limit") from None
        except ValueError as err:
            raise InvalidPayload("bad_json", str(err)[:200]) from None
        # Counting brackets is C-fast; walk the tree only when it could be too deep.
        opened = payload.count(b"{") + payload.count(b"[")
        if opened > max_depth and _depth(obj, max_depth) > max_depth:
            raise InvalidPayload("too_deep", f"nesting deeper than {max_depth}")
        if not isinstance(obj, dict):
            raise InvalidPayload("bad_type", f"top level is {type(obj).__name__}, not an object")
        return obj

    return decode


def _csv_value(text: str, field: FieldSpec | None) -> Any:
    """One CSV column as the Python value a JSON payload would carry."""
    if field is None or field.type in ("id", "enum"):
        return text
    if field.type == "integer":
        if _INT_RE.fullmatch(text):
            return int(text)
    elif field.type == "number":
        if _NUM_RE.fullmatch(text):
            return float(text)
    elif field.type == "boolean" and text in ("0", "1", "true", "false"):
        return text in ("1", "true")
    if text.strip().lstrip("+-").lower() in _NON_FINITE_WORDS:
        raise InvalidPayload("non_finite", f"column {field.wire_key!r} is {text[:16]!r}")
    raise InvalidPayload("bad_type", f"column {field.wire_key!r} is not {field.type}")


def csv_decoder(spec: CsvSpec, fields: list[FieldSpec]) -> Decoder:
    """A decoder for one delimited line: the tag, then ``spec.columns`` in order."""
    by_key = {f.wire_key: f for f in fields}
    columns = [(name, by_key.get(name)) for name in spec.columns]
    width = len(columns) + 1

    def decode(payload: bytes) -> dict[str, Any]:
        text = decode_utf8(payload)
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        parts = text.split(spec.delimiter)
        if parts[0] != spec.tag:
            raise InvalidPayload("bad_frame", f"line does not start with {spec.tag!r}")
        if len(parts) > width:
            raise InvalidPayload("bad_frame", f"{len(parts)} columns, expected {width}")
        out: dict[str, Any] = {}
        # Missing trailing columns are absent keys: the field check reports them.
        for (name, field), text_value in zip(columns, parts[1:], strict=False):
            if text_value != "":
                out[name] = _csv_value(text_value, field)
        return out

    return decode


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as most MCU libraries compute it."""
    return binascii.crc_hqx(data, 0xFFFF)


def binary_decoder(spec: BinarySpec) -> Decoder:
    """A decoder for a fixed-length packed frame with magic, version and CRC."""
    frame = struct.Struct(spec.struct_format)
    names = [entry.name for entry in spec.layout]
    magic = spec.magic.encode("ascii")
    crc_at = frame.size - 2
    # The entries that unpack as floats (half, single, double): the only ones that
    # can carry NaN or infinity. Found by unpacking an all-zero frame.
    floats = [k for k, v in dict(zip(names, frame.unpack(bytes(frame.size)), strict=True)).items()
              if isinstance(v, float)]

    def decode(payload: bytes) -> dict[str, Any]:
        if len(payload) != frame.size:
            raise InvalidPayload("bad_frame", f"{len(payload)} bytes, expected {frame.size}")
        if not payload.startswith(magic):
            raise InvalidPayload("bad_frame", "wrong magic")
        values = dict(zip(names, frame.unpack(payload), strict=True))
        if values["crc"] != crc16_ccitt_false(payload[:crc_at]):
            raise InvalidPayload("bad_frame", "CRC mismatch")
        if values["version"] != spec.version:
            raise InvalidPayload("bad_frame", f"frame version {values['version']}")
        for key in floats:
            value = values[key]
            if not math.isfinite(value):
                raise InvalidPayload("non_finite", f"{key} is {value}")
        return values

    return decode


def encode_binary(spec: BinarySpec, values: dict[str, Any]) -> bytes:
    """A frame from ``values`` (magic, version and crc filled in); the simulator's encoder."""
    frame = struct.Struct(spec.struct_format)
    full = dict(values)
    full["magic"] = spec.magic.encode("ascii")
    full["version"] = full.get("version", spec.version)
    full["crc"] = 0
    body = frame.pack(*(full[entry.name] for entry in spec.layout))
    crc = crc16_ccitt_false(body[:-2])
    order: Any = spec.byteorder
    return body[:-2] + crc.to_bytes(2, order)
