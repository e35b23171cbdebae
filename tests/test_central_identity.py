"""Each gateway's key binds its identity at central (PostgreSQL and SQLite).

The attacks of issue 12, replayed: a valid key of one gateway posting as another,
pushing another gateway's sequence, pre-empting its record ids, reusing a stored
batch id with new records. Every one is refused and writes nothing.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers_central import KEYS, batch_doc, central_config, post, reading, unique_device
from helpers_store import reading as gateway_reading
from helpers_sync import KEY as RIG_KEY
from helpers_sync import Rig

from agent.central import CentralHandle, run_central
from agent.central.app import STATE
from agent.central.keys import GatewayKey, KeyRuleError, new_secret
from agent.central.store import CentralStore
from agent.cli.main import main
from agent.clock import SystemClock
from agent.sync import Uploader
from agent.sync.signing import headers_for

pytest_plugins = ("helpers_central_fixtures",)


def v2(doc: dict[str, Any], key_id: str, secret: str | bytes,
       gateway: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A batch as a gateway sends it: gzip, body signature and the signed header."""
    body = gzip.compress(json.dumps(doc).encode())
    key = secret.encode() if isinstance(secret, str) else secret
    return body, headers_for(key_id, key, doc["batch_id"], body, gateway or doc["device_id"])


async def reload_keys(handle: CentralHandle) -> None:
    await handle.runner.app[STATE].keyring.refresh()


async def counts(store: CentralStore, device: str) -> dict[str, int]:
    return dict((await store.stats())["devices"].get(device, {}))


async def two_gateways(store: CentralStore) -> tuple[str, str, str, str]:
    a, b = unique_device(), unique_device()
    secret_a, secret_b = new_secret(), new_secret()
    await store.add_key(a, f"{a}-k", secret_a)
    await store.add_key(b, f"{b}-k", secret_b)
    return a, secret_a, b, secret_b


