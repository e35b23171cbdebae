"""The vision half inside the running agent: a generated ear-tag lane is read,
voted and stored through the one writer beside MQTT ingest; a camera that
cannot open never stops ingest; an RFID read at the camera's station is
cross-checked. Real Mosquitto on 127.0.0.1:1883, real models from models/."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path
from typing import Any

from helpers_mqtt import Peer, unique

from agent.config.loader import load_config
from agent.runtime.daemon import Agent
from agent.sources.camera.synthetic import DEFAULT_HERD


def _herd() -> dict[str, dict[str, str]]:
    with DEFAULT_HERD.open() as fh:
        return {row["tag_number"]: row for row in csv.DictReader(fh)}


def _agent(tmp_path: Path, cameras: list[dict[str, Any]]) -> tuple[Agent, str]:
    prefix = unique("vis")
    config = load_config(overrides={
        "gateway": {"id": "gw-vision", "data_dir": str(tmp_path)},
        "ingest": {"topic_prefix": prefix},
        "mqtt": {"topics": [f"{prefix}/#"], "client_id": f"dairy-edge-{prefix}",
                 "session_expiry_s": 60},
        "sync": {"enabled": False},
        "web": {"enabled": False},
        "cameras": cameras,
        "vision": {"eartag": {"herd_register": str(DEFAULT_HERD),
                              "review_dir": str(tmp_path / "review")}},
    })
    return Agent(config), prefix


async def _until(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await asyncio.to_thread(cond):
            return True
        await asyncio.sleep(0.5)
    return False


def _climate(prefix: str, seq: int) -> tuple[str, bytes]:
    payload = {"boot": 1, "seq": seq, "t": 21.5, "rh": 60.0}
    return f"{prefix}/climate/c-01", json.dumps(payload).encode()


async def test_a_generated_lane_is_identified_and_stored(tmp_path: Path) -> None:
    lane = {"id": "lane1", "role": "eartag", "source": "synthetic", "uri": "11",
            "fps_cap": 5.0, "infer_fps": 2.5}
    agent, _ = _agent(tmp_path, [lane])
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        found = await _until(
            lambda: any(i["status"] == "identified"
                        for i in agent.reader.recent_identifications(20)), 90)
        status = await asyncio.to_thread(agent.status)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert found, f"no cow identified in 90 s; cameras: {status.cameras}"
    cams = {c["id"]: c for c in status.cameras}
    assert cams["lane1"]["state"] in ("online", "offline")  # offline: stopped at the end
    assert cams["lane1"]["scheduler"]["inferred"] > 0
    assert status.models["eartag_det"]["state"] == "active"
    herd = _herd()
    idents = agent.reader.recent_identifications(50)
    for ident in idents:
        if ident["status"] == "identified":
            # An identified number is in the register, with the register's animal.
            assert herd[ident["tag_number"]]["animal_id"] == ident["animal_id"]
            assert ident["confidence"] >= 0.9
            assert ident["model_versions"]["eartag_rec"]
        if ident["status"] == "review":
            assert ident["tag_number"] is None
    # Each visit is one record, and the record id is stable per visit.
    assert len({i["visit_id"] for i in idents}) == len(idents)


async def test_a_camera_that_cannot_open_never_stops_ingest(tmp_path: Path) -> None:
    broken = {"id": "gone", "role": "eartag", "source": "replay",
              "uri": str(tmp_path / "no-such-folder"), "reconnect_min_s": 0.2,
              "reconnect_max_s": 0.5}
    agent, prefix = _agent(tmp_path, [broken])
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await _until(lambda: agent.mqtt.connected and agent.mqtt.subscriptions(), 20)
        pub = Peer()
        try:
            for seq in range(1, 21):
                await asyncio.to_thread(pub.publish, *_climate(prefix, seq))
        finally:
            pub.close()
        stored = await _until(lambda: agent.reader.counts()["readings"] >= 20, 20)
        status = await asyncio.to_thread(agent.status)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert stored, agent.reader.counts()
    cam = status.cameras[0]
    assert cam["state"] in ("offline", "connecting")
    assert "no-such-folder" in (cam["last_error"] or "")
