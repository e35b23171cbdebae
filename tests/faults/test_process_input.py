"""Hostile and repeated input against the real agent process: T12 (duplicates),
T13 (fuzzed payloads), T14 (huge payloads), T15 (topic and id injection).

Oracle: the publisher's PUBACK list. Every acknowledged valid message is at
PostgreSQL exactly once; every bad one is in the agent's quarantine with a
reason, its topic and payload stored verbatim (bound parameters); the agent
never exits.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_harness import BackgroundPublisher, Barn, barn, wait_until

from agent.clock import SystemClock
from agent.config.model import GatewayConfig, IngestConfig
from agent.errors import InvalidPayload
from agent.ingest.pipeline import REASONS, Ingestor
from agent.records.types import stable_id
from agent.sources.publisher import publish
from agent.sources.simulator import BarnSimulator, SimMessage

KIB = 1024


def _sim(farm: Barn, seed: int) -> BarnSimulator:
    return BarnSimulator.from_dir(GatewayConfig().firmware_dir, seed=seed, topic_prefix=farm.prefix)


def _bad(topic: str, payload: bytes) -> SimMessage:
    return SimMessage(topic, payload, False, None, stable_id(topic, payload))


def _ingestor(farm: Barn, max_payload: int = 64 * KIB) -> Ingestor:
    """The agent's own parser, in-process: which fuzzed inputs it would accept."""
    g = GatewayConfig()
    cfg = IngestConfig(topic_prefix=farm.prefix, max_payload_bytes=max_payload)
    return Ingestor(g.firmware_dir, g.calibration_dir, cfg, SystemClock(), "oracle")


def _publish(farm: Barn, messages: list[SimMessage], window: int = 100) -> set[str]:
    report = BackgroundPublisher(messages, farm.broker.port, rate=None, window=window).join(300)
    assert report.complete, report.summary()
    return set(report.acked)


def _quarantine(farm: Barn) -> dict[str, tuple[str, str, bytes, str]]:
    rows = farm.buffer("SELECT record_id, topic, CAST(payload AS BLOB), reason, detail "
                       "FROM quarantine")
    return {r[0]: (r[1], r[3], bytes(r[2]), r[4]) for r in rows}


def _schema(farm: Barn) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    sqlite = farm.buffer("SELECT type, name, sql FROM sqlite_master ORDER BY name")
    pg = farm.db.query("SELECT table_name, column_name, data_type FROM information_schema.columns"
                       " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
    return sqlite, pg


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Barn]:
    yield from barn(tmp_path)


# -- T12 -------------------------------------------------------------------


