"""The pipeline's import rules (see README): each part knows only what it needs.

A failing test here means a part reached into another it should not know.
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[1] / "agent"
COMMON = {"errors", "clock", "metrics", "records", "config", "priority"}

# part -> the other parts it may import (besides COMMON and itself)
ALLOWED: dict[str, set[str]] = {
    "records": set(),
    "config": set(),
    "bundled": set(),  # data only: firmware formats, calibrations, models, the example herd
    "ingest": set(),
    # The simulator encodes payloads with ingest's own firmware specs, so its
    # expected record ids are exactly what ingest derives.
    "sources": {"ingest"},
    "models": set(),
    "detect": {"models"},
    "vision": {"models"},
    "store": set(),
    "sync": {"store"},
    "central": set(),
    "web": set(),
    "runtime": {"ingest", "detect", "store", "sync", "sources", "web", "central", "models",
                "vision"},
    "cli": {"runtime", "central", "sources", "detect", "models", "vision", "web"},
}
# records and config are the bottom: they may not import the other common parts
BOTTOM = {"records": set(), "config": {"errors"}}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "agent" else [
                f"agent.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "agent" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_part_imports_only_what_it_may() -> None:
    problems = []
    for part, allowed in ALLOWED.items():
        permitted = allowed | {part} | BOTTOM.get(part, COMMON)
        for path in sorted((AGENT / part).rglob("*.py")):
            for used in _imports(path) - permitted - {"__version__"}:
                problems.append(f"{path.relative_to(AGENT.parent)} imports agent.{used}")
    assert not problems, "\n".join(problems)


def test_every_part_is_listed() -> None:
    parts = {p.name for p in AGENT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)
