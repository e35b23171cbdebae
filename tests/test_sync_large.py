"""Large batches: answers longer than one read, and batches grown for a backlog."""

from __future__ import annotations

from pathlib import Path

from helpers_central import KEY, KEY_ID, unique_device
from helpers_store import reading, stamp
from helpers_sync import Receiver, Rig, unsynced

from agent.central import CentralHandle
from agent.clock import SystemClock
from agent.config.model import SyncConfig
from agent.records import Reading
from agent.sync import Outcome, Uploader

pytest_plugins = ("helpers_central_fixtures", "helpers_sync_fixtures")


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


def _meter_reading(i: int) -> Reading:
    """A reading with eight metrics (a milk meter's), more than most sensors send."""
    names = ("yield_kg", "flow_kg_min", "conductivity", "temp_c", "fat_pct", "protein_pct",
             "lactose_pct", "duration_s")
    values = {name: 10.0 + i / 1000 + k for k, name in enumerate(names)}
    return Reading(record_id=f"m-{i}", sensor_id=f"meter-{i % 24}", firmware="fw-test",
                   topic=f"parlour/meter-{i % 24}", values=values, raw=dict(values),
                   units=dict.fromkeys(names, "u"), stamp=stamp(), animal_id=f"{1000 + i % 90}")


async def test_a_default_batch_fits_a_default_receiver(
    central: CentralHandle, tmp_path: Path
) -> None:
    """The gateway's default batch (sync.batch_max_records / batch_max_bytes) of
    eight-metric readings is taken whole by central's default limits (max_records,
    max_decompressed_bytes, max_json_values): no 413 and no halving for a backlog."""
    defaults = SyncConfig()
    rig = Rig(tmp_path / "b.db", central.url, key_id=KEY_ID)
    assert rig.config.batch_max_records == defaults.batch_max_records >= 2000
    assert rig.config.batch_max_bytes == defaults.batch_max_bytes
    rig.up = Uploader(rig.config, unique_device(), KEY, rig.writer, rig.db, rig.transport,
                      SystemClock())
    try:
        rig.fill([_meter_reading(i) for i in range(defaults.batch_max_records + 10)])
        out = await rig.up.sync_once()
        assert out.outcome == Outcome.SENT and out.full
        assert out.records == defaults.batch_max_records == out.applied.synced
        assert (await rig.up.sync_once()).records == 10
        assert unsynced(rig.db) == 0
    finally:
        await rig.close()
