"""The herd register: which animal carries which visual tag number and which EID.

A CSV with a header row. Column names are matched case-insensitively, with
spaces and hyphens read as underscores, so exports from herd software load as
they are:

    animal id   animal_id, animal, animalid, cow_id, cow, id
    tag number  tag_number, tag, visual_tag, visual_id, visual_number, tag_no,
                ear_tag, eartag, management_number, vid
    EID         eid, rfid, electronic_id, eid_number, ueid, iso_eid, transponder
                (optional column; an empty cell means the animal has no EID)

Commas or semicolons separate the columns (a spreadsheet in a European locale
writes semicolons); extra columns are ignored; blank lines and lines starting
with ``#`` are skipped.

Tag numbers. Tags often print leading zeros ("0042") while spreadsheets drop
them ("42"), and an OCR may miss a leading zero: all-digit numbers are matched
on their value without leading zeros, so "0042", "042" and "42" are the same
tag. Two rows whose numbers are equal this way are an error. Numbers with
letters are matched upper-cased with spaces and hyphens removed. Only leading
zeros are forgiven: any other difference is a different number.

EIDs (ISO 11784, 15 digits: country or maker code, then the national id) are
matched without spaces, hyphens or dots; an all-digit EID of 13 or 14 digits
is zero-padded to 15 on the left, because a reader or a spreadsheet that sent
it as a number lost the leading zeros of a country code like 040 or 008
(anything shorter is not an EID that lost zeros, and is refused). A cell like
``9.82E+14`` (a spreadsheet's scientific notation) lost digits and is refused.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError

MAX_BYTES = 16 * 1024 * 1024  # a register of 100 000 animals is about 4 MB
_ID_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{0,15}$")
_EID_RE = re.compile(r"^[0-9]{15}$")
_SCIENTIFIC_RE = re.compile(r"^[0-9.,]+[eE][+-]?[0-9]+$")

_ALIASES: dict[str, tuple[str, ...]] = {
    "animal_id": ("animal_id", "animal", "animalid", "cow_id", "cow", "id"),
    "tag_number": (
        "tag_number",
        "tag",
        "visual_tag",
        "visual_id",
        "visual_number",
        "tag_no",
        "ear_tag",
        "eartag",
        "management_number",
        "vid",
    ),
    "eid": ("eid", "rfid", "electronic_id", "eid_number", "ueid", "iso_eid", "transponder"),
}


def tag_key(number: str) -> str:
    """The form tag numbers are compared in: leading zeros and separators dropped."""
    text = re.sub(r"[\s-]", "", number).upper()
    if text.isdigit():
        return text.lstrip("0") or "0"
    return text


def normalise_eid(eid: str) -> str:
    """An EID without separators, its lost leading zeros restored (see the module docstring)."""
    text = re.sub(r"[\s.-]", "", eid)
    if text.isdigit() and 13 <= len(text) < 15:
        return text.zfill(15)
    return text


@dataclass(frozen=True, slots=True)
class Animal:
    """One row of the register."""

    animal_id: str
    tag_number: str  # as written in the register
    eid: str | None  # normalised, 15 digits


class HerdRegister:
    """Look-ups by visual tag number and by EID; built once, read from any thread."""

    def __init__(self, animals: Iterable[Animal], source: str = "<register>") -> None:
        self.source = source
        self._by_tag: dict[str, Animal] = {}
        self._by_eid: dict[str, Animal] = {}
        self._ids: set[str] = set()
        for animal in animals:
            self._add(animal, source)

    def _add(self, animal: Animal, where: str) -> None:
        if animal.animal_id in self._ids:
            raise ConfigError(f"{where}: animal {animal.animal_id!r} appears twice")
        key = tag_key(animal.tag_number)
        other = self._by_tag.get(key)
        if other is not None:
            raise ConfigError(
                f"{where}: tag {animal.tag_number!r} of animal {animal.animal_id!r} is the "
                f"same number as tag {other.tag_number!r} of animal {other.animal_id!r}; "
                "each visual tag number must be unique in the herd"
            )
        if animal.eid is not None:
            other = self._by_eid.get(animal.eid)
            if other is not None:
                raise ConfigError(
                    f"{where}: EID {animal.eid} of animal {animal.animal_id!r} is also "
                    f"the EID of animal {other.animal_id!r}"
                )
            self._by_eid[animal.eid] = animal
        self._ids.add(animal.animal_id)
        self._by_tag[key] = animal

    @classmethod
    def load(cls, path: Path) -> HerdRegister:
        """The register in ``path``; ConfigError names the file and line of any defect."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except OSError as err:
            raise ConfigError(
                f"{path}: cannot read the herd register: {err.strerror}; "
                "check vision.eartag.herd_register"
            ) from err
        if len(data) > MAX_BYTES:
            raise ConfigError(f"{path}: herd register larger than {MAX_BYTES} bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{path}: not UTF-8 at byte {err.start}; save the register as UTF-8 CSV"
            ) from None
        register = cls((), source=str(path))
        for animal, line in _parse(path, text):
            register._add(animal, f"{path}:{line}")
        return register

    def by_tag(self, number: str) -> Animal | None:
        """The animal carrying visual tag ``number`` (leading zeros ignored), or None."""
        return self._by_tag.get(tag_key(number))

    def by_eid(self, eid: str) -> Animal | None:
        """The animal with electronic id ``eid`` (normalised first), or None."""
        return self._by_eid.get(normalise_eid(eid))

    def nearest(self, number: str, limit: int = 5) -> list[Animal]:
        """Animals whose tag is one digit away from ``number`` (substituted, missing or
        extra): for diagnostics of a number that is not in the register."""
        key = tag_key(number)
        found: dict[str, Animal] = {}
        for candidate in _one_edit(key):
            animal = self._by_tag.get(tag_key(candidate)) if candidate else None
            if animal is not None and tag_key(animal.tag_number) != key:
                found.setdefault(animal.animal_id, animal)
                if len(found) >= limit:
                    break
        return sorted(found.values(), key=lambda a: a.tag_number)

    def __len__(self) -> int:
        return len(self._by_tag)

    def __contains__(self, number: object) -> bool:
        return isinstance(number, str) and tag_key(number) in self._by_tag


