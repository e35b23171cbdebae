"""Central's registry of updates (PostgreSQL and SQLite): a gateway's "versions"
event, sent through the ordinary signed sync, keeps one row per gateway with its
model and config bundle versions and model metrics (the latest by the gateway's
clock, a late older event does not win); `dairy-edge central versions` lists
them and `dairy-edge central bundles add` records only a bundle that verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers_central import batch_doc, post, signed, statuses, unique_device

from agent.central import CentralHandle
from agent.central.store import CentralStore
from agent.cli.main import main
from agent.runtime.updates import make_keypair, sign_bundle

pytest_plugins = ("helpers_central_fixtures",)


def _versions_event(n: int, models_bundle: str | None, config_bundle: str | None,
                    wall: float) -> dict[str, Any]:
    return {
        "record_id": f"v{n:06d}", "kind": "event", "event": "versions",
        "detail": f"models {models_bundle}, config {config_bundle}",
        "data": {"models_bundle": models_bundle, "config_bundle": config_bundle,
                 "models": {"milk_cls": {"version": f"m{n}", "metrics": {"acc": 0.9}}}},
        "wall_ts": wall, "mono_ns": n, "boot_id": "boot-1", "clock_synced": True,
    }


async def test_the_latest_versions_event_of_each_gateway_is_kept(
    central: CentralHandle, http: aiohttp.ClientSession, store: CentralStore
) -> None:
    device, other = unique_device(), unique_device()
    for dev, seq, records in (
        (device, 1, [_versions_event(1, None, "1", 1_750_000_000.0)]),
        (device, 2, [_versions_event(2, "1.4.0", "2", 1_750_000_100.0)]),
        (device, 3, [_versions_event(3, "1.3.0", "1", 1_750_000_050.0)]),  # late, older
        (other, 1, [_versions_event(4, None, None, 1_750_000_000.0)]),
    ):
        status, data, _ = await post(http, central, *signed(batch_doc(dev, seq, records)))
        assert status == 200 and statuses(data) == ["accepted"]
    rows = {r["device_id"]: r for r in await store.gateway_versions()}  # type: ignore[attr-defined]
    mine = rows[device]
    assert (mine["models_bundle"], mine["config_bundle"]) == ("1.4.0", "2")
    models = mine["models"] if isinstance(mine["models"], dict) else json.loads(mine["models"])
    assert models["milk_cls"] == {"version": "m2", "metrics": {"acc": 0.9}}
    assert mine["last_seen"]
    assert rows[other]["models_bundle"] is None and rows[other]["config_bundle"] is None


async def test_bundles_are_recorded_once(store: CentralStore) -> None:
    assert await store.add_bundle("ab" * 32, "models", "1.0.0", "t", {"a": "b"})  # type: ignore[attr-defined]
    assert not await store.add_bundle("cd" * 32, "models", "1.0.0", "t", {})  # type: ignore[attr-defined]
    assert [(b["kind"], b["version"]) for b in await store.bundles()] == [  # type: ignore[attr-defined]
        ("models", "1.0.0")]


def test_the_cli_lists_versions_and_records_verified_bundles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "central.yaml"
    config.write_text(f"central:\n  database_url: sqlite:///{tmp_path / 'central.db'}\n")
    assert main(["central", "versions", "--config", str(config)]) == 0
    assert "no gateway has reported" in capsys.readouterr().out

    private, _ = make_keypair(tmp_path / "keys")
    yaml = tmp_path / "c.yaml"
    yaml.write_text("gateway:\n  id: gw-1\n")
    bundle = sign_bundle(yaml, "config", "3", private, tmp_path / "c.tar")
    cfg = ["--config", str(config)]
    keys = ["--keys", str(tmp_path / "keys")]
    assert main(["central", "bundles", "add", str(bundle), *keys, *cfg]) == 0
    assert "recorded config 3" in capsys.readouterr().out
    assert main(["central", "bundles", "add", str(bundle), *keys, *cfg]) == 1
    assert "recorded already" in capsys.readouterr().err
    make_keypair(tmp_path / "other")  # a bundle no trusted key signed
    assert main(["central", "bundles", "add", str(bundle), "--keys",
                 str(tmp_path / "other"), *cfg]) == 1
    assert "bad_signature" in capsys.readouterr().err
    assert main(["central", "bundles", "list", "--json", *cfg]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(b["kind"], b["version"]) for b in listed] == [("config", "3")]
