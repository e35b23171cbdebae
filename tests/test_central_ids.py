"""Ids are whole-string matches everywhere: a trailing newline or a control character is
refused by ingest, by the central receiver (envelope, records, headers) and by key parsing.

``re.match`` with a pattern ending in ``$`` accepts "id\\n" ("$" also matches before a
final newline); these tests fail on that.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from helpers_central import KEY, KEY_ID, batch_doc, post, reading, signed, unique_device

from agent.central import CentralHandle, load_keys
from agent.central.keys import KeyRuleError, check_gateway, check_key_id, parse_keys
from agent.errors import ConfigError, InvalidPayload
from agent.records.protocol import HEADER_AUTH
from agent.sync.signing import headers_for
from tests.helpers_ingest import make_ingestor

pytest_plugins = ("helpers_central_fixtures",)

BAD_SUFFIXES = ["\n", "\r", "\t", "\x00", "\x1b", " ", "\u2028"]
TANK = b'{"msg_id":"a81f-000123","ts":1748753940,"temp":3.9,"agitator":"on","level_l":8125,' \
       b'"wash":false}'


@pytest.mark.parametrize("suffix", BAD_SUFFIXES, ids=repr)
def test_ingest_refuses_ids_with_control_characters(suffix: str) -> None:
    ingestor = make_ingestor()
    assert ingestor.parse("barn/tank/tank-03", TANK).sensor_id == "tank-03"
    with pytest.raises(InvalidPayload) as info:
        ingestor.parse("barn/tank/tank-03" + suffix, TANK)
    assert info.value.reason in ("bad_id", "unknown_topic")
    payload = json.loads(TANK)
    payload["msg_id"] = "a81f-000123" + suffix
    with pytest.raises(InvalidPayload) as info:
        ingestor.parse("barn/tank/tank-03", json.dumps(payload).encode())
    assert info.value.reason == "bad_id"


@pytest.mark.parametrize("suffix", BAD_SUFFIXES, ids=repr)
def test_key_and_gateway_ids_are_whole_matches(suffix: str) -> None:
    with pytest.raises(KeyRuleError):
        check_gateway("gw-01" + suffix)
    with pytest.raises(KeyRuleError):
        check_key_id("k1" + suffix)
    with pytest.raises(ConfigError):
        parse_keys(f"gw-01{suffix}/k1=secret")


def test_secrets_keys_with_a_newline_in_the_id_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    # A newline separates items, so "k1\n=x" is two broken items, never the id "k1\n".
    monkeypatch.setenv("DAIRY_EDGE_CENTRAL_KEYS", "k1\n=abc")
    with pytest.raises(ConfigError):
        load_keys()
    monkeypatch.setenv("DAIRY_EDGE_CENTRAL_KEYS", "k1\t=abc")
    with pytest.raises(ConfigError):
        load_keys()
    monkeypatch.setenv("DAIRY_EDGE_CENTRAL_KEYS", " k1=abc ,\tgw-01/k2=def\n")
    keys = load_keys()  # whitespace around an item is trimmed
    assert keys["k1"] == b"abc" and keys["k2"].device_id == "gw-01"  # type: ignore[union-attr]


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", "\x7f", "\u0085"], ids=repr)
async def test_central_refuses_control_characters_in_ids(
    central: CentralHandle, http: aiohttp.ClientSession, suffix: str
) -> None:
    device = unique_device()
    # A record id with the suffix is rejected on its own; its neighbour is stored.
    doc = batch_doc(device, 1, [reading(1), reading(2, record_id="nl0001" + suffix)])
    status, data, _ = await post(http, central, *signed(doc))
    assert status == 200, data
    assert [r["status"] for r in data["results"]] == ["accepted", "rejected"]
    reason = data["results"][1]["reason"]
    assert "record_id" in reason or reason == "nul_character", reason
    # Envelope ids with the suffix fail the whole batch.
    for field in ("device_id", "epoch", "batch_id"):
        bad = batch_doc(device, 2, [reading(3)])
        bad[field] = str(bad[field]) + suffix
        body, headers = signed(bad)
        headers.pop("X-Dairy-Batch-Id", None)  # aiohttp will not send control characters
        status, data, _ = await post(http, central, body, headers)
        assert status == 400 and data["error"] == "bad_batch", (field, data)
    stats = await central.stats()
    assert stats["devices"][device]["reading"] == 1
    assert not [d for d in stats["devices"] if d != d.strip() or "\x00" in d]


async def test_central_refuses_a_gateway_header_with_a_newline(
    central: CentralHandle, http: aiohttp.ClientSession
) -> None:
    device = unique_device()
    body, _ = signed(batch_doc(device, 1, [reading(1)]))
    headers = headers_for(KEY_ID, KEY, f"{device}:e1:1", body, device + "\n")
    # aiohttp will not send a raw newline in a header; an encoded one is still refused.
    headers["X-Dairy-Gateway"] = device + "%0A"
    status, data, _ = await post(http, central, body, headers)
    assert status in (401, 403), data
    headers = headers_for(KEY_ID, KEY, f"{device}:e1:1", body, device)
    assert HEADER_AUTH in headers
    status, data, _ = await post(http, central, body, headers)
    assert status == 200, data
