"""Records: what one sensor message, alert, inference or event becomes.

Every record has a stable ``record_id`` (R1: derived from the device's message
id or sequence, else a hash of topic and payload; never a random id assigned on
arrival, or a redelivery would become a duplicate) and a ``Stamp`` with the
wall time, monotonic time, boot id and clock-synced flag (R6).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any


class RecordKind(StrEnum):
    READING = "reading"
    ALERT = "alert"
    EVENT = "event"
    INFERENCE = "inference"
    IDENTIFICATION = "identification"
    BODY_CONDITION = "body_condition"
    MILK_CHECK = "milk_check"


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a record was made, in every clock we have."""

    wall_ts: float
    mono_ns: int
    boot_id: str
    clock_synced: bool


def stable_id(*parts: str | bytes) -> str:
    """A 32-hex-digit id from the given parts; the same parts give the same id.

    Each part is hashed as its length (8 bytes, big-endian) then its bytes.
    """
    chunks: list[bytes] = []
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        chunks.append(len(data).to_bytes(8, "big"))
        chunks.append(data)
    return hashlib.sha256(b"".join(chunks)).hexdigest()[:32]


@dataclass(slots=True)
class Reading:
    """One sensor message, parsed, validated and calibrated.

    ``values`` are corrected by calibration; ``raw`` keeps what the sensor sent
    (after unit scaling) so a calibration error can be undone later.
    """

    record_id: str
    sensor_id: str
    firmware: str
    topic: str
    values: dict[str, float]
    raw: dict[str, float]
    units: dict[str, str]
    stamp: Stamp
    animal_id: str | None = None
    source_ts: float | None = None
    msg_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    kind = RecordKind.READING

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


@dataclass(slots=True)
class Alert:
    """A condition staff should act on, raised by a detector or a dairy rule."""

    record_id: str
    rule: str
    severity: str  # "info" | "warning" | "critical"
    state: str  # "raised" | "updated" | "cleared"
    message: str
    stamp: Stamp
    sensor_id: str | None = None
    animal_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    kind = RecordKind.ALERT

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


@dataclass(slots=True)
class Event:
    """Something the agent itself noticed: a session gap, a storage fault, a restart."""

    record_id: str
    event: str
    detail: str
    stamp: Stamp
    data: dict[str, Any] = field(default_factory=dict)

    kind = RecordKind.EVENT

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


@dataclass(slots=True)
class Inference:
    """The output of a model on one input (a frame, a window of readings)."""

    record_id: str
    model: str
    model_version: str
    source_id: str
    outputs: dict[str, Any]
    stamp: Stamp
    latency_ms: float | None = None
    animal_id: str | None = None

    kind = RecordKind.INFERENCE

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


@dataclass(slots=True)
class Identification:
    """Which cow walked past a camera: one record per visit, voted over its frames.

    ``status`` says what may be trusted:
      identified  the number is read with confidence, matches the tag format and,
                  when a register or an RFID read exists, agrees with them;
      flagged     read with confidence but not in the register, or disagreeing with
                  the RFID read (``flags`` say which); staff should look;
      review      tags were seen but not read with enough confidence: nothing is
                  claimed (``tag_number`` is None), the crops wait in the review queue.
    ``record_id`` is derived from the camera and the visit, so a re-emitted visit
    is a duplicate, never a second identification.
    """

    record_id: str
    camera_id: str
    visit_id: str
    status: str  # "identified" | "flagged" | "review"
    confidence: float
    stamp: Stamp
    started_wall_ts: float
    ended_wall_ts: float
    tag_number: str | None = None
    animal_id: str | None = None
    station: str | None = None
    rfid_eid: str | None = None
    rfid_agrees: bool | None = None
    flags: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)
    crop_jpeg_b64: str | None = None

    kind = RecordKind.IDENTIFICATION

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


@dataclass(slots=True)
class BodyCondition:
    """A cow's body condition score (1-5) from a top-view camera: one per visit.

    ``low``/``high`` bound the score (the model's calibrated interval, clipped
    to 1-5); ``quality`` (0-1) says how well the cow was seen (segmentation,
    straightness, how much of the back was in view). ``animal_id`` comes from
    the visit's identification when there was one. ``record_id`` is derived
    from the camera and the visit, so a re-emitted visit is a duplicate.
    """

    record_id: str
    camera_id: str
    visit_id: str
    bcs: float
    low: float
    high: float
    quality: float
    stamp: Stamp
    model: str
    model_version: str
    frames: int = 1
    animal_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    kind = RecordKind.BODY_CONDITION

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


@dataclass(slots=True)
class MilkCheck:
    """The colour and consistency of one milk sample seen by a camera.

    ``result`` is one of ``MILK_CLASSES``; ``scores`` the probability of every
    class; ``quarter`` (``LF``, ``RF``, ``LR``, ``RR``) when the station knows it.
    """

    record_id: str
    camera_id: str
    result: str
    confidence: float
    stamp: Stamp
    model: str
    model_version: str
    animal_id: str | None = None
    quarter: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    kind = RecordKind.MILK_CHECK

    def to_dict(self) -> dict[str, Any]:
        return _flatten(self)


# What a milk check can say, "normal" first; every other class is a reason to
# divert the milk and look at the udder.
MILK_CLASSES: tuple[str, ...] = ("normal", "blood", "colostrum", "watery", "clots")
QUARTERS: tuple[str, ...] = ("LF", "RF", "LR", "RR")


@dataclass(slots=True)
class Quarantined:
    """A message that could not become a record, kept verbatim with the reason."""

    record_id: str
    topic: str
    payload: bytes
    reason: str
    detail: str
    stamp: Stamp


Record = Reading | Alert | Event | Inference | Identification | BodyCondition | MilkCheck


_SCALARS = frozenset({str, int, float, bool, type(None)})
# Field names per record class, in declaration order, without the stamp.
_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """What ``dataclasses.asdict`` makes of a field value, without its generic
    deep copy: scalars as they are, dicts and lists copied (recursively),
    nested dataclasses as dicts, anything else deep-copied."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict:
        return {k: v if type(v) in _SCALARS else _plain(v) for k, v in value.items()}
    if t is list:
        return [v if type(v) in _SCALARS else _plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return t(*[_plain(v) for v in value])
    if isinstance(value, list | tuple):
        return t(_plain(v) for v in value)
    if isinstance(value, dict):
        return t((_plain(k), _plain(v)) for k, v in value.items())
    return copy.deepcopy(value)


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls) if f.name != "stamp")
    return names


def _flatten(record: Record) -> dict[str, Any]:
    """The JSON-ready form used in sync batches: the stamp's fields inlined.

    The same dict ``dataclasses.asdict`` gives (keys in the same order, nested
    values copied), built directly: asdict's generic recursion and deep copies
    were most of the cost of storing a reading.
    """
    data = {}
    for name in _names(type(record)):
        value = getattr(record, name)
        data[name] = value if type(value) in _SCALARS else _plain(value)
    st = record.stamp
    data["wall_ts"] = st.wall_ts
    data["mono_ns"] = st.mono_ns
    data["boot_id"] = st.boot_id
    data["clock_synced"] = st.clock_synced
    data["kind"] = str(record.kind)
    return data
