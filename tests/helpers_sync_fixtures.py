"""The sync test fixtures (a plugin: pytest_plugins = ("helpers_sync_fixtures",)):
``receiver``, the small local batch receiver of helpers_sync, started and stopped.

Kept apart from helpers_sync so pytest can load this module itself before any
test module imports it (as helpers_central_fixtures is).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers_sync import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A local batch receiver answering "ok", stopped after the test."""
    r = Receiver()
    await r.start()
    yield r
    await r.stop()
