"""Where doubtful visits go: tag crops on a bounded disk budget, and a daily upload budget.

``ReviewQueue`` keeps, for each flagged or review visit, its best crops (JPEG)
and a small ``evidence.json`` (the identification record without its inline
crop), one folder per visit:

    <dir>/<seq, 10 digits>-<visit_id>/evidence.json, crop-0.jpg, crop-1.jpg ...

Items are ordered by a sequence number, not by file times: a gateway without a
real-time clock boots in 1970, so wall times would put new items before old
ones. When the next item would pass ``max_bytes``, the oldest items are
deleted first; a budget of 0 keeps nothing. The queue never raises into the
pipeline: a missing folder is created, a read-only or full disk is logged
(once until it works again) and counted, and the visit's record is still made.

``CropBudget`` and ``attach_crop`` decide which records carry a small crop to
central: only flagged and review visits, within a byte allowance per UTC day.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.records.types import Identification

log = logging.getLogger(__name__)

_ITEM_RE = re.compile(r"^(\d{10})-([A-Za-z0-9_-]{1,64})$")
_TMP_PREFIX = ".tmp-"
DOUBTFUL = frozenset({"flagged", "review"})


@dataclass(frozen=True, slots=True)
class _Item:
    seq: int
    path: Path
    size: int


def _encode_jpeg(crop: np.ndarray, max_height: int, quality: int) -> bytes | None:
    """A JPEG of ``crop`` at most ``max_height`` pixels tall (and four times as wide);
    None for an empty or unusable array."""
    if crop.ndim not in (2, 3) or crop.shape[0] == 0 or crop.shape[1] == 0:
        return None
    image = crop if crop.dtype == np.uint8 else np.clip(crop, 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    scale = min(1.0, max_height / h, 4 * max_height / w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # INTER_AREA: the right filter for shrinking, and cheap on a crop this small.
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(buf) if ok else None


class ReviewQueue:
    """Crops and evidence of doubtful visits, on a disk budget."""

    def __init__(
        self,
        folder: Path,
        max_bytes: int,
        *,
        max_crop_height: int = 320,
        quality: int = 90,
    ) -> None:
        self.folder = Path(folder)
        self.max_bytes = max(0, int(max_bytes))
        self._max_height = max_crop_height
        self._quality = quality
        self._items: list[_Item] | None = None  # scanned on first use
        self._visits: set[str] = set()
        self._lock = threading.Lock()
        self._failing = False
        self.saved = 0
        self.evicted = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(i.size for i in self._items or [])

    def items(self) -> list[Path]:
        """The folders of the queued items, oldest first."""
        with self._lock:
            return [i.path for i in self._items or []]

    def save(self, identification: Identification, crops: Sequence[np.ndarray]) -> Path | None:
        """Queue a doubtful visit's crops and evidence; the item's folder, or None when
        nothing was saved (identified visit, budget 0, too big, or a disk error)."""
        if self.max_bytes == 0 or identification.status not in DOUBTFUL:
            return None
        with self._lock:
            try:
                return self._save(identification, crops)
            except Exception as err:  # noqa: BLE001 - the review queue must never stop vision
                self._fail(err)
                return None

    def _save(self, identification: Identification, crops: Sequence[np.ndarray]) -> Path | None:
        items = self._scan()
        if identification.visit_id in self._visits:
            return None  # the same visit emitted again
        files: dict[str, bytes] = {}
        for crop in crops:
            data = _encode_jpeg(crop, self._max_height, self._quality)
            if data is not None:
                files[f"crop-{len(files)}.jpg"] = data
        record = identification.to_dict()
        record.pop("crop_jpeg_b64", None)
        record["crops"] = sorted(files)
        files["evidence.json"] = json.dumps(record, indent=1, default=str).encode()
        size = sum(len(data) for data in files.values())
        if size > self.max_bytes:
            log.warning(
                "review item of visit %s is %d bytes, over the whole budget of %d; not kept",
                identification.visit_id, size, self.max_bytes,
            )
            return None
        used = sum(i.size for i in items)
        while items and used + size > self.max_bytes:
            oldest = items.pop(0)
            shutil.rmtree(oldest.path, ignore_errors=True)
            gone = _ITEM_RE.match(oldest.path.name)
            if gone is not None:
                self._visits.discard(gone.group(2))  # bounded like the queue itself
            used -= oldest.size
            self.evicted += 1
        seq = items[-1].seq + 1 if items else 1
        name = f"{seq:010d}-{_safe(identification.visit_id)}"
        tmp = self.folder / (_TMP_PREFIX + name)
        tmp.mkdir(parents=True)
        try:
            for file_name, data in files.items():
                (tmp / file_name).write_bytes(data)
            final = self.folder / name
            tmp.rename(final)  # whole items only, even after a power cut
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        items.append(_Item(seq, final, size))
        self._visits.add(identification.visit_id)
        self.saved += 1
        if self._failing:
            log.info("review queue %s works again", self.folder)
            self._failing = False
        return final

    def _scan(self) -> list[_Item]:
        if self._items is not None:
            return self._items
        self.folder.mkdir(parents=True, exist_ok=True)
        items: list[_Item] = []
        for entry in self.folder.iterdir():
            if entry.name.startswith(_TMP_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)  # cut short by a crash
                continue
            match = _ITEM_RE.match(entry.name)
            if match is None or not entry.is_dir():
                continue
            size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
            items.append(_Item(int(match.group(1)), entry, size))
            self._visits.add(match.group(2))
        items.sort(key=lambda i: i.seq)
        self._items = items
        return items

    def _fail(self, err: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(err).__name__}: {err}"
        if not self._failing:
            log.error(
                "review queue %s cannot save crops (%s); visits are still recorded. "
                "Check that the folder exists and is writable, or set "
                "vision.eartag.review_max_bytes: 0 to turn the queue off",
                self.folder, self.last_error,
            )
            self._failing = True


def _safe(visit_id: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_-]", "_", visit_id)[:64]
    return text or "visit"


class CropBudget:
    """A byte allowance per UTC day for crops sent to central with their records.

    The day is taken from the wall time passed in; when it changes (midnight, or
    the clock stepped at first sync) the allowance starts afresh.
    """

    def __init__(self, bytes_per_day: int) -> None:
        self.bytes_per_day = max(0, int(bytes_per_day))
        self._day: int | None = None
        self._used = 0
        self._lock = threading.Lock()

    def take(self, n_bytes: int, wall_ts: float) -> bool:
        """Spend ``n_bytes`` of the day of ``wall_ts`` if they fit; False leaves it unspent."""
        day = int(wall_ts // 86400)
        with self._lock:
            if day != self._day:
                self._day, self._used = day, 0
            if n_bytes <= 0 or self._used + n_bytes > self.bytes_per_day:
                return False
            self._used += n_bytes
            return True

    def used(self, wall_ts: float) -> int:
        """Bytes spent on the day of ``wall_ts``."""
        with self._lock:
            return self._used if int(wall_ts // 86400) == self._day else 0


def attach_crop(
    identification: Identification,
    crop: np.ndarray | None,
    budget: CropBudget,
    *,
    max_height: int = 160,
    quality: int = 80,
) -> bool:
    """Put a small JPEG of ``crop`` into ``identification.crop_jpeg_b64`` when the visit
    is flagged or under review and the day's budget allows; whether it did.

    The base64 text is what is uploaded, so that is what the budget counts.
    """
    if crop is None or identification.status not in DOUBTFUL:
        return False
    try:
        data = _encode_jpeg(crop, max_height, quality)
    except cv2.error as err:
        log.warning("cannot encode the crop of visit %s: %s", identification.visit_id, err)
        return False
    if data is None:
        return False
    text = base64.b64encode(data).decode("ascii")
    if not budget.take(len(text), identification.stamp.wall_ts):
        return False
    identification.crop_jpeg_b64 = text
    return True
