"""Identification records and real JPEG crops for the identification tests."""

from __future__ import annotations

import base64
import time
import uuid

import cv2
import numpy as np

from agent.records import Identification, Stamp


def tag_jpeg(number: str = "2386", *, noise: int = 0, size: int = 48) -> bytes:
    """A real JPEG of a yellow ear tag with ``number`` printed on it (OpenCV).

    ``noise`` > 0 makes a large file (noise does not compress): ``noise`` x ``noise``
    pixels of it at quality 100.
    """
    if noise:
        rng = np.random.default_rng(7)
        img = rng.integers(0, 256, (noise, noise, 3), dtype=np.uint8)
        quality = 100
    else:
        img = np.full((size, size * 2, 3), (0, 210, 240), np.uint8)  # BGR yellow
        cv2.putText(img, number, (4, size * 2 // 3), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                    (0, 0, 0), 2, cv2.LINE_AA)
        quality = 85
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf.tobytes())


def identification(
    n: int = 1,
    *,
    status: str = "identified",
    tag: str | None = "2386",
    animal: str | None = "cow-2386",
    crop: bytes | None = None,
    run: str | None = None,
    ended: float | None = None,
    confidence: float = 0.97,
) -> Identification:
    """One visit's identification; ``run`` keeps record ids apart between tests."""
    run = run or uuid.uuid4().hex[:8]
    now = time.time()
    end = now if ended is None else ended
    return Identification(
        record_id=f"id-{run}-{n}",
        camera_id="lane-1",
        visit_id=f"visit-{run}-{n}",
        status=status,
        confidence=confidence,
        stamp=Stamp(wall_ts=now, mono_ns=time.monotonic_ns(), boot_id="boot-1",
                    clock_synced=True),
        started_wall_ts=end - 4.0,
        ended_wall_ts=end,
        tag_number=tag if status != "review" else None,
        animal_id=animal if status != "review" else None,
        station="parlour-exit",
        rfid_eid="276000912345678",
        rfid_agrees=status == "identified",
        flags=[] if status == "identified" else ["not_in_register"],
        evidence={"frames": 12, "votes": {tag or "?": 11}},
        model_versions={"eartag-det": "1.0.0", "eartag-ocr": "1.0.0"},
        crop_jpeg_b64=None if crop is None else base64.b64encode(crop).decode(),
    )
