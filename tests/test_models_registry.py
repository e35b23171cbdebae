"""The model registry on real files: load, refuse, hot swap, rollback.

Nothing here may raise out of the registry: a bad model is a status, never a
stopped agent.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import re
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from agent.config.model import ModelsConfig
from agent.models.loader import open_runner
from agent.models.manifest import ModelEntry, upsert_entry
from agent.models.registry import ModelRegistry, Opener
from agent.models.runner import Runner
from tests.helpers_models import forecaster_entry, models_dir, onnx_entry

X = np.ones((1, 3, 4), np.float32)


def _loads(model: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(
        "dairy_edge_model_loads_total", {"model": model, "outcome": outcome}) or 0.0


class CountingOpener:
    """The real ``open_runner``, counting the models it opens."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str]] = []

    def __call__(self, entry: ModelEntry, directory: Path, threads: int) -> Runner:
        self.opened.append((entry.name, entry.version))
        return open_runner(entry, directory, threads)


def _registry(directory: Path, *, required: tuple[str, ...] = (),
              opener: Opener = open_runner) -> ModelRegistry:
    cfg = ModelsConfig(dir=directory, reload_interval_s=0.05)
    return ModelRegistry(cfg, required=required, opener=opener)


def _out(registry: ModelRegistry, name: str = "tiny") -> float:
    runner = registry.get(name)
    assert runner is not None
    return float(runner.run([X])[0][0, 0, 0])


def test_loads_every_model_and_reports_versions(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path), forecaster_entry(tmp_path))
    registry = _registry(d, required=("eartag_det",))
    status = registry.load_all()
    assert {n: s["state"] for n, s in status.items()} == {
        "tiny": "active", "forecaster_w32": "active", "eartag_det": "missing"}
    assert status["tiny"] == {"state": "active", "version": "1.0.0", "error": None,
                              "runtime": "onnxruntime", "file": "tiny-1.0.0.onnx",
                              "sha256": onnx_entry(tmp_path)["sha256"]}
    assert "not listed" in status["eartag_det"]["error"]
    assert registry.versions() == {"tiny": "1.0.0", "forecaster_w32": "1.0.0"}
    assert _out(registry) == 3.0
    assert registry.get("eartag_det") is None and registry.get("nope") is None


def _break(d: Path, how: str) -> None:
    entry = json.loads((d / "manifest.json").read_text())["models"][0]
    path = d / entry["file"]
    blob = path.read_bytes()
    if how == "sha":
        path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    elif how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "shape":
        entry["inputs"][0]["shape"] = [1, 3, 48, -1]
        upsert_entry(d, entry)
    elif how == "garbage":  # matching size and sha: the runtime itself throws
        path.write_bytes(b"garbage!" * 40)
        entry.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                     bytes=path.stat().st_size)
        upsert_entry(d, entry)
    elif how == "selftest":
        (d / entry["self_test"]["file"]).write_bytes(b"not an npz")
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize(("how", "state", "says"), [
    ("sha", "refused", "sha256"),
    ("truncated", "refused", "truncated"),
    ("shape", "refused", r"manifest says input x is \[1,3,48,-1\] float32"),
    ("garbage", "refused", "onnxruntime cannot open"),
    ("selftest", "refused", "cannot read its self-test"),
    ("missing", "missing", "is missing"),
])
def test_a_bad_model_is_refused_and_the_others_load(
        tmp_path: Path, how: str, state: str, says: str) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path, name="aaa"), forecaster_entry(tmp_path))
    _break(d, how)
    before = _loads("aaa", "refused")
    registry = _registry(d)
    status = registry.load_all()  # must not raise
    assert status["aaa"]["state"] == state
    assert status["aaa"]["version"] == "1.0.0"
    assert re.search(says, status["aaa"]["error"]), status["aaa"]["error"]
    assert registry.get("aaa") is None
    assert status["forecaster_w32"]["state"] == "active"
    assert _loads("aaa", "refused") == before + 1
    assert "aaa" not in registry.versions()


def test_an_invalid_entry_refuses_only_that_model(tmp_path: Path) -> None:
    good, bad = onnx_entry(tmp_path), onnx_entry(tmp_path, name="bad")
    bad["colour"] = "red"
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [good, bad]}))
    registry = _registry(tmp_path)
    status = registry.load_all()
    assert status["tiny"]["state"] == "active"
    assert status["bad"]["state"] == "refused" and "colour" in status["bad"]["error"]


def test_unreadable_manifest_keeps_what_is_loaded(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path))
    registry = _registry(d)
    registry.load_all()
    (d / "manifest.json").write_text("{half a fi")
    status = registry.reload()
    assert status["tiny"]["state"] == "active" and registry.get("tiny") is not None
    assert registry.manifest_error is not None and "manifest.json" in registry.manifest_error
    assert _registry(tmp_path / "nowhere").load_all() == {}


