"""End to end, for real: simulator -> Mosquitto -> `dairy-edge run` -> SQLite ->
signed batches -> `dairy-edge central` -> PostgreSQL (+ Redis).

10,000 QoS 1 messages with malformed ones mixed in: every valid message the
broker acknowledged to the publisher is in PostgreSQL exactly once (counted by
record id), and every malformed one is in the agent's quarantine with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import Barn, barn, wait_until

from agent.config.model import GatewayConfig
from agent.sources.publisher import publish
from agent.sources.simulator import BarnSimulator

MESSAGES = 10_000
BAD_RATIO = 0.03


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Barn]:
    yield from barn(tmp_path)


def test_ten_thousand_messages_arrive_exactly_once(farm: Barn) -> None:
    sim = BarnSimulator.from_dir(
        GatewayConfig().firmware_dir, seed=11, bad_ratio=BAD_RATIO, topic_prefix=farm.prefix
    )
    messages = sim.take(MESSAGES)
    started = time.monotonic()
    report = publish(messages, "127.0.0.1", farm.broker.port, qos=1)
    assert report.complete, f"broker did not acknowledge everything: {report.summary()}"

    acked = set(report.acked)
    valid = {m.key: m for m in messages if m.valid and m.key in acked}
    invalid = {m.key: m for m in messages if not m.valid and m.key in acked}
    assert invalid, "the simulator should have mixed in malformed payloads"

    def central_has_all() -> bool:
        return len(farm.central_reading_ids()) >= len(valid)

    wait_until(central_has_all, 180, f"central to receive {len(valid)} readings\n"
               f"{farm.agent.log_tail()}")
    elapsed = time.monotonic() - started

    ids = farm.central_reading_ids()
    missing = set(valid) - set(ids)
    duplicates = len(ids) - len(set(ids))
    unexpected = set(ids) - set(valid)
    assert not missing, f"{len(missing)} acknowledged valid messages missing at central"
    assert duplicates == 0
    assert not unexpected, f"{len(unexpected)} records at central that were never sent"

    quarantined = dict(farm.buffer("SELECT record_id, reason FROM quarantine"))
    assert set(invalid) <= set(quarantined), "a malformed message was not quarantined"
    wrong = {k: (m.expected_reason, quarantined[k]) for k, m in invalid.items()
             if quarantined[k] != m.expected_reason}
    assert not wrong, f"quarantined with the wrong reason: {list(wrong.items())[:5]}"
    # The buffer holds each valid message once too, and is intact.
    assert farm.buffer("SELECT COUNT(*), COUNT(DISTINCT record_id) FROM readings")[0] == (
        len(valid), len(valid))
    assert farm.integrity() == "ok"
    assert farm.agent.alive
    print(f"\ne2e: {MESSAGES} messages ({len(valid)} valid, {len(invalid)} malformed), "
          f"missing 0, duplicates 0, all at central after {elapsed:.1f} s")
