"""The types that flow through the agent. This package imports nothing from agent."""

from agent.records.types import (
    MILK_CLASSES,
    QUARTERS,
    Alert,
    BodyCondition,
    Event,
    Identification,
    Inference,
    MilkCheck,
    Quarantined,
    Reading,
    Record,
    RecordKind,
    Stamp,
)

__all__ = [
    "MILK_CLASSES",
    "QUARTERS",
    "Alert",
    "BodyCondition",
    "Event",
    "Identification",
    "Inference",
    "MilkCheck",
    "Quarantined",
    "Reading",
    "Record",
    "RecordKind",
    "Stamp",
]
