"""Copies of the shipped sample data for a demo or a new farm (``dairy-edge init``).

The shipped calibration file carries fixed dates; copied as they are, its
devices would fall overdue one day and the first alert of a demo would be a
false one. ``copy_calibration`` moves every date by the same number of days so
that the latest ``calibrated_on`` is today: the intervals between the dates,
and every comment, stay as shipped.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

from agent.config.model import BUNDLED

FIRMWARE = BUNDLED / "firmware_configs"
CALIBRATION = BUNDLED / "calibration"
EXAMPLES = BUNDLED / "examples"

# `calibrated_on: 2025-03-01` / `due: 2026-03-01`, keeping indent and anything after.
_DATE_LINE = re.compile(
    r"^(?P<head>\s*(?:-\s+)?(?P<key>calibrated_on|due):\s*)(?P<date>\d{4}-\d{2}-\d{2})",
    re.MULTILINE,
)


def shift_dates(text: str, today: dt.date) -> str:
    """``text`` (a calibration YAML) with its dates moved so the latest
    ``calibrated_on`` is ``today``; unchanged when it has none."""
    done = [dt.date.fromisoformat(m["date"]) for m in _DATE_LINE.finditer(text)
            if m["key"] == "calibrated_on"]
    if not done:
        return text
    delta = today - max(done)

    def move(match: re.Match[str]) -> str:
        return match["head"] + (dt.date.fromisoformat(match["date"]) + delta).isoformat()

    return _DATE_LINE.sub(move, text)


def copy_calibration(dest: Path, today: dt.date | None = None,
                     source: Path = CALIBRATION) -> list[Path]:
    """Copy the calibration folder to ``dest`` with dates relative to ``today``.

    :returns: the files written.
    """
    today = today or dt.date.today()
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.yaml")):
        target = dest / path.name
        target.write_text(shift_dates(path.read_text(encoding="utf-8"), today), encoding="utf-8")
        written.append(target)
    cameras = source / "cameras"
    if cameras.is_dir():
        shutil.copytree(cameras, dest / "cameras", dirs_exist_ok=True)
        written.extend(sorted((dest / "cameras").iterdir()))
    return written


def copy_firmware(dest: Path, source: Path = FIRMWARE) -> list[Path]:
    """Copy the shipped firmware formats to ``dest``; the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.yaml")):
        written.append(Path(shutil.copy2(path, dest / path.name)))
    return written
