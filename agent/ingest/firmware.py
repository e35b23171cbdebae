"""Firmware specs: how each kind of sensor node talks (firmware_configs/*.yaml).

A spec names the topic pattern, the payload format and every field with its
unit, scale and physical range. Specs are validated once at start-up; errors
name the file and the key so a technician can fix the YAML.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import ConfigError

SAFE_ID = r"^[A-Za-z0-9_-]{1,64}$"
SAFE_ID_RE = re.compile(SAFE_ID)
FIELD_NAME = r"^[a-z][a-z0-9_]{0,63}$"
SENSOR_PLACEHOLDER = "{sensor_id}"
# Struct codes a frame may use: fixed-size integers, floats and byte strings.
_STRUCT_CODE = re.compile(r"^(?:[bBhHiIqQef?]|[1-9][0-9]?s)$")

FieldType = Literal["number", "integer", "boolean", "enum", "id"]
FieldRole = Literal["value", "msg_id", "animal_id", "source_ts", "attribute"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One field of a payload."""

    name: str = Field(pattern=FIELD_NAME, description="Name in the reading.")
    key: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Key on the wire (JSON key, CSV column, frame entry); the name when empty.",
    )
    type: FieldType = "number"
    role: FieldRole = Field("value", description="Where the decoded value goes.")
    unit: str = Field("", max_length=16)
    scale: float = Field(1.0, description="Wire value times scale gives the unit value.")
    range: tuple[float, float] | None = Field(
        None, description="Physical range [min, max] after scaling; outside is out_of_range."
    )
    required: bool = True
    choices: dict[str, float] | None = Field(
        None, description="enum only: wire string -> numeric value in the reading."
    )

    @property
    def wire_key(self) -> str:
        return self.key or self.name

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum field needs choices")
        if self.type != "enum" and self.choices:
            raise ValueError("choices only apply to enum fields")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError("range must be [min, max]")
        if self.role == "animal_id" and self.type not in ("id", "integer"):
            raise ValueError("an animal_id field must be of type id or integer")
        if self.role == "source_ts" and self.type not in ("number", "integer"):
            raise ValueError("a source_ts field must be numeric")
        return self


