"""``dairy-edge vision eartag`` on real files: good images, bad ones, exit status."""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli.vision import ImageRefused, add_vision_parser, image_size, load_image, run_vision

ROOT = Path(__file__).resolve().parents[1]


def _tag_frame(text: str = "2386") -> np.ndarray:
    img = np.full((720, 1280, 3), 90, np.uint8)
    cv2.rectangle(img, (484, 250), (660, 316), (20, 205, 245), -1)
    cv2.putText(img, text, (500, 300), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (15, 15, 15), 4,
                cv2.LINE_AA)
    return img


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _huge_png(path: Path) -> None:
    """A valid-looking PNG whose header claims 50,000 x 50,000 RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    good = d / "frame.jpg"
    cv2.imwrite(str(good), _tag_frame(), [cv2.IMWRITE_JPEG_QUALITY, 92])
    crop = d / "crop.png"
    cv2.imwrite(str(crop), _tag_frame("517")[230:336, 464:680])
    text = d / "notes.jpg"
    text.write_text("not an image at all\n")
    empty = d / "empty.jpg"
    empty.write_bytes(b"")
    truncated = d / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    huge = d / "huge.png"
    _huge_png(huge)
    return {"good": good, "crop": crop, "text": text, "empty": empty, "truncated": truncated,
            "huge": huge}


_ERR: list[str] = []


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict]]:
    parser = argparse.ArgumentParser()
    add_vision_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["vision", "eartag", *argv])
    code = run_vision(args)
    captured = capsys.readouterr()
    _ERR[:] = [captured.err]
    return code, [json.loads(x) for x in captured.out.splitlines()]


def test_good_images_print_numbers_and_boxes(files: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, str(files["good"]), str(files["crop"]))
    assert code == 0
    assert [line["image"] for line in lines] == [str(files["good"]), str(files["crop"])]
    frame_tags = lines[0]["tags"]
    assert [t["number"] for t in frame_tags] == ["2386"]
    x, y, w, h = frame_tags[0]["box"]
    assert 470 <= x <= 510 and 240 <= y <= 300 and w > 80 and h > 20
    assert 0.9 <= frame_tags[0]["confidence"] <= 1.0
    assert [t["number"] for t in lines[1]["tags"]] == ["517"]


def test_bad_files_get_an_error_line_and_the_rest_still_run(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    order = ["text", "good", "empty", "truncated", "huge", "crop"]
    code, lines = _run(capsys, *(str(files[k]) for k in order))
    assert code == 1
    assert [line["image"] for line in lines] == [str(files[k]) for k in order]
    by = dict(zip(order, lines, strict=True))
    assert "not an image" in by["text"]["error"]
    assert "empty" in by["empty"]["error"]
    assert "truncated" in by["truncated"]["error"]
    assert "50000 x 50000" in by["huge"]["error"]
    assert [t["number"] for t in by["good"]["tags"]] == ["2386"]
    assert [t["number"] for t in by["crop"]["tags"]] == ["517"]
    assert all("tags" not in by[k] for k in ("text", "empty", "truncated", "huge"))


def test_missing_file_is_an_error_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, str(tmp_path / "nope.jpg"))
    assert code == 1 and "cannot read" in lines[0]["error"]


def test_huge_header_is_refused_before_decoding(files: dict[str, Path]) -> None:
    assert image_size(files["huge"].read_bytes()) == ("png", 50_000, 50_000)
    with pytest.raises(ImageRefused, match="50000 x 50000"):
        load_image(files["huge"])


def test_jpeg_header_size_is_read_without_decoding(files: dict[str, Path]) -> None:
    assert image_size(files["good"].read_bytes()) == ("jpeg", 1280, 720)


def test_herd_register_adds_animal_and_membership(files: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    herd = tmp_path / "herd.csv"
    herd.write_text("animal_id,tag_number,eid\nNL-77,2386,528000012345678\nNL-78,4410,\n")
    code, lines = _run(capsys, "--herd", str(herd), str(files["good"]), str(files["crop"]))
    assert code == 0
    assert lines[0]["tags"][0] | {"confidence": 0, "box": 0} == {
        "number": "2386", "animal_id": "NL-77", "in_register": True, "confidence": 0, "box": 0}
    assert lines[1]["tags"][0]["animal_id"] is None
    assert lines[1]["tags"][0]["in_register"] is False


def test_models_that_cannot_load_exit_2_with_a_message(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text('{"models": []}')
    code, _ = _run(capsys, "--models-dir", str(tmp_path), str(files["good"]))
    assert code == 2
    assert "build_eartag_models.py" in _ERR[0]


def test_module_entry_point(files: dict[str, Path]) -> None:
    out = subprocess.run([sys.executable, "-m", "agent.cli.vision", "eartag",
                          str(files["good"]), str(files["empty"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [t["number"] for t in lines[0]["tags"]] == ["2386"] and "error" in lines[1]
