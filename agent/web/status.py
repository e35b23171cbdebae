"""What the status page shows. The runtime fills a ``StatusSnapshot``; the web
part only renders it, so the page never reaches into live objects."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class BrokerStatus:
    connected: bool = False
    session_present: bool | None = None
    protocol: str = ""
    connects: int = 0
    session_gaps: int = 0
    messages: int = 0


@dataclass(slots=True)
class SensorStatus:
    """The latest reading of one sensor. ``sensor_id`` comes off the wire: hostile text."""

    sensor_id: str
    values: dict[str, float] = field(default_factory=dict)
    age_s: float | None = None  # monotonic seconds since the last reading
    health: str = "ok"
    firmware: str = ""  # its firmware config's name: where the page shows it
    animal_id: str | None = None  # collars and milk meters: the cow (wire text too)
    seen_ts: float | None = None  # the reading's wall time (the page keeps ages current)


@dataclass(slots=True)
class SyncStatus:
    state: str = "idle"  # idle | uploading | backoff | disabled | error
    last_success_age_s: float | None = None
    last_error: str | None = None


@dataclass(slots=True)
class StatusSnapshot:
    """One look at the agent (built in a worker thread for each request)."""

    version: str
    uptime_s: float  # monotonic
    broker: BrokerStatus = field(default_factory=BrokerStatus)
    sensors: list[SensorStatus] = field(default_factory=list)
    quarantined: int = 0
    backlog: int = 0
    dead_letters: int = 0
    disk_free_bytes: int | None = None
    storage_health: str = "ok"  # "ok" or a short reason (disk_full, io_error, corrupt)
    sync: SyncStatus = field(default_factory=SyncStatus)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # newest first
    # Vision: camera states (CameraStatus.to_dict()), model states by name, and
    # the latest ear-tag identifications (newest first). Empty without cameras.
    cameras: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    identifications: list[dict[str, Any]] = field(default_factory=list)
    # The latest body condition scores and milk checks (newest first, as the store
    # reader gives them: StoreReader.recent_body_conditions / recent_milk_checks).
    # Each section is shown only when it has any.
    body_conditions: list[dict[str, Any]] = field(default_factory=list)
    milk_checks: list[dict[str, Any]] = field(default_factory=list)
    # The rule engine's open alerts (alert_id, rule, subject, severity, message,
    # acknowledged, snoozed, verdict): live state the stored records lag behind.
    # None: not given (the page derives open alerts from ``alerts``).
    open_alerts: list[dict[str, Any]] | None = None
    # Sparklines: "sensor_id:field" -> values, oldest first (tanks and climate).
    history: dict[str, list[float]] = field(default_factory=dict)
    safe_mode: bool = False
    # The runtime profile (ProfileManager.status()); None: no profiles configured.
    profile: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)  # extra reasons for /healthz 503

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def jsonable(value: Any) -> Any:
    """Plain JSON types only; NaN and infinities (which JSON lacks) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def health_reasons(status: Mapping[str, Any]) -> list[str]:
    """Why the agent is unhealthy; empty when it is healthy."""
    reasons: list[str] = []
    storage = status.get("storage_health", "ok")
    if storage != "ok":
        reasons.append(f"storage: {storage}")
    broker = status.get("broker") or {}
    if not broker.get("connected", False):
        reasons.append("mqtt: not connected")
    if status.get("safe_mode"):
        reasons.append("safe mode: configuration invalid")
    reasons.extend(str(p) for p in status.get("problems") or [])
    return reasons
