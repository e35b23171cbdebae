"""The uploader against a real local HTTP receiver (tests/helpers_sync.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers_store import alert, event, query, reading
from helpers_sync import Receiver, Rig, unsynced

from agent.errors import RetryAfter, TransientError
from agent.records.protocol import batch_id_for
from agent.sync import Outcome, RequestRefused

pytest_plugins = ("helpers_sync_fixtures",)  # the fixture: receiver


async def test_ok_batch_lanes_signature_and_idle(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url)
    rig.fill([reading(i) for i in range(10)] + [event(1), alert(1)])
    out = await rig.up.sync_once()
    assert out.outcome == Outcome.SENT and out.seq == 1 and out.records == 12
    assert out.batch_id == batch_id_for("gw-01", rig.writer.epoch, 1)
    batch = receiver.batches[0]
    # Priority lanes: alerts, then events, then readings.
    assert [r.kind for r in batch.records[:2]] == ["alert", "event"]
    assert batch.records[2].record_id == "r-s1-0"
    assert receiver.bad_signatures == 0
    assert unsynced(rig.db) == 0 and rig.up.backlog == 0
    assert rig.up.last_success_mono is not None
    st = rig.up.status()
    assert st["last_error"] is None and st["backlog"] == 0
    assert isinstance(st["last_success_age_s"], float)
    assert (await rig.up.sync_once()).outcome == Outcome.IDLE
    rig.fill([reading(100)])
    out2 = await rig.up.sync_once()
    assert out2.seq == 2 and out2.records == 1
    await rig.close()


async def test_batch_limits(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, batch_max_records=7, batch_max_bytes=4096)
    rig.fill([reading(i) for i in range(20)])
    out = await rig.up.sync_once()
    assert out.records == 7 and out.full
    rig.fill([reading(i, sensor="big", pad=3000) for i in range(3)])
    sizes = []
    while (o := await rig.up.sync_once()).outcome == Outcome.SENT:
        sizes.append(o.records)
    # 13 small ones at <= 7 per batch, then the 3 KB records one per batch.
    assert sizes == [7, 6, 1, 1, 1]
    assert unsynced(rig.db) == 0
    await rig.close()


async def test_500_keeps_data_and_resends_same_batch(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url)
    rig.fill([reading(i) for i in range(5)])
    receiver.mode = "500"
    with pytest.raises(TransientError):
        await rig.up.sync_once()
    assert unsynced(rig.db) == 5
    rig.fill([reading(i) for i in range(5, 8)])  # arrives while the batch is open
    receiver.mode = "ok"
    out = await rig.up.sync_once()
    assert out.resumed and out.seq == 1
    first, second = receiver.batches
    assert first.batch_id == second.batch_id
    assert [r.record_id for r in first.records] == [r.record_id for r in second.records]
    out = await rig.up.sync_once()
    assert out.seq == 2 and out.records == 3
    await rig.close()


async def test_crash_resends_same_open_batch(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "b.db"
    rig = Rig(db, receiver.url, request_timeout_s=0.3)
    rig.fill([alert(1)] + [reading(i) for i in range(4)])
    receiver.mode = "hang"
    with pytest.raises(TransientError):
        await rig.up.sync_once()
    await rig.close()  # "crash": the process goes away with the batch open

    rig2 = Rig(db, receiver.url)
    rig2.fill([reading(i) for i in range(4, 9)])
    receiver.mode = "ok"
    out = await rig2.up.sync_once()
    assert out.resumed and out.seq == 1
    sent, resent = receiver.batches[0], receiver.batches[-1]
    assert resent.batch_id == sent.batch_id == batch_id_for("gw-01", rig2.writer.epoch, 1)
    assert resent.seq == sent.seq == 1
    assert [r.record_id for r in resent.records] == [r.record_id for r in sent.records]
    out = await rig2.up.sync_once()
    assert out.seq == 2 and out.records == 5
    assert unsynced(db) == 0
    await rig2.close()


async def test_poison_record_dead_lettered(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "b.db"
    rig = Rig(db, receiver.url, max_attempts=3)
    rig.fill([reading(i) for i in range(10)])
    receiver.reject_ids = {"r-s1-3"}
    out = await rig.up.sync_once()
    # The others are synced on the first attempt.
    assert out.applied.synced == 9 and out.applied.rejected == 1
    assert unsynced(db) == 1
    await rig.up.sync_once()
    out = await rig.up.sync_once()
    assert out.applied.dead_lettered == 1 and out.applied.dead_ids == ["r-s1-3"]
    assert unsynced(db) == 0
    assert query(db, "SELECT kind, record_id, reason, attempts FROM dead_letter") == [
        ("reading", "r-s1-3", "poison", 3)
    ]
    assert (await rig.up.sync_once()).outcome == Outcome.IDLE
    # A redelivery of the dead record is still a dedup hit, not a new upload.
    rig.fill([reading(3)])
    assert (await rig.up.sync_once()).outcome == Outcome.IDLE
    await rig.close()


async def test_503_retry_after_raises_and_run_honours_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url)
    rig.fill([reading(1)])
    receiver.mode = "503"
    receiver.retry_after = "7"
    with pytest.raises(RetryAfter) as info:
        await rig.up.sync_once()
    assert info.value.seconds == pytest.approx(7)

    receiver.retry_after = "1"
    stop = asyncio.Event()
    task = asyncio.create_task(rig.up.run(stop))
    await asyncio.sleep(1.6)
    stop.set()
    await asyncio.wait_for(task, 2)
    times = receiver.request_times[1:]
    # backoff_base is 10 ms: without Retry-After there would be dozens of tries.
    assert 1 <= len(times) <= 2
    if len(times) == 2:
        assert times[1] - times[0] >= 0.95
    assert unsynced(rig.db) == 1
    await rig.close()


async def test_hang_times_out_and_400_keeps_data(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, request_timeout_s=0.3)
    rig.fill([reading(1)])
    receiver.mode = "hang"
    t0 = time.monotonic()
    with pytest.raises(TransientError):
        await rig.up.sync_once()
    assert time.monotonic() - t0 < 1.5
    receiver.mode = "400"
    with pytest.raises(RequestRefused) as info:
        await rig.up.sync_once()
    assert info.value.status == 400
    assert unsynced(rig.db) == 1
    await rig.close()


async def test_bad_key_is_refused_and_connection_refused_is_transient(
    tmp_path: Path, receiver: Receiver
) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url)
    rig.fill([reading(1)])
    rig.up._key = b"wrong"
    with pytest.raises(RequestRefused):
        await rig.up.sync_once()
    assert receiver.bad_signatures == 1
    await rig.close()
    rig2 = Rig(tmp_path / "c.db", "http://127.0.0.1:9/api/v1/batches")
    rig2.fill([reading(1)])
    with pytest.raises(TransientError):
        await rig2.up.sync_once()
    await rig2.close()


async def test_run_loop_recovers_and_stops(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url, batch_max_records=10)
    rig.fill([reading(i) for i in range(35)])
    receiver.mode = "500"
    stop = asyncio.Event()
    task = asyncio.create_task(rig.up.run(stop))
    await asyncio.sleep(0.3)
    assert rig.up.last_error == "HTTP 500"
    assert rig.up.status()["state"] in ("backoff", "uploading")
    receiver.mode = "ok"
    deadline = time.monotonic() + 5
    while unsynced(rig.db) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert unsynced(rig.db) == 0
    assert rig.up.last_error is None
    stop.set()
    await asyncio.wait_for(task, 2)
    await rig.close()


async def test_409_starts_a_new_epoch_and_resends(tmp_path: Path, receiver: Receiver) -> None:
    rig = Rig(tmp_path / "b.db", receiver.url)
    rig.fill([reading(i) for i in range(4)])
    old_epoch = rig.writer.epoch
    receiver.mode = "409"
    assert await rig.up._one_round() == 0.0  # no backoff: resend at once
    assert rig.writer.epoch != old_epoch
    assert unsynced(rig.db) == 4
    receiver.mode = "ok"
    out = await rig.up.sync_once()
    assert out.seq == 1 and out.records == 4
    assert receiver.batches[-1].epoch == rig.writer.epoch
    assert unsynced(rig.db) == 0
    await rig.close()


async def test_commit_wakes_an_idle_uploader_and_backoff_is_not_cut_short(
    tmp_path: Path, receiver: Receiver
) -> None:
    # A long idle pause: without the wake-up a record would wait 30 s.
    rig = Rig(tmp_path / "b.db", receiver.url, interval_s=30.0, linger_s=0.05)
    rig.writer.on_group_commit = rig.up.records_committed
    stop = asyncio.Event()
    task = asyncio.create_task(rig.up.run(stop))
    await asyncio.sleep(0.3)  # first round: nothing to send, now idle for 30 s
    t0 = time.monotonic()
    rig.fill([reading(1)])
    while unsynced(rig.db) and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.01)
    assert unsynced(rig.db) == 0
    assert time.monotonic() - t0 < 2.0
    # After a failure the pause is a backoff: new records do not end it early.
    receiver.mode = "500"
    rig.up.backoff = type(rig.up.backoff)(10.0, 10.0)
    rig.fill([reading(2)])
    await asyncio.sleep(0.5)
    assert rig.up.last_error == "HTTP 500" and rig.up.state == "backoff"
    sent = len(receiver.batches)
    rig.fill([reading(3)])
    await asyncio.sleep(0.5)
    assert len(receiver.batches) == sent  # still waiting out the 10 s backoff
    stop.set()
    await asyncio.wait_for(task, 2)
    await rig.close()
