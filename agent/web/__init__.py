"""The local status page, JSON API and Prometheus metrics for technicians."""

from agent.web.app import make_web_app, start_web
from agent.web.status import BrokerStatus, SensorStatus, StatusSnapshot, SyncStatus

__all__ = [
    "BrokerStatus",
    "SensorStatus",
    "StatusSnapshot",
    "SyncStatus",
    "make_web_app",
    "start_web",
]
