"""Herd register: header spellings, leading zeros, EIDs, and errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.vision.eartag.register import HerdRegister, normalise_eid, tag_key


def _write(tmp_path: Path, text: str, name: str = "herd.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_and_looks_up_by_tag_and_eid(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "animal_id,tag_number,eid\n"
        "DE0001,2386,982000123456789\n"
        "DE0002,0042,040000000000042\n"
        "\n"
        "# sold last week\n"
        "DE0003,17,\n",
    )
    reg = HerdRegister.load(path)
    assert len(reg) == 3
    cow = reg.by_tag("2386")
    assert cow is not None and cow.animal_id == "DE0001" and cow.eid == "982000123456789"
    assert reg.by_eid("982000123456789") == cow
    assert reg.by_tag("2387") is None
    assert reg.by_eid("982000123456788") is None
    assert reg.by_tag("17") is not None and reg.by_tag("17").eid is None  # type: ignore[union-attr]


def test_leading_zeros_are_the_same_tag_other_digits_are_not(tmp_path: Path) -> None:
    reg = HerdRegister.load(_write(tmp_path, "animal_id,tag_number\nA,0042\nB,420\n"))
    for spelling in ("0042", "042", "42"):
        assert reg.by_tag(spelling).animal_id == "A"  # type: ignore[union-attr]
    assert reg.by_tag("420").animal_id == "B"  # type: ignore[union-attr]
    assert reg.by_tag("4200") is None
    assert tag_key("0") == "0" and tag_key("000") == "0"
    assert tag_key("uk-12 3") == "UK123"


def test_eid_numbers_that_lost_leading_zeros_match(tmp_path: Path) -> None:
    reg = HerdRegister.load(_write(tmp_path, "animal_id,tag_number,eid\nA,1,040000000000042\n"))
    assert reg.by_eid("40000000000042") is not None  # a reader that sent a number
    assert reg.by_eid("040 000000000042") is not None  # as printed on the tag
    assert normalise_eid("982-000-123456789") == "982000123456789"


@pytest.mark.parametrize(
    "header",
    [
        "Animal ID;Visual Tag;RFID",
        "cow;TAG;electronic-id",
        "\ufeffanimal_id,tag,eid",  # a BOM from a spreadsheet export
        "id,Management Number,ISO EID,notes",
    ],
)
def test_common_header_spellings(tmp_path: Path, header: str) -> None:
    sep = ";" if ";" in header else ","
    row = sep.join(["A7", "777", "982000000000777"] + (["calm"] if "notes" in header else []))
    reg = HerdRegister.load(_write(tmp_path, f"{header}\n{row}\n"))
    cow = reg.by_tag("777")
    assert cow is not None and cow.animal_id == "A7" and cow.eid == "982000000000777"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("animal_id,tag_number\nA,1\nB,1\n", 3, "same number"),
        ("animal_id,tag_number\nA,01\nB,1\n", 3, "same number"),
        ("animal_id,tag_number,eid\nA,1,982000000000001\nB,2,982000000000001\n", 3, "EID"),
        ("animal_id,tag_number\nA,1\nA,2\n", 3, "twice"),
        ("animal_id,tag_number\nA,1\nB\n", 3, "columns"),
        ("animal_id,tag_number\nA,1\n,2\n", 3, "animal id"),
        ("animal_id,tag_number\nA,1\nB,\n", 3, "tag number"),
        ("animal_id,tag_number\nA,1\nB,12/3\n", 3, "tag number"),
        ("animal_id,tag_number,eid\nA,1,9.82E+14\n", 2, "scientific"),
        ("animal_id,tag_number,eid\nA,1,98200012345\n", 2, "15 digits"),
        ("animal_id,tag_number,eid\nA,1,98200012345678901\n", 2, "15 digits"),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        HerdRegister.load(path)
    message = str(err.value)
    assert f"{path}:{line}:" in message
    assert words in message


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        HerdRegister.load(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="empty"):
        HerdRegister.load(_write(tmp_path, "\n\n"))
    with pytest.raises(ConfigError, match=r"needs columns \['tag_number'\]"):
        HerdRegister.load(_write(tmp_path, "animal_id,colour\nA,red\n"))
    with pytest.raises(ConfigError, match="all mean tag_number"):
        HerdRegister.load(_write(tmp_path, "animal_id,tag,visual_tag\nA,1,1\n"))
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("animal_id,tag_number\nK\xfch,1\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8"):
        HerdRegister.load(bad)


def test_nearest_lists_tags_one_digit_away(tmp_path: Path) -> None:
    reg = HerdRegister.load(_write(tmp_path, "animal_id,tag_number\nA,1234\nB,1284\nC,123\nD,5678\n"))
    near = [a.tag_number for a in reg.nearest("1264")]
    assert near == ["1234", "1284"]
    assert [a.tag_number for a in reg.nearest("12345")] == ["1234"]
    assert [a.tag_number for a in reg.nearest("1234")] == ["123", "1284"]
    assert reg.nearest("9999") == []
