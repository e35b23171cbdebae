"""Property: whatever arrives, parse returns a Reading or raises InvalidPayload."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import InvalidPayload
from agent.ingest import REASONS
from agent.records.types import Reading
from agent.sources.simulator import BarnSimulator
from tests.helpers_ingest import make_ingestor

ING = make_ingestor(max_payload_bytes=4096)
SAMPLES = BarnSimulator(ING.specs, seed=11, herd_size=5, sensors_per_kind=1).take(300)
TOPICS = sorted({m.topic for m in SAMPLES})
PAYLOADS = [m.payload for m in SAMPLES]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real payload with a few bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(PAYLOADS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@st.composite
def json_object(draw: st.DrawFn) -> bytes:
    """Real field names with arbitrary JSON values."""
    base = json.loads(draw(st.sampled_from([p for p in PAYLOADS if p.startswith(b"{")])))
    for key in list(base):
        if draw(st.booleans()):
            base[key] = draw(json_values)
    return json.dumps(base).encode()


topics = st.one_of(
    st.sampled_from(TOPICS),
    st.text(max_size=60),
    st.builds(
        lambda t, s: t.rsplit("/", 1)[0] + "/" + s, st.sampled_from(TOPICS), st.text(max_size=70)
    ),
)
payloads = st.one_of(st.binary(max_size=600), mutated(), json_object(), st.sampled_from(PAYLOADS))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, payload=payloads)
def test_parse_only_raises_invalid_payload(topic: str, payload: bytes) -> None:
    try:
        reading = ING.parse(topic, payload)
    except InvalidPayload as err:
        assert err.reason in REASONS
        entry = ING.quarantine(topic, payload, err)
        # Quarantine keeps an oversized payload only up to the size limit.
        assert entry.reason == err.reason and entry.payload == payload[:4096]
        return
    assert isinstance(reading, Reading)
    for value in reading.values.values():
        assert math.isfinite(value)


def test_valid_samples_still_parse() -> None:
    assert all(isinstance(ING.parse(m.topic, m.payload), Reading) for m in SAMPLES)
