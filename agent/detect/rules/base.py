"""What every dairy rule shares: the finding it reports, and small helpers.

A rule turns readings into *findings*: for one subject (a tank, a barn, a cow,
a sensor) the condition is beyond its raise threshold (``raise``), back below
its clear threshold (``clear``), or in the band between (``hold``). The alert
lifecycle (``agent.detect.alerts``) turns findings into alerts; the band
between the two thresholds is the hysteresis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["raise", "hold", "clear"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
# tracked(rule, subject, cause): whether the alert lifecycle holds a track (an
# alert open or pending) for that key. A "hold" or "clear" for a key without
# one is dropped unread, so a rule asks before building it; the engine gives
# each rule the lifecycle's answer.
Tracked = Callable[[str, str, str], bool]


def every_key_tracked(rule: str, subject: str, cause: str) -> bool:
    """A rule used on its own (no lifecycle to ask) builds every finding."""
    return True


@dataclass(slots=True)
class Signal:
    """One contributing signal: its value, the baseline and the limit it crossed."""

    name: str
    value: float
    baseline: float | None = None
    limit: float | None = None
    unit: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "limit": None if self.limit is None else round(self.limit, 3),
            "unit": self.unit,
            "note": self.note,
        }

    def describe(self) -> str:
        text = f"{self.name} {self.value:.2f}{self.unit}"
        if self.baseline is not None:
            text += f" (baseline {self.baseline:.2f}{self.unit})"
        if self.limit is not None:
            text += f" vs limit {self.limit:.2f}{self.unit}"
        if self.note:
            text += f" - {self.note}"
        return text


@dataclass(slots=True)
class Finding:
    """A rule's verdict on one subject at one instant (engine time, seconds)."""

    rule: str
    subject: str
    status: Status
    at: float
    severity: str | None = None
    summary: str = ""
    signals: list[Signal] = field(default_factory=list)
    sensor_id: str | None = None
    animal_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A rule that tells incidents of different causes apart on one subject (a
    # blend too warm, then a cooler that stops) reports each cause on its own
    # track, so a new cause raises its own alert while an older one is open.
    cause: str = ""

    def explanation(self) -> str:
        """Plain language: what, and which signals against which baseline."""
        parts = "; ".join(s.describe() for s in self.signals)
        return f"{self.summary}: {parts}" if parts else self.summary


def max_severity(values: Iterable[str | None], default: str = "warning") -> str:
    best: str | None = None
    for value in values:
        if value is not None and (best is None or SEVERITY_RANK[value] > SEVERITY_RANK[best]):
            best = value
    return best or default


def median(values: Iterable[float]) -> float:
    data = sorted(values)
    n = len(data)
    if n == 0:
        raise ValueError("median of nothing")
    mid = n // 2
    return data[mid] if n % 2 else (data[mid - 1] + data[mid]) / 2
