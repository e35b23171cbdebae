"""Per-record validation at the central receiver.

A batch is checked as an envelope first; each record is then checked on its
own, so one bad record is answered ``rejected`` while the others are stored
(Telegraf #15908 is the loop this prevents). Validation also refuses what the
databases would choke on later (NaN, NUL characters, lone surrogates, numbers
outside BIGINT), because a database error would fail the whole batch with 503
and the gateway would resend the poison record forever.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.records.protocol import ID_PATTERN
from agent.records.types import MILK_CLASSES, QUARTERS, RecordKind

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 32
MAX_REASON = 200
# A crop rides along only for a flagged or reviewed visit: a small JPEG of the tag.
MAX_CROP_BYTES = 256 * 1024
# Frames a body condition score was voted over: an hour at 30 fps is far beyond a visit.
MAX_FRAMES = 100_000
# re.fullmatch, never re.match with "$": "$" also matches before a final newline.
_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))
# The herd register's rule for a printed tag number (letters, digits, spaces and
# hyphens, 1-16): a register spelling like "12 345" must be storable.
_TAG_NUMBER = re.compile(r"[0-9A-Za-z][0-9A-Za-z -]{0,15}")

class _Common(BaseModel):
    """Fields every record carries (R6 stamp included)."""

    model_config = ConfigDict(extra="allow")

    record_id: str = Field(pattern=ID_PATTERN)
    kind: str
    wall_ts: FiniteFloat
    mono_ns: int = Field(ge=INT64_MIN, le=INT64_MAX)
    boot_id: str = Field(max_length=128)
    clock_synced: bool


class ReadingIn(_Common):
    sensor_id: str = Field(min_length=1, max_length=128)
    firmware: str = Field(min_length=1, max_length=128)
    topic: str = Field("", max_length=1024)
    values: dict[str, FiniteFloat]
    raw: dict[str, FiniteFloat] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    animal_id: str | None = Field(None, max_length=128)
    source_ts: FiniteFloat | None = None
    msg_id: str | None = Field(None, max_length=256)
    attributes: dict[str, Any] = Field(default_factory=dict)


class AlertIn(_Common):
    rule: str = Field(min_length=1, max_length=128)
    severity: Literal["info", "warning", "critical"]
    state: Literal["raised", "updated", "cleared"]
    message: str = Field(max_length=4096)
    sensor_id: str | None = Field(None, max_length=128)
    animal_id: str | None = Field(None, max_length=128)
    details: dict[str, Any] = Field(default_factory=dict)


class EventIn(_Common):
    event: str = Field(min_length=1, max_length=128)
    detail: str = Field("", max_length=4096)
    data: dict[str, Any] = Field(default_factory=dict)


class InferenceIn(_Common):
    model: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=128)
    source_id: str = Field(min_length=1, max_length=128)
    outputs: dict[str, Any]
    latency_ms: FiniteFloat | None = None
    animal_id: str | None = Field(None, max_length=128)


class IdentificationIn(_Common):
    """Which cow walked past a camera (agent.records.Identification).

    Beyond the field types: an ``identified`` or ``flagged`` visit names the tag
    number it read, a ``review`` visit claims none (a wrong number is worse than
    none), and a crop is a JPEG of at most MAX_CROP_BYTES.
    """

    camera_id: str
    visit_id: str
    status: Literal["identified", "flagged", "review"]
    confidence: FiniteFloat = Field(ge=0.0, le=1.0)
    started_wall_ts: FiniteFloat
    ended_wall_ts: FiniteFloat
    tag_number: str | None = None
    animal_id: str | None = Field(None, min_length=1, max_length=128)
    station: str | None = Field(None, min_length=1, max_length=128)
    rfid_eid: str | None = Field(None, min_length=1, max_length=64)
    rfid_agrees: bool | None = None
    flags: list[str] = Field(default_factory=list, max_length=32)
    evidence: dict[str, Any] = Field(default_factory=dict)
    model_versions: dict[str, str] = Field(default_factory=dict)
    crop_jpeg_b64: str | None = None

    @field_validator("camera_id", "visit_id")
    @classmethod
    def _is_id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("must be 1 to 128 of A-Z a-z 0-9 _ . : -")
        return value

    @field_validator("tag_number")
    @classmethod
    def _is_tag(cls, value: str | None) -> str | None:
        if value is not None and not _TAG_NUMBER.fullmatch(value):
            raise ValueError("must be 1 to 16 letters, digits, spaces or hyphens, starting "
                             "with a letter or digit")
        return value

    @field_validator("flags")
    @classmethod
    def _short_flags(cls, value: list[str]) -> list[str]:
        if any(not 0 < len(flag) <= 64 for flag in value):
            raise ValueError("each flag must be 1 to 64 characters")
        return value

    @field_validator("crop_jpeg_b64")
    @classmethod
    def _is_small_jpeg(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Refuse by length first: never decode a huge string to find it too large.
        if len(value) > (MAX_CROP_BYTES + 2) // 3 * 4:
            raise ValueError(
                f"crop is over {MAX_CROP_BYTES} bytes; send a smaller crop or none"
            )
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"crop is not valid base64 ({err})") from err
        if not data.startswith(b"\xff\xd8\xff"):
            raise ValueError("crop is not a JPEG (no FF D8 FF start)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # The visit's wall times are not compared: a gateway without a real-time
        # clock may step its clock mid-visit, and that must not lose the record.
        if self.status == "review" and self.tag_number is not None:
            raise ValueError("a review visit claims no tag_number; send it as null")
        if self.status != "review" and self.tag_number is None:
            raise ValueError(f"status {self.status} needs its tag_number (review if unread)")
        return self


def _identification_row(row: dict[str, Any]) -> None:
    """Store the crop as bytes (validated above), not as base64 text."""
    text = row.pop("crop_jpeg_b64", None)
    row["crop_jpeg"] = None if text is None else base64.b64decode(text, validate=True)


def _is_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError("must be 1 to 128 of A-Z a-z 0-9 _ . : -")
    return value


class BodyConditionIn(_Common):
    """A cow's body condition score from a top-view camera (agent.records.BodyCondition).

    Beyond the field types: the score and its interval lie on the 1 to 5 scale,
    ``low <= bcs <= high``, and ``quality`` is 0 to 1.
    """

    camera_id: str
    visit_id: str
    bcs: FiniteFloat = Field(ge=1.0, le=5.0)
    low: FiniteFloat = Field(ge=1.0, le=5.0)
    high: FiniteFloat = Field(ge=1.0, le=5.0)
    quality: FiniteFloat = Field(ge=0.0, le=1.0)
    model: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=128)
    frames: int = Field(1, ge=1, le=MAX_FRAMES)
    animal_id: str | None = Field(None, min_length=1, max_length=128)
    details: dict[str, Any] = Field(default_factory=dict)

    _ids = field_validator("camera_id", "visit_id")(_is_id)

    @model_validator(mode="after")
    def _inside_its_interval(self) -> Self:
        if not self.low <= self.bcs <= self.high:
            raise ValueError(
                f"bcs {self.bcs} must lie within its interval low {self.low} .. high {self.high}"
            )
        return self


class MilkCheckIn(_Common):
    """The colour and consistency of one milk sample (agent.records.MilkCheck).

    Beyond the field types: ``result`` and every key of ``scores`` are classes of
    MILK_CLASSES, each score is 0 to 1, and ``quarter`` is one of QUARTERS or null.
    """

    camera_id: str
    result: str
    confidence: FiniteFloat = Field(ge=0.0, le=1.0)
    model: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=128)
    animal_id: str | None = Field(None, min_length=1, max_length=128)
    quarter: str | None = None
    scores: dict[str, FiniteFloat] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)

    _ids = field_validator("camera_id")(_is_id)

    @field_validator("result")
    @classmethod
    def _is_class(cls, value: str) -> str:
        if value not in MILK_CLASSES:
            raise ValueError(f"must be one of {', '.join(MILK_CLASSES)}")
        return value

    @field_validator("quarter")
    @classmethod
    def _is_quarter(cls, value: str | None) -> str | None:
        if value is not None and value not in QUARTERS:
            raise ValueError(f"must be one of {', '.join(QUARTERS)} or null")
        return value

    @field_validator("scores")
    @classmethod
    def _are_class_probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(k for k in value if k not in MILK_CLASSES)
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r}; classes are "
                             f"{', '.join(MILK_CLASSES)}")
        if any(not 0.0 <= score <= 1.0 for score in value.values()):
            raise ValueError("each score must be 0 to 1")
        return value


@dataclass(frozen=True, slots=True)
class KindSpec:
    """Where a kind is stored: its table and its columns (besides device_id, batch_id)."""

    kind: str
    table: str
    model: type[_Common]
    columns: tuple[str, ...]
    json_columns: frozenset[str]
    # Turns the validated fields into the row, in place, when they differ.
    to_row: Callable[[dict[str, Any]], None] | None = None


_STAMP = ("wall_ts", "mono_ns", "boot_id", "clock_synced")

KINDS: dict[str, KindSpec] = {
    RecordKind.READING: KindSpec(
        RecordKind.READING,
        "readings",
        ReadingIn,
        ("record_id", "sensor_id", "firmware", "topic", "animal_id", *_STAMP, "source_ts",
         "msg_id", "values", "raw", "units", "attributes", "extra"),
        frozenset({"values", "raw", "units", "attributes", "extra"}),
    ),
    RecordKind.ALERT: KindSpec(
        RecordKind.ALERT,
        "alerts",
        AlertIn,
        ("record_id", "rule", "severity", "state", "message", "sensor_id", "animal_id",
         *_STAMP, "details", "extra"),
        frozenset({"details", "extra"}),
    ),
    RecordKind.EVENT: KindSpec(
        RecordKind.EVENT,
        "events",
        EventIn,
        ("record_id", "event", "detail", *_STAMP, "data", "extra"),
        frozenset({"data", "extra"}),
    ),
    RecordKind.INFERENCE: KindSpec(
        RecordKind.INFERENCE,
        "inferences",
        InferenceIn,
        ("record_id", "model", "model_version", "source_id", "animal_id", *_STAMP,
         "latency_ms", "outputs", "extra"),
        frozenset({"outputs", "extra"}),
    ),
    RecordKind.IDENTIFICATION: KindSpec(
        RecordKind.IDENTIFICATION,
        "identifications",
        IdentificationIn,
        ("record_id", "camera_id", "visit_id", "status", "tag_number", "animal_id", "station",
         "rfid_eid", "rfid_agrees", "confidence", "started_wall_ts", "ended_wall_ts",
         *_STAMP, "flags", "evidence", "model_versions", "crop_jpeg", "extra"),
        frozenset({"flags", "evidence", "model_versions", "extra"}),
        _identification_row,
    ),
    RecordKind.BODY_CONDITION: KindSpec(
        RecordKind.BODY_CONDITION,
        "body_conditions",
        BodyConditionIn,
        ("record_id", "camera_id", "visit_id", "animal_id", "bcs", "low", "high", "quality",
         "frames", "model", "model_version", *_STAMP, "details", "extra"),
        frozenset({"details", "extra"}),
    ),
    RecordKind.MILK_CHECK: KindSpec(
        RecordKind.MILK_CHECK,
        "milk_checks",
        MilkCheckIn,
        ("record_id", "camera_id", "animal_id", "quarter", "result", "confidence", "model",
         "model_version", *_STAMP, "scores", "details", "extra"),
        frozenset({"scores", "details", "extra"}),
    ),
}


@dataclass(frozen=True, slots=True)
class ValidRecord:
    """A record that passed validation: its kind and the row to insert."""

    index: int  # position in the batch
    record_id: str
    kind: str
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    index: int
    record_id: str
    reason: str


class BadEnvelope(ValueError):
    """The batch itself is malformed (answered 400 as a whole)."""


def record_id_of(index: int, data: Any) -> str:
    """The record id to answer with; a record without a usable id fails the batch.

    The gateway matches results by record id, so a result it cannot match would
    leave that record waiting forever; a 400 makes the bug visible instead.
    """
    if not isinstance(data, dict):
        raise BadEnvelope(f"records[{index}] is not an object")
    record_id = data.get("record_id")
    if not isinstance(record_id, str) or not record_id or len(record_id) > 256:
        raise BadEnvelope(f"records[{index}].record_id is missing or not a short string")
    return record_id


def validate_record(index: int, data: Any) -> ValidRecord | InvalidRecord:
    """Check one record; never raises for bad record content (only for a bad envelope)."""
    record_id = record_id_of(index, data)
    if data.get("kind") == RecordKind.READING:
        row = _plain_reading(data)
        if row is not None:
            return ValidRecord(index, record_id, RecordKind.READING.value, row)
    return validate_with_model(index, record_id, data)


def validate_with_model(index: int, record_id: str, data: dict[str, Any]) -> ValidRecord | InvalidRecord:
    """The general path: the JSON walk, then the kind's pydantic model."""
    problem = json_problem(data)
    if problem:
        return InvalidRecord(index, record_id, problem)
    kind = data.get("kind")
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        return InvalidRecord(index, record_id, _cap(f"unknown_kind: {kind!r}"))
    try:
        model = spec.model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        return InvalidRecord(index, record_id, _cap(f"invalid {kind}: {where}: {first['msg']}"))
    row = model.model_dump(exclude={"kind"})
    extra = dict(model.model_extra or {})
    for key in list(row):
        if key in extra:
            row.pop(key)
    row["extra"] = extra
    if spec.to_row is not None:
        spec.to_row(row)
    return ValidRecord(index, record_id, str(spec.kind), {c: row.get(c) for c in spec.columns})


