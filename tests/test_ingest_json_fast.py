"""The JSON decoder's fast path (flat objects without the duplicate-key hook) gives
exactly what the strict path gives: the same objects, the same reasons."""

from __future__ import annotations

import json
import random

import pytest

from agent.errors import InvalidPayload
from agent.ingest import decode as dec

DECODE = dec.json_decoder(8)


def strict(payload: bytes) -> object:
    """The decoder without its fast path: the reference."""
    text = dec.decode_utf8(payload)
    try:
        obj = dec._JSON.decode(text)
    except RecursionError:
        raise InvalidPayload("too_deep", "nesting exceeds the parser's limit") from None
    except ValueError as err:
        raise InvalidPayload("bad_json", str(err)[:200]) from None
    if not isinstance(obj, dict):
        raise InvalidPayload("bad_type", f"top level is {type(obj).__name__}, not an object")
    return obj


def outcome(fn: object, payload: bytes) -> tuple[str, object]:
    try:
        return "ok", fn(payload)  # type: ignore[operator]
    except InvalidPayload as err:
        return err.reason, err.detail


CASES = [
    b'{"boot":36,"seq":3045,"ts":1748753889,"t":9.09,"rh":85.2,"bat":3.097}',
    b'{"a":1,"a":2}',
    b'{"a":"x:y","a":1}',  # a colon in a string hides nothing: strict path
    b'{"a":"x:y","b":1}',
    b'{"a":1,"b":NaN}',
    b'{"a":-Infinity}',
    b'{"a":1',
    b'{"a":1} x',
    b' {"a":1}\n',
    b'{"a":1}\n',
    b'{}',
    b'{"a":{"b":1},"a":2}',
    b'{"\\u0061":1,"a":2}',  # the same key, escaped
    b'{"a\\u003a":1,"b":2}',
    b'[1,2]',
    b'"text"',
    b'{"a":tru}',
    b'{"a":1,}',
]


@pytest.mark.parametrize("payload", CASES)
def test_same_as_strict(payload: bytes) -> None:
    assert outcome(DECODE, payload) == outcome(strict, payload)


def test_duplicates_always_found_in_random_flat_objects() -> None:
    rng = random.Random(5)
    keys = ["a", "b", "c", "t:x", "seq"]
    for _ in range(2000):
        pairs = [(rng.choice(keys), rng.choice([1, 2.5, "v", "1:2", None, True]))
                 for _ in range(rng.randint(0, 5))]
        payload = ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs)
                   + "}").encode()
        got = outcome(DECODE, payload)
        assert got == outcome(strict, payload)
        if len({k for k, _ in pairs}) < len(pairs):
            assert got[0] == "duplicate_key"
