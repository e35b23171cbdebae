"""Sync: batch, sign, upload, back off, apply per-record answers."""

from agent.sync.backoff import Backoff, parse_retry_after
from agent.sync.transport import AiohttpTransport, SyncTransport, TransportResponse
from agent.sync.uploader import BatchTooLarge, Outcome, RequestRefused, SyncOutcome, Uploader

__all__ = [
    "AiohttpTransport",
    "Backoff",
    "BatchTooLarge",
    "Outcome",
    "RequestRefused",
    "SyncOutcome",
    "SyncTransport",
    "TransportResponse",
    "Uploader",
    "parse_retry_after",
]
