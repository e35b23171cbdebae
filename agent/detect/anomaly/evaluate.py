"""Offline scoring of ``timestamp,value`` CSVs through the live code path.

``dairy-edge anomaly score INPUT -o OUTPUT`` lands here. Every row goes
through the same ``AnomalyEngine.score`` call the runtime makes per reading,
one row at a time, with the one default configuration for every file: no
per-file tuning and no labels (a ``label`` column, if present, is ignored).
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from agent.detect.anomaly.detector import DetectorConfig
from agent.detect.anomaly.engine import AnomalyEngine


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


def _rows(path: Path) -> Iterator[tuple[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        try:
            i_ts, i_val = header.index("timestamp"), header.index("value")
        except ValueError:
            raise ValueError(f"{path}: needs a 'timestamp,value' header") from None
        for row in reader:
            if len(row) > max(i_ts, i_val):
                yield row[i_ts], row[i_val]


def score_file(src: Path, dst: Path, config: DetectorConfig | None = None) -> int:
    """Score one CSV into ``dst``; returns the number of rows written.

    Unparseable values score 0 and are passed through, so rows line up.
    """
    engine = AnomalyEngine(config)
    key = ("file", "value")
    dst.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with dst.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for ts_text, val_text in _rows(src):
            try:
                ts = parse_timestamp(ts_text)
                value = float(val_text)
            except ValueError:
                ts, value = math.nan, math.nan
            score = engine.score(key, ts, value)
            writer.writerow([ts_text, val_text, f"{score:.6f}"])
            n += 1
    return n


def input_files(root: Path) -> list[tuple[Path, Path]]:
    """(source, path relative to root) for every CSV under ``root``, sorted."""
    if root.is_file():
        return [(root, Path(root.name))]
    return [(p, p.relative_to(root)) for p in sorted(root.rglob("*.csv")) if p.is_file()]


def score_path(
    input: Path, output: Path, progress: bool = False, config: DetectorConfig | None = None
) -> int:
    """Score a CSV or a folder of CSVs (recursively, layout mirrored).

    If ``input`` is a file, ``output`` is the output file unless it is an
    existing directory (then the file keeps its name inside it).
    Returns the number of files written.
    """
    input, output = Path(input), Path(output)
    if not input.exists():
        raise FileNotFoundError(input)
    if input.is_file():
        dst = output / input.name if output.is_dir() else output
        rows = score_file(input, dst, config)
        if progress:
            print(f"{input} -> {dst} ({rows} rows)", file=sys.stderr)
        return 1
    files = input_files(input)
    for k, (src, rel) in enumerate(files, 1):
        rows = score_file(src, output / rel, config)
        if progress:
            print(f"[{k}/{len(files)}] {rel} ({rows} rows)", file=sys.stderr)
    return len(files)
