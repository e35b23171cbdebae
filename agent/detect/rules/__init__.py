"""Dairy rules (cooling, heat stress, mastitis, estrus, rumination, sensor
plausibility) and the engine that turns them into alerts."""

from __future__ import annotations

from typing import Any

from agent.detect.rules.base import Finding, Signal
from agent.detect.rules.heat_stress import thi

__all__ = ["Finding", "RuleEngine", "Signal", "thi"]


def __getattr__(name: str) -> Any:
    # Lazy: the engine imports agent.detect.alerts, which imports rules.base.
    if name == "RuleEngine":
        from agent.detect.rules.engine import RuleEngine

        return RuleEngine
    raise AttributeError(name)