def _one_edit(key: str) -> Iterable[str]:
    alphabet = "0123456789"
    for i in range(len(key)):
        yield key[:i] + key[i + 1 :]
        for ch in alphabet:
            if ch != key[i]:
                yield key[:i] + ch + key[i + 1 :]
    for i in range(len(key) + 1):
        for ch in alphabet:
            yield key[:i] + ch + key[i:]


def _columns(path: Path, header: list[str], line: int) -> dict[str, int]:
    names = [re.sub(r"[\s-]+", "_", h.strip().lower()) for h in header]
    found: dict[str, int] = {}
    for column, aliases in _ALIASES.items():
        hits = [i for i, name in enumerate(names) if name in aliases]
        if len(hits) > 1:
            raise ConfigError(
                f"{path}:{line}: columns {[header[i] for i in hits]} all mean {column}; keep one"
            )
        if hits:
            found[column] = hits[0]
    missing = [c for c in ("animal_id", "tag_number") if c not in found]
    if missing:
        raise ConfigError(
            f"{path}:{line}: the header needs columns {missing} (found {header}); "
            "accepted names: " + "; ".join(
                f"{col}: {', '.join(names)}" for col, names in _ALIASES.items())
        )
    return found


def _parse(path: Path, text: str) -> list[tuple[Animal, int]]:
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if not first:
        raise ConfigError(f"{path}: the herd register is empty; it needs a header row")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    animals: list[tuple[Animal, int]] = []
    columns: dict[str, int] | None = None
    width = 0
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if columns is None:
                columns = _columns(path, row, line)
                width = max(columns.values()) + 1
                continue
            if len(row) < width:
                raise ConfigError(
                    f"{path}:{line}: {len(row)} columns, the header needs at least {width}"
                )
            animals.append((_animal(path, line, row, columns), line))
    except csv.Error as err:
        raise ConfigError(f"{path}:{reader.line_num}: not valid CSV: {err}") from err
    return animals


def _animal(path: Path, line: int, row: list[str], columns: dict[str, int]) -> Animal:
    animal_id = row[columns["animal_id"]].strip()
    tag = row[columns["tag_number"]].strip()
    raw_eid = row[columns["eid"]].strip() if "eid" in columns else ""
    if not _ID_RE.match(animal_id):
        raise ConfigError(
            f"{path}:{line}: animal id {animal_id!r} is empty or has characters other than "
            "letters, digits and _ . : / - (at most 128)"
        )
    if not _TAG_RE.match(tag):
        raise ConfigError(
            f"{path}:{line}: tag number {tag!r} is empty or not letters and digits "
            "(at most 16 characters)"
        )
    eid: str | None = None
    if raw_eid:
        if _SCIENTIFIC_RE.match(raw_eid):
            raise ConfigError(
                f"{path}:{line}: EID {raw_eid!r} is in scientific notation and lost digits; "
                "format the EID column as text in the spreadsheet and export again"
            )
        eid = normalise_eid(raw_eid)
        if not _EID_RE.match(eid):
            raise ConfigError(f"{path}:{line}: EID {raw_eid!r} is not 15 digits (ISO 11784)")
    return Animal(animal_id=animal_id, tag_number=tag, eid=eid)
