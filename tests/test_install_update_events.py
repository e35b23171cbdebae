"""Update switches and refusals reach the agent's store (so central) as events:
the CLI appends to events.jsonl, the running agent imports new lines at its
start and once a minute (a restart does not store them twice), and a
"versions" event names the model and config bundle versions that run."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.runtime.daemon import Agent
from agent.runtime.updates import (
    UpdateRefused,
    UpdateStore,
    load_public_keys,
    make_keypair,
    sign_bundle,
    unsent_events,
    versions_report,
)
from agent.store.migrations import KIND_TABLE


def _config_bundle(tmp_path: Path, private: Path, version: str, body: str = "") -> Path:
    path = tmp_path / f"c{version}.yaml"
    path.write_text(f"gateway:\n  id: gw-ev\n  data_dir: {tmp_path / 'data'}\n{body}")
    return sign_bundle(path, "config", version, private, tmp_path / f"c{version}.tar")


def _stored_events(data: Path) -> list[tuple[str, dict[str, object]]]:
    conn = sqlite3.connect(data / "buffer.db")
    try:
        rows = conn.execute(f"SELECT body FROM {KIND_TABLE['event']}").fetchall()
    finally:
        conn.close()
    bodies = [json.loads(r[0]) for r in rows]
    return [(str(b["event"]), b.get("data") or {}) for b in bodies]


async def _run_agent(data: Path) -> None:
    config = load_config(overrides={
        "gateway": {"id": "gw-ev", "data_dir": str(data)},
        "sync": {"enabled": False}, "web": {"enabled": False},
    })
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 60)


async def test_switches_and_refusals_become_stored_events_once(tmp_path: Path) -> None:
    private, _ = make_keypair(tmp_path / "keys")
    keys = load_public_keys(tmp_path / "keys")
    data = tmp_path / "data"
    store = UpdateStore(data, "config")
    store.apply(_config_bundle(tmp_path, private, "1"), keys)
    with pytest.raises(UpdateRefused):
        store.apply(_config_bundle(tmp_path, private, "2", "mqtt:\n  port: x\n"), keys)
    assert [e.name for e in unsent_events(data)] == ["update_switch", "update_refused"]

    await _run_agent(data)
    events = _stored_events(data)
    names = [name for name, _ in events]
    assert names.count("update_switch") == 1 and names.count("update_refused") == 1
    refused = next(d for n, d in events if n == "update_refused")
    assert refused["kind"] == "config" and refused["reason"] == "self_test"
    versions = next(d for n, d in events if n == "versions")
    assert versions["config_bundle"] == "1" and versions["models_bundle"] is None
    assert versions["models"]["milk_cls"]["metrics"]  # the shipped manifest's metrics
    assert unsent_events(data) == []  # the offset moved after the commit

    await _run_agent(data)  # a restart imports nothing twice
    names = [name for name, _ in _stored_events(data)]
    assert names.count("update_switch") == 1 and names.count("update_refused") == 1


def test_a_line_being_written_waits_and_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    from agent.runtime.updates import mark_sent

    data = tmp_path / "data"
    root = data / "updates" / "models"
    root.mkdir(parents=True)
    events = root / "events.jsonl"
    events.write_text('{"event": "switched", "version": "1"}\n{"event": "ref')
    first = unsent_events(data)
    assert [e.name for e in first] == ["update_switch"]
    mark_sent(data, "models", first[-1].end)
    assert unsent_events(data) == []
    events.write_text('{"event": "refused"}\n')  # shorter than the offset: replaced
    assert [e.name for e in unsent_events(data)] == ["update_refused"]


def test_versions_report_names_a_broken_manifest(tmp_path: Path) -> None:
    report = versions_report(tmp_path, tmp_path / "no-models")
    assert report["models_bundle"] is None and "manifest.json" in report["models"]["error"]


def test_reporting_versions_does_not_load_cryptography(tmp_path: Path) -> None:
    # The daemon imports this module to report update events; cryptography (about
    # 8 MiB resident) is only needed to sign or verify a bundle.
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; "
            "from agent.runtime.updates import unsent_events, versions_report; "
            f"unsent_events(Path({str(tmp_path)!r})); "
            f"versions_report(Path({str(tmp_path)!r}), Path({str(tmp_path / 'm')!r})); "
            "print('cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