async def test_a_key_writes_only_as_its_own_gateway(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    a, secret_a, b, _ = await two_gateways(store)
    await reload_keys(central)
    status, data, _ = await post(http, central, *v2(batch_doc(a, 1, [reading(1)]), f"{a}-k",
                                                    secret_a))
    assert status == 200 and data["results"][0]["status"] == "accepted"

    # A's key, posting as B: in the signed header ...
    status, data, _ = await post(http, central, *v2(batch_doc(b, 1, [reading(1)]), f"{a}-k",
                                                    secret_a))
    assert status == 403 and data["error"] == "wrong_gateway"
    # ... or only in the body (the header names A): refused after parsing, nothing stored.
    status, data, _ = await post(http, central, *v2(batch_doc(b, 1, [reading(1)]), f"{a}-k",
                                                    secret_a, gateway=a))
    assert status == 403 and data["error"] == "wrong_gateway"
    # ... or with the body signature only.
    doc = batch_doc(b, 1, [reading(2)])
    body, headers = v2(doc, f"{a}-k", secret_a)
    for name in ("X-Dairy-Auth", "X-Dairy-Gateway", "X-Dairy-Body-SHA256"):
        headers.pop(name)
    status, data, _ = await post(http, central, body, headers)
    assert status == 403 and data["error"] == "wrong_gateway"
    # Pushing B's sequence to 10**12 or pre-empting B's record ids: same answer.
    status, _, _ = await post(http, central, *v2(batch_doc(b, 10**12, [reading(9)]),
                                                 f"{a}-k", secret_a, gateway=a))
    assert status == 403
    assert await counts(store, b) == {}
    # The fleet key from secrets may not write as a gateway with a key of its own.
    fleet_doc = batch_doc(b, 1, [reading(3)])
    fleet_body = gzip.compress(json.dumps(fleet_doc).encode())
    status, data, _ = await post(
        http, central, fleet_body,
        headers_for("k1", KEYS["k1"], fleet_doc["batch_id"], fleet_body, b),
    )
    assert status == 403 and data["error"] == "wrong_gateway"
    assert await counts(store, b) == {}


async def test_a_wrong_secret_or_unknown_key_is_401(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    a, _, _, _ = await two_gateways(store)
    await reload_keys(central)
    doc = batch_doc(a, 1, [reading(1)])
    status, data, _ = await post(http, central, *v2(doc, f"{a}-k", "not-the-secret"))
    assert status == 401 and data["error"] == "bad_signature"
    status, data, _ = await post(http, central, *v2(doc, "no-such-key", "x"))
    assert status == 401 and data["error"] == "unknown_key"
    assert await counts(store, a) == {}


async def test_rotation_keeps_two_keys_valid_and_revoke_shuts_one(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    gw = unique_device()
    first, second, third = new_secret(), new_secret(), new_secret()
    assert await store.add_key(gw, f"{gw}-1", first) == []
    assert await store.add_key(gw, f"{gw}-2", second, rotate=True) == []
    with pytest.raises(KeyRuleError):
        await store.add_key(gw, f"{gw}-x", new_secret())  # a third needs `rotate`
    with pytest.raises(KeyRuleError):
        await store.add_key(unique_device(), f"{gw}-1", new_secret())  # ids are unique
    await reload_keys(central)
    for seq, (key_id, secret) in enumerate([(f"{gw}-1", first), (f"{gw}-2", second)], 1):
        status, _, _ = await post(http, central, *v2(batch_doc(gw, seq, [reading(seq)]),
                                                     key_id, secret))
        assert status == 200, key_id
    assert await store.add_key(gw, f"{gw}-3", third, rotate=True) == [f"{gw}-1"]
    await reload_keys(central)
    status, _, _ = await post(http, central, *v2(batch_doc(gw, 3, [reading(3)]), f"{gw}-1",
                                                 first))
    assert status == 401
    assert await store.revoke_key(f"{gw}-2") and not await store.revoke_key(f"{gw}-2")
    await reload_keys(central)
    status, _, _ = await post(http, central, *v2(batch_doc(gw, 3, [reading(3)]), f"{gw}-2",
                                                 second))
    assert status == 401
    status, _, _ = await post(http, central, *v2(batch_doc(gw, 3, [reading(3)]), f"{gw}-3",
                                                 third))
    assert status == 200
    active = [r.key_id for r in await store.key_rows() if r.device_id == gw]
    assert active == [f"{gw}-3"]
    assert (await counts(store, gw))["reading"] == 3


async def test_a_stored_batch_id_is_accepted_again_only_with_the_same_content(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    gw = unique_device()
    secret = new_secret()
    await store.add_key(gw, f"{gw}-k", secret)
    await reload_keys(central)
    doc = batch_doc(gw, 1, [reading(1), reading(2)])
    status, _, _ = await post(http, central, *v2(doc, f"{gw}-k", secret))
    assert status == 200
    # The same batch again, with another send time: a resend (content is the records).
    again = {**doc, "sent_wall_ts": doc["sent_wall_ts"] + 60}
    status, data, _ = await post(http, central, *v2(again, f"{gw}-k", secret))
    assert status == 200 and [r["status"] for r in data["results"]] == ["duplicate"] * 2
    # The stored batch id with other records: refused, nothing written.
    forged = batch_doc(gw, 1, [reading(1), reading(2)] + [reading(i) for i in range(3, 8)])
    status, data, _ = await post(http, central, *v2(forged, f"{gw}-k", secret))
    assert status == 409 and data["error"] == "batch_conflict"
    changed = batch_doc(gw, 1, [reading(1), reading(2, values={"temp_c": 99.0})])
    status, data, _ = await post(http, central, *v2(changed, f"{gw}-k", secret))
    assert status == 409 and data["error"] == "batch_conflict"
    assert (await counts(store, gw))["reading"] == 2


async def test_sequence_advances_a_bounded_amount_per_batch(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    handle = await run_central(central_config(database_url, max_seq_advance=10), KEYS,
                               store=store)
    try:
        gw = unique_device()
        secret = new_secret()
        await store.add_key(gw, f"{gw}-k", secret)
        await reload_keys(handle)
        status, data, _ = await post(http, handle, *v2(batch_doc(gw, 10**12, [reading(1)]),
                                                       f"{gw}-k", secret))
        assert status == 409 and data["error"] == "seq_too_far" and data["highest_seq"] == 0
        status, _, _ = await post(http, handle, *v2(batch_doc(gw, 10, [reading(1)]),
                                                    f"{gw}-k", secret))
        assert status == 200
        status, data, _ = await post(http, handle, *v2(batch_doc(gw, 21, [reading(2)]),
                                                       f"{gw}-k", secret))
        assert status == 409 and data["error"] == "seq_too_far" and data["highest_seq"] == 10
        status, _, _ = await post(http, handle, *v2(batch_doc(gw, 20, [reading(2)]),
                                                    f"{gw}-k", secret))
        assert status == 200
        assert (await counts(store, gw))["reading"] == 2
    finally:
        await handle.stop()


async def test_keys_bound_in_secrets(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    gw, other = unique_device(), unique_device()
    keys = {"bound": GatewayKey("bound", b"s3cret-bound", gw)}
    handle = await run_central(central_config(database_url), keys, store=store)
    try:
        status, _, _ = await post(http, handle, *v2(batch_doc(gw, 1, [reading(1)]), "bound",
                                                    b"s3cret-bound"))
        assert status == 200
        status, data, _ = await post(http, handle, *v2(batch_doc(other, 1, [reading(1)]),
                                                       "bound", b"s3cret-bound"))
        assert status == 403 and data["error"] == "wrong_gateway"
    finally:
        await handle.stop()


async def test_body_signatures_can_be_turned_off(
    store: CentralStore, database_url: str, http: aiohttp.ClientSession
) -> None:
    handle = await run_central(central_config(database_url, accept_body_signature=False),
                               KEYS, store=store)
    try:
        gw = unique_device()
        doc = batch_doc(gw, 1, [reading(1)])
        body, headers = v2(doc, "k1", KEYS["k1"])
        legacy = {k: v for k, v in headers.items()
                  if k not in ("X-Dairy-Auth", "X-Dairy-Gateway", "X-Dairy-Body-SHA256")}
        status, data, _ = await post(http, handle, body, legacy)
        assert status == 401 and data["error"] == "auth_required"
        status, _, _ = await post(http, handle, body, headers)
        assert status == 200
    finally:
        await handle.stop()


def test_cli_keys_add_rotate_revoke_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    config = tmp_path / "central.yaml"
    config.write_text(f"central:\n  database_url: {database_url}\n")
    gw = unique_device()
    assert main(["central", "keys", "add", gw, "-c", str(config), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["gateway"] == gw and len(first["secret"]) >= 40 and first["revoked"] == []
    assert main(["central", "keys", "rotate", gw, "-c", str(config), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert main(["central", "keys", "rotate", gw, "-c", str(config), "--json"]) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["revoked"] == [first["key_id"]]
    assert main(["central", "keys", "add", gw, "-c", str(config)]) == 2  # two active already
    assert "rotate" in capsys.readouterr().err
    assert main(["central", "keys", "revoke", second["key_id"], "-c", str(config)]) == 0
    assert main(["central", "keys", "revoke", second["key_id"], "-c", str(config)]) == 1
    capsys.readouterr()
    assert main(["central", "keys", "list", gw, "--all", "-c", str(config)]) == 0
    table = capsys.readouterr().out
    assert first["key_id"] in table and third["key_id"] in table
    for made in (first, second, third):
        assert made["secret"] not in table  # never shown again
    assert main(["central", "keys", "list", gw, "-c", str(config), "--json"]) == 0
    assert [k["key_id"] for k in json.loads(capsys.readouterr().out)] == [third["key_id"]]


async def test_a_gateway_syncs_with_its_own_key(
    central: CentralHandle, store: CentralStore, tmp_path: Path
) -> None:
    # The real uploader against the real receiver, under a gateway id of its own.
    gw = unique_device()
    key_id = f"{gw}-k"
    await store.add_key(gw, key_id, RIG_KEY.decode())
    await reload_keys(central)
    rig = Rig(tmp_path / "buf.db", central.url, key_id=key_id)
    rig.up = Uploader(rig.config, gw, RIG_KEY, rig.writer, rig.db, rig.transport,
                      SystemClock())
    try:
        rig.fill([gateway_reading(i) for i in range(30)])
        result = await rig.up.sync_once()
        assert result.records == 30 and result.applied.synced == 30
        assert (await counts(store, gw))["reading"] == 30
    finally:
        await rig.close()


def test_cli_keys_never_fall_back_to_the_default_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No --config and no DAIRY_EDGE_CENTRAL_DATABASE_URL: refused, ./central.db never made.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAIRY_EDGE_CENTRAL_DATABASE_URL", raising=False)
    for argv in (["keys", "add", "gw-x"], ["keys", "list"], ["keys", "revoke", "k"],
                 ["retention", "--keep-days", "30"]):
        assert main(["central", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert "--config" in err and "DAIRY_EDGE_CENTRAL_DATABASE_URL" in err, argv
    assert list(tmp_path.iterdir()) == []
    # The environment names the database; the command says which one it used.
    db = tmp_path / "keys.db"
    monkeypatch.setenv("DAIRY_EDGE_CENTRAL_DATABASE_URL", f"sqlite:///{db}")
    assert main(["central", "keys", "add", "gw-x", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["gateway"] == "gw-x"  # stdout stays JSON
    assert f"database: sqlite:///{db} (DAIRY_EDGE_CENTRAL_DATABASE_URL)" in out.err
    assert main(["central", "keys", "list", "--json"]) == 0
    assert [k["gateway"] for k in json.loads(capsys.readouterr().out)] == ["gw-x"]
    # --config wins, and says so (a password in the URL is not printed).
    config = tmp_path / "central.yaml"
    config.write_text("central:\n  database_url: postgresql://u:hunter2@127.0.0.1:1/x\n")
    assert main(["central", "keys", "list", "-c", str(config)]) == 1  # nothing listens there
    err = capsys.readouterr().err
    assert "database: postgresql://u:***@127.0.0.1:1/x (central.database_url of" in err
    assert "hunter2" not in err
