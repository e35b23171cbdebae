"""The ear-tag review queue as the status page sees it: the doubtful visits the
vision worker kept (``<review_dir>/<seq>-<visit_id>/evidence.json`` and
``crop-N.jpg``, agent/vision/eartag/review.py), their crops, and a technician's
verdict, written beside them as ``verdict.json`` (the page also keeps it as a
synced ``user_action`` event)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

_ITEM = re.compile(r"\d{10}-[A-Za-z0-9_-]{1,64}")
_CROP = re.compile(r"crop-\d{1,2}\.jpg")
VERDICT_FILE = "verdict.json"


class ReviewItems:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _item(self, name: str) -> Path | None:
        if not _ITEM.fullmatch(name):
            return None
        path = self.folder / name
        return path if (path / "evidence.json").is_file() else None

    def items(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first, not yet reviewed, at most ``limit``."""
        try:
            names = sorted((p.name for p in self.folder.iterdir() if _ITEM.fullmatch(p.name)),
                           reverse=True)
        except OSError:
            return []
        out = []
        for name in names:
            path = self.folder / name
            if (path / VERDICT_FILE).exists():
                continue
            try:
                evidence = json.loads((path / "evidence.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            crops = [c for c in evidence.get("crops") or [] if _CROP.fullmatch(str(c))]
            out.append({"item": name, "visit_id": evidence.get("visit_id"),
                        "tag_number": evidence.get("tag_number"),
                        "animal_id": evidence.get("animal_id"),
                        "status": evidence.get("status"), "flags": evidence.get("flags") or [],
                        "confidence": evidence.get("confidence"),
                        "camera_id": evidence.get("camera_id"), "crops": crops})
            if len(out) >= limit:
                break
        return out

    def crop(self, item: str, name: str) -> bytes | None:
        path = self._item(item)
        if path is None or not _CROP.fullmatch(name):
            return None
        try:
            return (path / name).read_bytes()
        except OSError:
            return None

    def review(self, item: str, tag_number: str, user: str) -> dict[str, Any]:
        """Keep a technician's tag number for ``item``; what was read and what was
        said. KeyError for an unknown item."""
        path = self._item(item)
        if path is None:
            raise KeyError(item)
        evidence = json.loads((path / "evidence.json").read_text(encoding="utf-8"))
        read = evidence.get("tag_number")
        verdict = {"visit_id": evidence.get("visit_id"), "read": read,
                   "tag_number": tag_number,
                   "verdict": "confirmed" if tag_number == read else "corrected",
                   "user": user}
        tmp = path / (VERDICT_FILE + ".tmp")
        tmp.write_text(json.dumps(verdict), encoding="utf-8")
        os.replace(tmp, path / VERDICT_FILE)
        return verdict
