"""`vision eartag` on files real cameras and phones write: bytes after the JPEG's
end (some phones append metadata), an EXIF orientation (OpenCV turns the photo
upright, so width and height swap), and a JPEG cut short."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli.vision import ImageRefused, load_image


def _jpeg(h: int = 120, w: int = 200) -> bytes:
    img = np.full((h, w, 3), (40, 200, 230), np.uint8)
    cv2.putText(img, "42", (40, 90), cv2.FONT_HERSHEY_DUPLEX, 2, (0, 0, 0), 5)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return bytes(buf)


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = (b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00\x00\x00\x00")
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_trailing_bytes_after_the_end_marker_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg() + b"SEFT" + bytes(4000))
    assert load_image(path).shape == (120, 200, 3)


def test_an_exif_rotated_photo_is_read_upright(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_with_orientation(_jpeg(), 6))
    assert load_image(path).shape == (200, 120, 3)


def test_a_jpeg_cut_short_is_refused(tmp_path: Path) -> None:
    data = _jpeg()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageRefused, match="truncated"):
        load_image(path)
