"""Large batches: answers longer than one read, and batches grown for a backlog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers_store import reading
from helpers_sync import Receiver, Rig, unsynced

from agent.sync import Outcome


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_an_answer_longer_than_one_read_is_read_whole(
    tmp_path: Path, receiver: Receiver
) -> None:
    # 3,000 results are about 200 kB of JSON: more than aiohttp hands over in one
    # read, so a single read(n) cut the answer and the batch was retried forever.
    rig = Rig(tmp_path / "b.db", receiver.url, batch_max_records=3000,
              batch_max_bytes=8 * 1024 * 1024)
    rig.fill([reading(i) for i in range(3000)])
    out = await rig.up.sync_once()
    assert out.outcome == Outcome.SENT and out.records == 3000
    assert out.applied.synced == 3000
    assert unsynced(rig.db) == 0
    assert len(receiver.accepted) == 3000
    await rig.close()
