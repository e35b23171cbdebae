"""The local status page, JSON API and Prometheus metrics for technicians.

The names below are imported on first use (PEP 562): ``agent.web.app`` pulls in
aiohttp, prometheus_client and Babel, which every ``dairy-edge`` command would
otherwise pay for when it only needs ``agent.web.users``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.web.access import WebAccess
    from agent.web.app import make_web_app, start_web
    from agent.web.status import BrokerStatus, SensorStatus, StatusSnapshot, SyncStatus
    from agent.web.users import UserStore

_WHERE = {
    "BrokerStatus": "agent.web.status",
    "SensorStatus": "agent.web.status",
    "StatusSnapshot": "agent.web.status",
    "SyncStatus": "agent.web.status",
    "UserStore": "agent.web.users",
    "WebAccess": "agent.web.access",
    "make_web_app": "agent.web.app",
    "start_web": "agent.web.app",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.web' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