class CsvSpec(_Strict):
    tag: str = Field(min_length=1, max_length=16, description="Literal first column.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: list[str] = Field(min_length=1, description="Wire keys after the tag, in order.")


class LayoutEntry(_Strict):
    name: str = Field(min_length=1, max_length=64)
    struct: str = Field(description="Python struct code: B H I Q b h i q e f ? or Ns.")
    offset: int = Field(ge=0, description="Byte offset, checked against the codes before it.")

    @model_validator(mode="after")
    def _check(self) -> LayoutEntry:
        if not _STRUCT_CODE.fullmatch(self.struct):
            raise ValueError(f"unsupported struct code {self.struct!r}")
        return self


class BinarySpec(_Strict):
    byteorder: Literal["little", "big"] = "little"
    magic: str = Field(min_length=1, max_length=8, description="ASCII bytes at offset 0.")
    version: int = Field(ge=0, le=255, description="Expected value of the 'version' entry.")
    crc: Literal["crc16-ccitt-false"] = Field(
        "crc16-ccitt-false", description="Checksum in the last entry, over all bytes before it."
    )
    layout: list[LayoutEntry] = Field(min_length=3)

    @property
    def struct_format(self) -> str:
        order = "<" if self.byteorder == "little" else ">"
        return order + "".join(entry.struct for entry in self.layout)

    @property
    def length(self) -> int:
        return struct.calcsize(self.struct_format)

    @model_validator(mode="after")
    def _check(self) -> BinarySpec:
        order = "<" if self.byteorder == "little" else ">"
        offset = 0
        for entry in self.layout:
            if entry.offset != offset:
                raise ValueError(
                    f"layout entry {entry.name!r}: offset is {offset}, not {entry.offset}"
                )
            offset += struct.calcsize(order + entry.struct)
        names = [entry.name for entry in self.layout]
        if names[0] != "magic" or self.layout[0].struct != f"{len(self.magic)}s":
            raise ValueError("the first layout entry must be 'magic' of the magic's length")
        if "version" not in names:
            raise ValueError("the layout needs a 'version' entry")
        if names[-1] != "crc" or self.layout[-1].struct != "H":
            raise ValueError("the last layout entry must be 'crc' (H)")
        if len(set(names)) != len(names):
            raise ValueError("layout names must be unique")
        return self


class FirmwareSpec(_Strict):
    """One sensor-node firmware."""

    firmware: str = Field(pattern=SAFE_ID, description="Stable name, stored with each reading.")
    model: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=32)
    kind: str = Field(pattern=SAFE_ID, description="What it measures (climate, tank, ...).")
    topic: str = Field(
        description="Topic pattern with one whole level '{sensor_id}', e.g. barn/climate/{sensor_id}."
    )
    format: Literal["json", "csv", "binary"]
    sampling_period_s: float = Field(gt=0, description="How often a node sends.")
    fields: list[FieldSpec] = Field(min_length=1)
    csv: CsvSpec | None = None
    binary: BinarySpec | None = None

    @model_validator(mode="after")
    def _check(self) -> FirmwareSpec:
        levels = self.topic.split("/")
        if levels.count(SENSOR_PLACEHOLDER) != 1 or self.topic.count("{") != 1:
            raise ValueError("topic needs exactly one whole level '{sensor_id}'")
        for level in levels:
            if level != SENSOR_PLACEHOLDER and not SAFE_ID_RE.fullmatch(level):
                raise ValueError(f"topic level {level!r} is not a plain name")
        if (self.format == "csv") != (self.csv is not None):
            raise ValueError("a csv section is required for format csv, and only then")
        if (self.format == "binary") != (self.binary is not None):
            raise ValueError("a binary section is required for format binary, and only then")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        keys = [f.wire_key for f in self.fields]
        if len(set(keys)) != len(keys):
            raise ValueError("field keys must be unique")
        if sum(1 for f in self.fields if f.role == "animal_id") > 1:
            raise ValueError("at most one animal_id field")
        if sum(1 for f in self.fields if f.role == "source_ts") > 1:
            raise ValueError("at most one source_ts field")
        if self.csv is not None:
            missing = set(keys) - set(self.csv.columns)
            if missing:
                raise ValueError(f"fields not in csv columns: {sorted(missing)}")
        if self.binary is not None:
            layout = {entry.name for entry in self.binary.layout}
            missing = set(keys) - layout
            if missing:
                raise ValueError(f"fields not in the binary layout: {sorted(missing)}")
        return self

    @property
    def msg_id_fields(self) -> list[FieldSpec]:
        """Fields that together make the device's message id, in order (R1)."""
        return [f for f in self.fields if f.role == "msg_id"]

    def topic_for(self, prefix: str | None = None) -> str:
        """The topic pattern, its first level replaced by ``prefix`` when given."""
        if not prefix:
            return self.topic
        head, sep, rest = self.topic.partition("/")
        if head == SENSOR_PLACEHOLDER:
            return self.topic
        return prefix + sep + rest

    def subscription(self, prefix: str | None = None) -> str:
        return self.topic_for(prefix).replace(SENSOR_PLACEHOLDER, "+")


def compose_msg_id(parts: list[str]) -> str:
    """The message id from its parts; a boot counter plus a sequence becomes 'boot:seq'."""
    return ":".join(parts)


# libyaml's parser when PyYAML has it: six times faster on these files, with
# the same (Python) constructor. A file it refuses is parsed again by the pure
# Python loader, so the error reported is that loader's. libyaml accepts a few
# inputs the pure loader refuses (a tab inside a flow list, ``[1,\t2]``): such
# a file loads where PyYAML has its C extension and is refused where it has
# not. The shipped files parse the same with both (tests/test_ingest_firmware.py).
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> object:
    """``yaml.safe_load(text)``, sooner."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # a safe loader, C or Python
    except yaml.YAMLError:
        return yaml.safe_load(text)


def load_firmware(path: Path) -> FirmwareSpec:
    """One spec from a YAML file; ConfigError names the file and the key."""
    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return FirmwareSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(path, err)) from err


def load_firmware_dir(folder: Path) -> list[FirmwareSpec]:
    """Every *.yaml in ``folder``, sorted by file name; names and topics must be unique."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: firmware folder does not exist")
    specs: list[FirmwareSpec] = []
    seen: dict[str, Path] = {}
    topics: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = load_firmware(path)
        if spec.firmware in seen:
            raise ConfigError(
                f"{path}: firmware: {spec.firmware!r} is also defined in {seen[spec.firmware]}"
            )
        if spec.topic in topics:
            raise ConfigError(f"{path}: topic: {spec.topic!r} is also used in {topics[spec.topic]}")
        seen[spec.firmware] = path
        topics[spec.topic] = path
        specs.append(spec)
    if not specs:
        raise ConfigError(f"{folder}: no firmware *.yaml files")
    return specs


def _describe(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid firmware spec"]
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<top>"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)
