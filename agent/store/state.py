"""Detector and rule state kept in the buffer: written through the single
writer, read back once at start."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def save_states(
    conn: sqlite3.Connection, states: Mapping[str, Any], mono_ns: int, boot: str
) -> int:
    """Upsert JSON-ready states by key (run on the writer thread)."""
    conn.executemany(
        "INSERT OR REPLACE INTO detector_state (key, state, saved_mono_ns, boot_id) "
        "VALUES (?, ?, ?, ?)",
        [
            (key, json.dumps(state, separators=(",", ":")), mono_ns, boot)
            for key, state in states.items()
        ],
    )
    return len(states)


def load_states(path: Path, prefix: str = "") -> dict[str, Any]:
    """Every saved state whose key starts with ``prefix``; unreadable ones are skipped
    (the detector then relearns rather than the agent failing to start)."""
    out: dict[str, Any] = {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT key, state FROM detector_state WHERE key >= ? AND key < ?",
            (prefix, prefix + "\uffff"),
        ).fetchall()
    except sqlite3.OperationalError:
        return out
    finally:
        conn.close()
    for key, text in rows:
        try:
            out[key] = json.loads(text)
        except ValueError:
            continue
    return out
