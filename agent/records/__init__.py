"""The types that flow through the agent. This package imports nothing from agent."""

from agent.records.types import (
    Alert,
    Event,
    Identification,
    Inference,
    Quarantined,
    Reading,
    Record,
    RecordKind,
    Stamp,
)

__all__ = [
    "Alert",
    "Event",
    "Identification",
    "Inference",
    "Quarantined",
    "Reading",
    "Record",
    "RecordKind",
    "Stamp",
]
