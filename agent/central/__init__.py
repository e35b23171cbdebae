"""The reference central receiver: verify signed batches, store them exactly once.

May import records (the protocol types) and config only (architecture.md).
"""

from agent.central.app import make_app
from agent.central.cache import Cache
from agent.central.server import CentralHandle, load_keys, run_central, serve_app
from agent.central.service import serve_forever, start_central
from agent.central.store import CentralStore, StoreUnavailable, open_store

__all__ = [
    "Cache",
    "CentralHandle",
    "CentralStore",
    "StoreUnavailable",
    "load_keys",
    "make_app",
    "open_store",
    "run_central",
    "serve_app",
    "serve_forever",
    "start_central",
]