def test_t12_duplicate_delivery_counted_and_stored_once(farm: Barn) -> None:
    rng = random.Random(12)
    originals = _sim(farm, seed=12).take(1000)
    repeats = rng.sample(originals, len(originals) // 10)
    stream = list(originals)
    for msg in repeats:  # each repeat lands somewhere after its original
        at = stream.index(msg) + 1 + rng.randrange(50)
        stream.insert(min(at, len(stream)), msg)
    acked = _publish(farm, stream)
    assert acked == {m.key for m in originals}

    farm.wait_all_at_central(acked, timeout=120)
    missing, dups, unexpected = farm.check_exactly_once(acked)
    assert not missing and dups == 0 and not unexpected
    assert farm.buffer("SELECT COUNT(*), COUNT(DISTINCT record_id) FROM readings")[0] == (
        len(acked), len(acked))
    wait_until(lambda: farm.metrics().get("dairy_edge_dedup_hits_total") == len(repeats), 30,
               f"dedup_hits_total == {len(repeats)} (now "
               f"{farm.metrics().get('dairy_edge_dedup_hits_total')})")
    assert farm.integrity() == "ok"


# -- T13 -------------------------------------------------------------------


def _fuzz(rng: random.Random, seeds: list[SimMessage], prefix: str) -> SimMessage:
    base = rng.choice(seeds)
    kind = base.topic.split("/")[1]
    topic = f"{prefix}/{kind}/fuzz-{rng.randrange(5)}"  # own sensor ids: never a valid record
    data = bytearray(base.payload)
    how = rng.randrange(7)
    if how == 0:
        data = bytearray(rng.randbytes(rng.randrange(0, 300)))
    elif how == 1:
        for _ in range(rng.randrange(1, 6)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 2:
        data = data[: rng.randrange(len(data) + 1)]
    elif how == 3:
        pos = rng.randrange(len(data) + 1)
        data[pos:pos] = rng.choice([b"\x00", b"\xff\xfe", b"NaN", b"{", b"]]]", b'"', b"\\u0000",
                                    b"1e999", b"-", b",", b'"x":{"y":[[[[[[[[[[1]]]]]]]]]]}'])
    elif how == 4:
        data = bytearray(json.dumps(rng.choice([None, [], {}, 1.5, "x", [1, [2, [3]]],
                                                {"a": {"b": {"c": {}}}}])).encode())
    elif how == 5:
        data = bytearray(b"[" * rng.randrange(10, 5000) + b"]" * rng.randrange(10))
    else:
        data = bytearray(base.payload.replace(b":", b"::", 1).replace(b",", b";", 2))
    return _bad(topic, bytes(data))


@pytest.mark.slow
def test_t13_fuzzed_payloads_never_stop_the_agent(farm: Barn) -> None:
    rng = random.Random(13)
    valid = _sim(farm, seed=13).take(300)
    fuzz = [_fuzz(rng, valid, farm.prefix) for _ in range(3000)]
    stream = fuzz + valid
    rng.shuffle(stream)
    acked = _publish(farm, stream)
    valid_keys = {m.key for m in valid}
    assert valid_keys <= acked

    farm.wait_all_at_central(valid_keys, timeout=120)
    assert farm.agent.alive, farm.agent.log_tail()
    missing, dups, _ = farm.check_exactly_once(valid_keys)
    assert not missing and dups == 0

    # Each fuzzed message: quarantined with a reason, or (rarely) a well-formed
    # reading by chance, which the agent's own parser confirms.
    oracle = _ingestor(farm)
    quarantined = _quarantine(farm)
    stored_by_chance = set()
    for msg in fuzz:
        entry = quarantined.get(msg.key)
        if entry is not None:
            topic, reason, payload, _detail = entry
            assert reason in REASONS, f"{reason!r} for {msg.payload[:80]!r}"
            assert (topic, payload) == (msg.topic, msg.payload)
            continue
        try:
            rec = oracle.parse(msg.topic, msg.payload)
        except InvalidPayload as err:
            raise AssertionError(f"not quarantined ({err.reason}): {msg.payload[:80]!r}") from err
        stored_by_chance.add(rec.record_id)
    if stored_by_chance:
        farm.wait_all_at_central(valid_keys | stored_by_chance, timeout=60)
    reasons = dict(farm.buffer("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason"))
    assert "internal" not in reasons, "a fuzzed payload hit a parser bug"
    assert farm.integrity() == "ok"
    assert farm.agent.alive
    print(f"\nT13: {len(fuzz)} fuzzed + {len(valid)} valid; quarantined by reason {reasons}; "
          f"{len(stored_by_chance)} fuzzed payloads were well-formed readings")


# -- T14 -------------------------------------------------------------------


@pytest.fixture
def farm_limits(tmp_path: Path) -> Iterator[Barn]:
    yield from barn(tmp_path, broker_extra=("message_size_limit 1048576",),
                    agent_overrides={"ingest": {"max_payload_bytes": 256 * KIB}})


@pytest.mark.slow
def test_t14_huge_payloads_rejected_before_parsing(farm_limits: Barn) -> None:
    farm = farm_limits
    sim = _sim(farm, seed=14)
    normal = sim.take(200)
    tank = next(m for m in normal if "/tank/" in m.topic)
    body = json.loads(tank.payload)
    body["msg_id"] = "a81f-999001"
    body["note"] = "n" * (200 * KIB)  # big, under the agent's limit: stored
    big_ok = json.dumps(body).encode()
    oracle = _ingestor(farm, 256 * KIB)
    big_rec = oracle.parse(tank.topic, big_ok)
    big_ok_msg = SimMessage(tank.topic, big_ok, True, None, big_rec.record_id)
    over_agent = [_bad(tank.topic, b"{" + bytes([65 + i]) * (256 * KIB) + b"}")
                  for i in range(5)]
    at_broker_limit = [_bad(tank.topic, bytes([97 + i]) * (1024 * KIB - 64)) for i in range(5)]
    over_broker = [_bad(tank.topic, b"z" * (1024 * KIB + 1 + i)) for i in range(3)]
    stream = [*normal[:100], *over_agent, big_ok_msg, *at_broker_limit, *normal[100:]]
    acked = _publish(farm, stream, window=10)
    assert {m.key for m in stream} == acked

    # Mosquitto drops these (MQTT 5: no success PUBACK); they never reach the agent.
    refused = publish(over_broker, "127.0.0.1", farm.broker.port, qos=1, ack_timeout_s=5)
    assert not refused.acked, "the broker accepted a payload over message_size_limit"

    valid = {m.key for m in normal} | {big_ok_msg.key}
    farm.wait_all_at_central(valid, timeout=120)
    missing, dups, _ = farm.check_exactly_once(valid)
    assert not missing and dups == 0
    stored = farm.db.query("SELECT raw FROM readings WHERE device_id = %s AND record_id = %s",
                           (farm.gateway_id, big_ok_msg.key))
    assert stored and stored[0][0] == big_rec.raw  # intact: every value as sent

    quarantined = _quarantine(farm)
    too_large = [*over_agent, *at_broker_limit]
    for msg in too_large:
        _topic, reason, payload, detail = quarantined[msg.key]
        assert reason == "too_large", (reason, detail)
        assert payload == msg.payload[: 256 * KIB]  # kept only up to the limit
    wait_until(lambda: farm.metrics().get('dairy_edge_rejected_total{reason="too_large"}')
               == len(too_large), 30,
               f"rejected_total{{too_large}} == {len(too_large)}: {farm.metrics()}")
    hwm_mib = farm.agent.vm_hwm_kib() / 1024
    assert hwm_mib < 256, f"agent peak RSS {hwm_mib:.0f} MiB"
    assert farm.agent.alive and farm.integrity() == "ok"
    print(f"\nT14: {len(too_large)} oversized payloads quarantined (too_large), "
          f"{len(over_broker)} refused by the broker, agent VmHWM {hwm_mib:.0f} MiB")


# -- T15 -------------------------------------------------------------------

HOSTILE = ["'); DROP TABLE readings;--", "<script>alert(1)</script>", "a+b", "#", "..",
           "../../../tmp/pwned", "x\x00y", "A" * (64 * KIB - 200), "%2e%2e%2f", "a b",
           "\u202egnp.exe", "${jndi:ldap://x}"]


def _injections(farm: Barn, seeds: list[SimMessage]) -> list[SimMessage]:
    tank = next(m for m in seeds if "/tank/" in m.topic)
    milk = next(m for m in seeds if "/milk/" in m.topic)
    out = []
    for text in HOSTILE:
        # In the topic: as the sensor id, and as extra levels (wildcards and NUL
        # cannot be published in a topic name at all).
        if not any(c in text for c in "+#\x00"):
            out.append(_bad(f"{farm.prefix}/tank/{text}", tank.payload))
        # In the payload: the device's message id and the cow id.
        body = json.loads(tank.payload)
        body["msg_id"] = text
        out.append(_bad(tank.topic, json.dumps(body).encode()))
        cols = milk.payload.decode().rstrip("\n").split(",")
        cols[-5 if len(cols) > 5 else -1] = text.replace(",", "")
        out.append(_bad(milk.topic, (",".join(cols) + "\n").encode()))
    return out


@pytest.mark.slow
def test_t15_topic_and_id_injection(farm: Barn, tmp_path: Path) -> None:
    sim = _sim(farm, seed=15)
    valid = sim.take(200)
    schema_before = _schema(farm)
    files_before = {p for p in tmp_path.rglob("*") if farm.data_dir not in p.parents}
    repo = Path(__file__).resolve().parents[2]
    repo_before = {p.name for p in repo.iterdir()}

    hostile = _injections(farm, valid)
    acked = _publish(farm, [*valid[:100], *hostile, *valid[100:]])
    assert {m.key for m in hostile} <= acked

    valid_keys = {m.key for m in valid}
    farm.wait_all_at_central(valid_keys, timeout=120)
    missing, dups, unexpected = farm.check_exactly_once(valid_keys)
    assert not missing and dups == 0 and not unexpected

    oracle = _ingestor(farm)
    quarantined = _quarantine(farm)
    for msg in hostile:
        entry = quarantined.get(msg.key)
        assert entry is not None, f"injection neither quarantined nor refused: {msg.topic[:80]!r}"
        topic, reason, payload, _ = entry
        assert reason in REASONS and (topic, payload) == (msg.topic, msg.payload)
        with pytest.raises(InvalidPayload):
            oracle.parse(msg.topic, msg.payload)

    assert _schema(farm) == schema_before, "the schema changed"
    assert farm.db.query("SELECT count(*) FROM readings")[0][0] == len(valid)
    files_after = {p for p in tmp_path.rglob("*") if farm.data_dir not in p.parents}
    assert files_after == files_before, files_after - files_before
    assert {p.name for p in repo.iterdir()} - repo_before <= {".pytest_cache", "out"}
    assert not Path("/tmp/pwned").exists()
    assert {p.name for p in farm.data_dir.iterdir()} <= {"buffer.db", "buffer.db-wal",
                                                         "buffer.db-shm"}

    # The status page: hostile text never reaches it raw.
    status, _headers, page = farm.http_get("/")
    # The page's own two scripts (its strings, its code) and nothing else.
    scripts = re.findall(r"<script[^>]*>", page, flags=re.IGNORECASE)
    assert status == 200 and len(scripts) == 2, scripts
    assert all('id="i18n"' in t or 'src="/static/app.js' in t for t in scripts), scripts
    _, api_headers, api = farm.http_get("/api/status")
    assert api_headers["Content-Type"].startswith("application/json")
    assert "<script" not in json.dumps(json.loads(api)).lower()
    assert farm.agent.alive and farm.integrity() == "ok"