def test_hot_load_swaps_after_the_self_test_and_frees_the_old(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path, gain=2.0))
    opener = CountingOpener()
    registry = _registry(d, opener=opener)
    registry.load_all()
    old = registry.get("tiny")
    assert old is not None and _out(registry) == 3.0
    registry.reload()  # nothing changed: nothing reopened
    assert opener.opened == [("tiny", "1.0.0")]
    gone = weakref.ref(old)
    del old

    before = _loads("tiny", "active")
    upsert_entry(d, onnx_entry(d, version="2.0.0", gain=5.0))
    status = registry.reload()
    assert status["tiny"]["state"] == "active" and status["tiny"]["version"] == "2.0.0"
    assert status["tiny"]["error"] is None
    assert _out(registry) == 6.0 and registry.versions()["tiny"] == "2.0.0"
    assert _loads("tiny", "active") == before + 1
    gc.collect()
    assert gone() is None, "the old version is still in memory after the swap"
    assert opener.opened == [("tiny", "1.0.0"), ("tiny", "2.0.0")]


def test_a_version_failing_its_self_test_rolls_back(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path, gain=2.0))
    opener = CountingOpener()
    registry = _registry(d, opener=opener)
    registry.load_all()
    before = _loads("tiny", "rolled_back")

    # 2.0.0 is a different model whose bundled expectations it does not meet.
    upsert_entry(d, onnx_entry(d, version="2.0.0", gain=5.0, expected_gain=2.0))
    status = registry.reload()
    assert status["tiny"]["state"] == "active" and status["tiny"]["version"] == "1.0.0"
    assert "2.0.0 refused, 1.0.0 stays active" in status["tiny"]["error"]
    assert "self-test output_0 differs by" in status["tiny"]["error"]
    assert _out(registry) == 3.0 and registry.versions() == {"tiny": "1.0.0"}
    assert _loads("tiny", "rolled_back") == before + 1

    registry.reload()  # the same failed candidate is not retried every interval
    assert opener.opened.count(("tiny", "2.0.0")) == 1

    upsert_entry(d, onnx_entry(d, version="1.0.0", gain=2.0))  # put back: notice cleared
    assert registry.reload()["tiny"]["error"] is None
    assert ("tiny", "1.0.0") not in opener.opened[1:]

    upsert_entry(d, onnx_entry(d, version="2.0.1", gain=5.0))  # the fixed build
    status = registry.reload()
    assert status["tiny"]["version"] == "2.0.1" and status["tiny"]["error"] is None
    assert _out(registry) == 6.0


def test_a_broken_new_file_rolls_back_too(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path))
    registry = _registry(d)
    registry.load_all()
    new = onnx_entry(d, version="2.0.0")
    upsert_entry(d, new)
    (d / new["file"]).write_bytes((d / new["file"]).read_bytes()[:10])  # copy cut short
    status = registry.reload()
    assert status["tiny"]["version"] == "1.0.0" and "truncated" in status["tiny"]["error"]
    assert _out(registry) == 3.0


def test_a_refused_model_loads_once_its_file_arrives(tmp_path: Path) -> None:
    entry = onnx_entry(tmp_path)
    blob = (tmp_path / entry["file"]).read_bytes()
    (tmp_path / entry["file"]).unlink()
    registry = _registry(models_dir(tmp_path, entry))
    assert registry.load_all()["tiny"]["state"] == "missing"
    (tmp_path / entry["file"]).write_bytes(blob)
    assert registry.reload()["tiny"]["state"] == "active"


def test_a_model_taken_out_of_the_manifest_is_unloaded(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path), forecaster_entry(tmp_path))
    registry = _registry(d)
    registry.load_all()
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] != "tiny"]
    (d / "manifest.json").write_text(json.dumps(manifest))
    status = registry.reload()
    assert status["tiny"]["state"] == "missing" and registry.get("tiny") is None
    assert "no longer listed" in status["tiny"]["error"]
    assert registry.versions() == {"forecaster_w32": "1.0.0"}
    registry.reload()  # stays unloaded, and is back once listed again
    assert registry.get("tiny") is None
    upsert_entry(d, onnx_entry(d))
    assert registry.reload()["tiny"]["state"] == "active"


def test_callers_keep_running_while_versions_swap(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path, gain=2.0))
    registry = _registry(d)
    registry.load_all()
    seen: set[float] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                seen.add(_out(registry))
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
                return

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for i, gain in enumerate((5.0, 2.0, 5.0)):
            upsert_entry(d, onnx_entry(d, version=f"2.{i}", gain=gain))
            assert registry.reload()["tiny"]["version"] == f"2.{i}"
    finally:
        stop.set()
        thread.join(5)
    assert not errors and seen <= {3.0, 6.0} and 6.0 in seen


def test_watch_reloads_on_its_interval_until_stopped(tmp_path: Path) -> None:
    d = models_dir(tmp_path, onnx_entry(tmp_path, gain=2.0))
    registry = _registry(d)
    registry.load_all()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(registry.watch(stop))
        upsert_entry(d, onnx_entry(d, version="2.0.0", gain=5.0))
        for _ in range(200):
            if registry.versions()["tiny"] == "2.0.0":
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())
    assert registry.versions()["tiny"] == "2.0.0" and _out(registry) == 6.0
