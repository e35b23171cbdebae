"""The exception hierarchy. Its shape decides what is retried.

    EdgeAgentError
    ├── ConfigError            bad or unsafe configuration: fix the file, do not retry
    ├── TransientError         retry with capped backoff (network down, 5xx, timeouts)
    │   └── RetryAfter         the peer told us when to come back
    ├── PermanentError         retrying cannot help: dead-letter the record
    │   └── InvalidPayload     a sensor message that cannot become a record (quarantined)
    └── StorageFault           the local disk failed (ENOSPC, EIO, corruption):
                               acknowledge nothing, report, recover or let systemd restart
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base of every error dairy-edge raises on purpose."""


class ConfigError(EdgeAgentError):
    """The configuration is invalid; the message names the file and the key."""


class TransientError(EdgeAgentError):
    """A temporary failure: try again later with backoff."""


class RetryAfter(TransientError):
    """The peer asked us to wait ``seconds`` before the next attempt."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds:.1f} s")
        self.seconds = seconds


class PermanentError(EdgeAgentError):
    """Retrying will not help; the item goes to a dead-letter or quarantine table."""


class InvalidPayload(PermanentError):
    """A message that cannot be turned into a record.

    ``reason`` is a short, stable code used as a metric label and stored with the
    quarantined bytes (for example ``too_large``, ``bad_json``, ``out_of_range``);
    ``detail`` is the human explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StorageFault(EdgeAgentError):
    """The local store cannot be written (disk full, I/O error, corrupt file)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
