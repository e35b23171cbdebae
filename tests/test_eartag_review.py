"""Review queue on real files with a disk budget; crop upload budget per UTC day."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.records.types import Identification, Stamp
from agent.vision.eartag.review import CropBudget, ReviewQueue, attach_crop

MIDNIGHT = 1_780_012_800.0  # 2026-05-29 00:00:00 UTC
assert MIDNIGHT % 86400 == 0


def _ident(visit: str, status: str = "review", wall: float = MIDNIGHT + 3600) -> Identification:
    return Identification(
        record_id=f"r-{visit}",
        camera_id="lane-cam",
        visit_id=visit,
        status=status,
        confidence=0.5,
        stamp=Stamp(wall_ts=wall, mono_ns=1, boot_id="b", clock_synced=True),
        started_wall_ts=wall - 3,
        ended_wall_ts=wall,
        flags=["low_confidence"],
        evidence={"readings": [[0, "2386", 0.5]]},
    )


def _crop(seed: int, h: int = 60, w: int = 90) -> np.ndarray:
    # Noise does not compress: item sizes are predictable enough for a budget test.
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_saves_crops_and_evidence(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review", 10_000_000)
    item = queue.save(_ident("v1", "flagged"), [_crop(1), _crop(2)])
    assert item is not None and item.parent == tmp_path / "review"
    names = sorted(p.name for p in item.iterdir())
    assert names == ["crop-0.jpg", "crop-1.jpg", "evidence.json"]
    image = cv2.imread(str(item / "crop-0.jpg"))
    assert image is not None and image.shape == (60, 90, 3)
    evidence = json.loads((item / "evidence.json").read_text())
    assert evidence["visit_id"] == "v1" and evidence["status"] == "flagged"
    assert evidence["crops"] == ["crop-0.jpg", "crop-1.jpg"]
    assert "crop_jpeg_b64" not in evidence
    assert queue.used_bytes == _size(item)
    # Identified visits and a visit saved before are not queued.
    assert queue.save(_ident("v2", "identified"), [_crop(3)]) is None
    assert queue.save(_ident("v1", "flagged"), [_crop(1)]) is None
    assert queue.items() == [item]


def test_budget_evicts_the_oldest_items_first(tmp_path: Path) -> None:
    folder = tmp_path / "review"
    probe = ReviewQueue(tmp_path / "probe", 10_000_000)
    one = probe.save(_ident("probe"), [_crop(0)])
    assert one is not None
    item_size = _size(one)
    queue = ReviewQueue(folder, int(item_size * 3.5))
    saved = [queue.save(_ident(f"v{i}"), [_crop(i)]) for i in range(6)]
    assert all(p is not None for p in saved)
    kept = queue.items()
    assert [p.name.split("-", 1)[1] for p in kept] == ["v3", "v4", "v5"]
    assert _size(folder) <= queue.max_bytes and queue.evicted == 3
    assert sorted(folder.iterdir()) == kept
    # A restarted agent picks up the queue, its order and its size from the disk.
    again = ReviewQueue(folder, int(item_size * 3.5))
    assert again.save(_ident("v4"), [_crop(4)]) is None  # already queued
    item = again.save(_ident("v6"), [_crop(6)])
    assert item is not None and item.name.startswith("0000000007-")
    assert [p.name.split("-", 1)[1] for p in again.items()] == ["v4", "v5", "v6"]
    # An item bigger than the whole budget is not kept, and evicts nothing.
    assert again.save(_ident("big"), [_crop(9, 600, 900)]) is None
    assert len(again.items()) == 3


def test_budget_zero_saves_nothing(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review", 0)
    assert queue.save(_ident("v1"), [_crop(1)]) is None
    assert not (tmp_path / "review").exists()


def test_leftovers_of_a_crash_are_cleared(tmp_path: Path) -> None:
    folder = tmp_path / "review"
    (folder / ".tmp-0000000001-v1").mkdir(parents=True)
    (folder / ".tmp-0000000001-v1" / "crop-0.jpg").write_bytes(b"half")
    queue = ReviewQueue(folder, 10_000_000)
    assert queue.save(_ident("v2"), [_crop(2)]) is not None
    assert [p.name for p in folder.iterdir()] == ["0000000001-v2"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "review"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        queue = ReviewQueue(folder, 10_000_000)
        assert queue.save(_ident("v1"), [_crop(1)]) is None
        assert queue.save(_ident("v2"), [_crop(2)]) is None
        assert queue.errors == 2 and queue.last_error is not None
        assert sum("cannot save crops" in r.message for r in caplog.records) == 1  # logged once
        folder.chmod(0o700)
        assert queue.save(_ident("v3"), [_crop(3)]) is not None
    finally:
        folder.chmod(0o700)


def test_missing_folder_is_created_and_unusable_path_is_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.vision.eartag.review")
    queue = ReviewQueue(tmp_path / "a" / "b" / "review", 10_000_000)
    assert queue.save(_ident("v1"), [_crop(1)]) is not None
    # A file where the folder should be: fails as it would for root on a read-only disk.
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    broken = ReviewQueue(blocker / "review", 10_000_000)
    assert broken.save(_ident("v1"), [_crop(1)]) is None
    assert broken.save(_ident("v2"), [_crop(2)]) is None
    assert broken.errors == 2 and "NotADirectoryError" in (broken.last_error or "")
    assert sum("cannot save crops" in r.message for r in caplog.records) == 1
    blocker.unlink()
    blocker.mkdir()
    assert broken.save(_ident("v3"), [_crop(3)]) is not None
    assert any("works again" in r.message for r in caplog.records)


def test_crop_budget_resets_at_utc_midnight() -> None:
    budget = CropBudget(1000)
    before = MIDNIGHT - 1.0
    assert budget.take(600, before - 3600)
    assert budget.take(400, before)
    assert not budget.take(1, before)  # the day is spent
    assert budget.used(before) == 1000
    assert budget.take(1000, MIDNIGHT)  # a new UTC day
    assert not budget.take(1, MIDNIGHT + 86399)
    assert budget.used(before) == 0
    assert not CropBudget(0).take(1, MIDNIGHT)
    assert not CropBudget(100).take(101, MIDNIGHT)


def test_attach_crop_only_for_doubtful_visits_within_budget() -> None:
    crop = _crop(5, h=400, w=300)
    budget = CropBudget(1_000_000)
    ident = _ident("v1", "identified")
    assert not attach_crop(ident, crop, budget) and ident.crop_jpeg_b64 is None
    ident = _ident("v2", "flagged")
    assert attach_crop(ident, crop, budget)
    assert ident.crop_jpeg_b64 is not None
    data = base64.b64decode(ident.crop_jpeg_b64)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (160, 120, 3)  # at most 160 px tall, aspect kept
    assert budget.used(ident.stamp.wall_ts) == len(ident.crop_jpeg_b64)
    assert not attach_crop(_ident("v3"), None, budget)
    tight = CropBudget(len(ident.crop_jpeg_b64) + 10)
    assert attach_crop(_ident("v4"), crop, tight)
    late = _ident("v5")
    assert not attach_crop(late, crop, tight) and late.crop_jpeg_b64 is None
    assert attach_crop(_ident("v6", wall=MIDNIGHT + 86400), crop, tight)
    # A grey crop and a float crop encode too; an empty one does not.
    assert attach_crop(_ident("v7"), np.zeros((20, 30), np.uint8), budget)
    assert attach_crop(_ident("v8"), np.full((20, 30, 3), 300.0), budget)
    assert not attach_crop(_ident("v9"), np.zeros((0, 30, 3), np.uint8), budget)
