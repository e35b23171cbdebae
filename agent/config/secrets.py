"""Secrets come from the environment or systemd credentials, never from the file.

``read_secret("hmac_key")`` looks, in order, at:
    $DAIRY_EDGE_HMAC_KEY
    $CREDENTIALS_DIRECTORY/hmac_key    (systemd LoadCredential=hmac_key:...)
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "DAIRY_EDGE_"


def read_secret(name: str) -> str | None:
    """The secret called ``name``, or None when it is not provided."""
    value = os.environ.get(ENV_PREFIX + name.upper())
    if value:
        return value
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / name
        if path.is_file():
            return path.read_text().strip() or None
    return None
