"""The local status page, JSON API and Prometheus metrics for technicians."""

from agent.web.access import WebAccess
from agent.web.app import make_web_app, start_web
from agent.web.status import BrokerStatus, SensorStatus, StatusSnapshot, SyncStatus
from agent.web.users import UserStore

__all__ = [
    "BrokerStatus",
    "SensorStatus",
    "StatusSnapshot",
    "SyncStatus",
    "UserStore",
    "WebAccess",
    "make_web_app",
    "start_web",
]
