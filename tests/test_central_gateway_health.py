"""A gateway whose key central refuses is unhealthy, says why, raises an alert, and
clears when central accepts it again (issue 12, item 4).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import Barn, wait_until
from helpers_central import unique_device
from helpers_store import reading as gateway_reading
from helpers_sync import KEY as RIG_KEY
from helpers_sync import Rig

from agent.central import CentralHandle
from agent.central.app import STATE
from agent.central.store import CentralStore
from agent.central.store_postgres import PostgresStore
from agent.clock import SystemClock
from agent.sync import Uploader

pytest_plugins = ("helpers_central_fixtures",)


async def test_uploader_reports_a_refused_key_until_central_accepts_it(
    central: CentralHandle, store: CentralStore, tmp_path: Path
) -> None:
    gw = unique_device()
    key_id = f"{gw}-k"
    rig = Rig(tmp_path / "buf.db", central.url, key_id=key_id)
    rig.up = Uploader(rig.config, gw, RIG_KEY, rig.writer, rig.db, rig.transport, SystemClock())
    heard: list[str | None] = []
    rig.up.on_refusal = heard.append
    try:
        rig.fill([gateway_reading(i) for i in range(5)])
        await rig.up._one_round()  # central does not know this key: 401
        assert rig.up.refusal and "refused our key" in rig.up.refusal
        assert rig.up.status()["refusal"] == rig.up.refusal
        assert heard == [rig.up.refusal]
        await rig.up._one_round()  # still refused: no second alert
        assert len(heard) == 1
        await store.add_key(gw, key_id, RIG_KEY.decode())
        await central.runner.app[STATE].keyring.refresh()
        await rig.up._one_round()
        assert rig.up.refusal is None and heard[-1] is None and len(heard) == 2
        assert rig.up.status()["refusal"] is None
    finally:
        await rig.close()


@pytest.fixture
def wrong_key_barn(tmp_path: Path) -> Iterator[Barn]:
    # The agent signs with a key id central does not know yet.
    b = Barn(tmp_path, agent_overrides={"sync": {"key_id": "gw-own-key"}},
             agent_env={"DAIRY_EDGE_HMAC_KEY": "the-gateway-own-secret-0123456789"},
             redis=False)
    try:
        b.start()
        yield b
    finally:
        b.close()


def healthz(barn: Barn) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{barn.web_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_agent_with_a_refused_key_is_unhealthy_then_recovers(wrong_key_barn: Barn) -> None:
    barn = wrong_key_barn
    # Within one sync interval (0.5 s here) of its first attempt.
    wait_until(lambda: healthz(barn)[0] == 503, 10, "the agent to turn unhealthy")
    status, body = healthz(barn)
    assert status == 503
    reasons = " ".join(str(r) for r in body["reasons"])  # type: ignore[union-attr]
    assert "refused our key" in reasons and "401" in reasons, body
    wait_until(lambda: bool(barn.buffer(
        "SELECT 1 FROM alerts WHERE json_extract(body, '$.rule') = 'sync_refused'"
        " AND json_extract(body, '$.state') = 'raised'")), 10,
        "the sync_refused alert")
    # Central learns the gateway's key (as `dairy-edge central keys add` would store it).

    async def register() -> None:
        store = PostgresStore(barn.db.url)
        await store.start()
        try:
            await store.add_key(barn.gateway_id, "gw-own-key",
                                "the-gateway-own-secret-0123456789")
        finally:
            await store.close()

    asyncio.run(register())
    wait_until(lambda: healthz(barn)[0] == 200, 20, "the agent to turn healthy again")
    wait_until(lambda: bool(barn.buffer(
        "SELECT 1 FROM alerts WHERE json_extract(body, '$.rule') = 'sync_refused'"
        " AND json_extract(body, '$.state') = 'cleared'")), 10,
        "the sync_refused alert to clear")
    # One alert: the raise and its clear carry the same alert id.
    ids = barn.buffer("SELECT json_extract(body, '$.details.alert_id') FROM alerts"
                      " WHERE json_extract(body, '$.rule') = 'sync_refused'")
    assert len(ids) == 2 and ids[0][0] and ids[0][0] == ids[1][0], ids
    # And the alerts themselves reach central, stored under this gateway.
    wait_until(lambda: bool(barn.db.query(
        "SELECT 1 FROM alerts WHERE device_id = %s AND rule = 'sync_refused'",
        (barn.gateway_id,))), 20, "the alert at central")