# -- readings without pydantic ---------------------------------------------------
# Nearly every record is a reading, and pydantic (validate, dump, then the JSON
# walk above) was most of the receiver's CPU per record. A reading made only of
# the plain shapes a gateway sends (no extra keys, exact types) is checked here
# by hand to the same rules; anything else, valid or not, takes the path below,
# so reasons for refusals are pydantic's as before. tests/test_central_validate_fast.py
# holds the two paths to the same answers.
_READING_KEYS = frozenset(ReadingIn.model_fields)


def _clean(value: Any) -> bool:
    """A str PostgreSQL and SQLite take (no NUL, no lone surrogate)."""
    return (type(value) is str and "\x00" not in value
            and (value.isascii() or _text_problem(value) is None))


def _finite(value: Any) -> float | None:
    """``value`` as FiniteFloat takes it (an int becomes a float), or None."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return float(value)
    return None


def _numbers(value: Any) -> dict[str, float] | None:
    if type(value) is not dict:
        return None
    # The usual case, taken as it is: every value a finite float, every key ASCII.
    if all(type(item) is float and math.isfinite(item) for item in value.values()):
        try:
            keys = "".join(value)
        except TypeError:
            return None  # a key that is not a str (never from JSON)
        if keys.isascii() and "\x00" not in keys:
            return value
    out: dict[str, float] = {}
    for key, item in value.items():
        number = _finite(item)
        if number is None or not _clean(key):
            return None
        out[key] = number
    return out


def _plain_reading(data: dict[str, Any]) -> dict[str, Any] | None:
    """The row of a plain, valid reading, exactly as the pydantic path makes it; else None."""
    if not data.keys() <= _READING_KEYS:
        return None  # extra fields: the general path keeps them in "extra"
    get = data.get
    record_id = get("record_id")
    wall_ts = _finite(get("wall_ts"))
    mono_ns = get("mono_ns")
    boot_id = get("boot_id")
    clock_synced = get("clock_synced")
    sensor_id = get("sensor_id")
    firmware = get("firmware")
    topic = get("topic", "")
    values = _numbers(get("values"))
    raw = _numbers(get("raw", {}))
    units = get("units", {})
    animal_id = get("animal_id")
    source_ts = get("source_ts")
    msg_id = get("msg_id")
    attributes = get("attributes", {})
    if (
        type(record_id) is not str or _ID.fullmatch(record_id) is None
        or wall_ts is None or values is None or raw is None
        or type(mono_ns) is not int or not INT64_MIN <= mono_ns <= INT64_MAX
        or type(clock_synced) is not bool
        or type(boot_id) is not str or len(boot_id) > 128
        or type(sensor_id) is not str or not 0 < len(sensor_id) <= 128
        or type(firmware) is not str or not 0 < len(firmware) <= 128
        or type(topic) is not str or len(topic) > 1024
        or (animal_id is not None and (type(animal_id) is not str or len(animal_id) > 128))
        or (msg_id is not None and (type(msg_id) is not str or len(msg_id) > 256))
        or type(units) is not dict or type(attributes) is not dict
    ):
        return None
    if source_ts is not None:
        source_ts = _finite(source_ts)
        if source_ts is None:
            return None
    try:
        # Every text at once: a NUL or a lone surrogate in any is one in the whole.
        text = "".join((boot_id, sensor_id, firmware, topic, animal_id or "", msg_id or "",
                        *units, *units.values()))
    except TypeError:
        return None  # a unit that is not a str
    if not _clean(text):
        return None
    if attributes and json_problem(attributes, 1) is not None:
        return None
    return {
        "record_id": record_id, "sensor_id": sensor_id, "firmware": firmware, "topic": topic,
        "animal_id": animal_id, "wall_ts": wall_ts, "mono_ns": mono_ns, "boot_id": boot_id,
        "clock_synced": clock_synced, "source_ts": source_ts, "msg_id": msg_id,
        "values": values, "raw": raw, "units": dict(units), "attributes": attributes,
        "extra": {},
    }


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` cannot be stored as JSON in PostgreSQL and SQLite, or None."""
    if depth > MAX_JSON_DEPTH:
        return "too_deep"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else "number_out_of_range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "non_finite_number"
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, list):
        for item in value:
            problem = json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key) or json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return "unsupported_type"


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "nul_character"  # PostgreSQL text and jsonb refuse U+0000
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_unicode"  # a lone surrogate from a \\ud800 escape
    return None


def _cap(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."
