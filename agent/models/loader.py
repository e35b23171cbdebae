"""Open one model from its manifest entry: verify the file, open the runtime
named by the entry, check its tensors, run its self-test. All or nothing."""

from __future__ import annotations

from pathlib import Path

from agent.models.errors import ModelRefused
from agent.models.litert import LiteRTRunner
from agent.models.manifest import ModelEntry, verify_file
from agent.models.onnx import OnnxRunner
from agent.models.runner import Runner
from agent.models.selftest import run_self_test


def open_runner(entry: ModelEntry, models_dir: Path, threads: int = 1) -> Runner:
    """A runner that passed every check, or ``ModelRefused`` saying why not."""
    path = verify_file(entry, models_dir)
    runner: Runner
    if entry.runtime == "onnxruntime":
        runner = OnnxRunner(entry, path, threads)
    elif entry.runtime == "litert":
        runner = LiteRTRunner(entry, path, threads)
    else:  # pragma: no cover - the manifest's Literal already refuses it
        raise ModelRefused(entry.name, f"unknown runtime {entry.runtime!r}")
    run_self_test(runner, entry, models_dir)
    return runner
