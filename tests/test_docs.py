"""Docs fail CI when they fall behind the code: every command has --help and is in
the README, every metric is in docs/metrics.md, the central serves its metrics."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

import agent.metrics  # noqa: F401 - registers every metric
from agent.central.app import make_app
from agent.central.store_sqlite import SqliteStore
from agent.cli.main import build_parser, main
from agent.config.model import CentralConfig

REPO = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_commands_we_promise_exist() -> None:
    assert {("run",), ("central",), ("simulate",), ("demo",), ("config", "check"),
            ("config", "schema"), ("anomaly", "score")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "usage: dairy-edge" in capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    assert f"dairy-edge {' '.join(command)}" in readme or (
        len(command) == 2 and f"{command[0]} {command[1]}" in readme
        or f"`{command[-1]}" in readme
    ), f"README does not mention `dairy-edge {' '.join(command)}`"


def test_every_metric_is_documented() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    names = {c.name for c in REGISTRY.collect() if c.name.startswith("dairy_edge")}
    assert len(names) >= 15
    missing = sorted(n for n in names if not re.search(rf"`{n}(_total)?`", doc))
    assert not missing, f"docs/metrics.md lacks {missing}"


async def test_central_serves_its_metrics(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    await store.start()
    app = make_app(CentralConfig(port=0), {"k": b"key"}, store, None)
    client = TestClient(TestServer(app, auto_decompress=False))
    await client.start_server()
    try:
        text = await (await client.get("/metrics")).text()
        assert "dairy_edge_central_batches_total" in text
    finally:
        await client.close()
        await store.close()
