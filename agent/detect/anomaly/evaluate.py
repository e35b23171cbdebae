"""Offline scoring of ``timestamp,value`` CSVs through the live code path.

``dairy-edge anomaly score INPUT -o OUTPUT`` lands here. Every row goes
through the same ``AnomalyEngine.score`` call the runtime makes per reading,
one row at a time, with one configuration for every file: no per-file tuning
and no labels (a ``label`` column, if present, is ignored).

Value range (what the detector is told about the stream before it starts):

* ``auto``: the file's own minimum and maximum. This is NAB's convention
  (every NAB detector is given them); a gateway's equivalent is a sensor's
  configured valid range. It needs the whole file before the first score,
  so it is an offline setting; scores are still computed row by row.
* ``MIN,MAX``: a range given by the user.
* ``learn``: none; the detector learns the range online, as for a sensor
  without a configured range.

A row whose timestamp or value cannot be read is reported with its file and
line and written with an empty score (it is not scored, and not learnt).
A file that cannot be scored at all (no ``timestamp,value`` header, not
readable) leaves no output file.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.detect.anomaly.detector import DetectorConfig
from agent.detect.anomaly.engine import AnomalyEngine, DetectorKind, ValueRange

VALUE_RANGE_HELP = "auto (each file's own min and max, NAB's convention), MIN,MAX, or learn"


def parse_timestamp(text: str) -> float:
    """Epoch seconds from a number or an ISO-like timestamp (naive = UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_value_range(text: str) -> str | ValueRange:
    """``auto``, ``learn`` or ``MIN,MAX`` (floats, MIN < MAX) -> "auto" / "learn" / (lo, hi)."""
    text = text.strip().lower()
    if text in ("auto", "learn"):
        return text
    lo_text, sep, hi_text = text.partition(",")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = math.nan
    if not sep or not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"value range {text!r}: use {VALUE_RANGE_HELP} (MIN < MAX)")
    return (lo, hi)


@dataclass
class Series:
    """One CSV's rows: the original texts and what could be read of them."""

    rows: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, value) texts
    parsed: list[tuple[float, float] | None] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # "file:line: why"


def read_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV. Raises ValueError for a file that has no
    such header; rows that cannot be read are listed in ``bad``."""
    out = Series()
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        try:
            i_ts, i_val = header.index("timestamp"), header.index("value")
        except ValueError:
            raise ValueError(
                f"{path}:1: needs a header with 'timestamp' and 'value' columns, got {header!r}"
            ) from None
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(i_ts, i_val):
                out.rows.append((row[i_ts] if len(row) > i_ts else "", ""))
                out.parsed.append(None)
                out.bad.append(f"{path}:{line}: too few columns ({len(row)})")
                continue
            ts_text, val_text = row[i_ts], row[i_val]
            out.rows.append((ts_text, val_text))
            try:
                ts = parse_timestamp(ts_text)
            except ValueError:
                out.parsed.append(None)
                out.bad.append(f"{path}:{line}: unreadable timestamp {ts_text!r}")
                continue
            try:
                value = float(val_text)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and math.isfinite(ts)):
                out.parsed.append(None)
                out.bad.append(f"{path}:{line}: unreadable value {val_text!r}")
                continue
            out.parsed.append((ts, value))
    return out


def _range_for(series: Series, value_range: str | ValueRange) -> ValueRange | None:
    if value_range == "learn":
        return None
    if value_range == "auto":
        values = [p[1] for p in series.parsed if p is not None]
        return (min(values), max(values)) if values else None
    assert isinstance(value_range, tuple)
    return value_range


def score_file(
    src: Path,
    dst: Path,
    config: DetectorConfig | None = None,
    detector: DetectorKind = "default",
    value_range: str | ValueRange = "auto",
    warn: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Score one CSV into ``dst``; returns (rows written, rows not readable).

    The output appears only when complete (written beside it, then renamed).
    """
    series = read_series(src)
    for msg in series.bad:
        (warn or _stderr)(msg)
    # NAB's rest after an alarm: a fifth of the probationary period (15 % of
    # the file, at most 750 rows); the same rule for every file.
    # seq_lik's likelihood learns during that probationary period.
    probation = min(math.floor(0.15 * len(series.rows)), 750)
    rest = probation / 5.0
    if detector == "cad_ose" and rest < 1:
        (warn or _stderr)(f"{src}: {len(series.rows)} rows: too short for CAD OSE's rest "
                          "period (NAB's convention silences such a file entirely)")
    engine = AnomalyEngine(config, detector=detector, rest=rest, cad_max_contexts=None,
                           probation=probation)
    rng = _range_for(series, value_range)
    key = ("file", "value")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    try:
        with tmp.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["timestamp", "value", "anomaly_score"])
            for (ts_text, val_text), parsed in zip(series.rows, series.parsed, strict=True):
                if parsed is None:
                    writer.writerow([ts_text, val_text, ""])
                    continue
                score = engine.score(key, parsed[0], parsed[1], value_range=rng)
                writer.writerow([ts_text, val_text, f"{score:.6f}"])
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return len(series.rows), len(series.bad)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def input_files(root: Path) -> list[tuple[Path, Path]]:
    """(source, path relative to root) for every CSV under ``root``, sorted."""
    if root.is_file():
        return [(root, Path(root.name))]
    return [(p, p.relative_to(root)) for p in sorted(root.rglob("*.csv")) if p.is_file()]


@dataclass
class ScoreReport:
    files: int = 0  # written
    failed: list[str] = field(default_factory=list)  # files not scored, with why
    bad_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.bad_rows


def score_path(
    input: Path,
    output: Path,
    progress: bool = False,
    config: DetectorConfig | None = None,
    detector: DetectorKind = "default",
    value_range: str | ValueRange = "auto",
    warn: Callable[[str], None] | None = None,
) -> ScoreReport:
    """Score a CSV or a folder of CSVs (recursively, layout mirrored).

    If ``input`` is a file, ``output`` is the output file unless it is an
    existing directory (then the file keeps its name inside it). A file that
    cannot be scored is reported (``warn``) and the others are still scored.
    Raises FileNotFoundError when ``input`` does not exist.
    """
    input, output = Path(input), Path(output)
    say = warn or _stderr
    if not input.exists():
        raise FileNotFoundError(f"{input}: no such file or folder")
    report = ScoreReport()
    if input.is_file():
        jobs = [(input, output / input.name if output.is_dir() else output, Path(input.name))]
    else:
        jobs = [(src, output / rel, rel) for src, rel in input_files(input)]
    for k, (src, dst, rel) in enumerate(jobs, 1):
        try:
            rows, bad = score_file(src, dst, config, detector, value_range, warn=say)
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
            report.failed.append(f"{src}: {err}" if str(src) not in str(err) else str(err))
            say(f"not scored: {report.failed[-1]}")
            continue
        report.files += 1
        report.bad_rows += bad
        if progress:
            print(f"[{k}/{len(jobs)}] {rel} ({rows} rows)", file=sys.stderr)
    return report
