"""The two ear-tag runners: the text detector and the digit recogniser.

The live agent takes them from its ``ModelRegistry`` (hot reload, rollback);
the CLI, the eval and the bench open just these two from the manifest, with
the same verification (size, sha256, tensors, self-test).
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import ConfigError
from agent.models.errors import ModelRefused
from agent.models.loader import open_runner
from agent.models.manifest import read_manifest
from agent.models.registry import ModelRegistry
from agent.models.runner import Runner

DET_MODEL = "eartag_det"
REC_MODEL = "eartag_rec"
MODEL_NAMES = (DET_MODEL, REC_MODEL)


class EartagModelsUnavailable(ConfigError):
    """The ear-tag models cannot be opened; the message says why and what to do."""


def open_eartag_runners(models_dir: Path, threads: int = 1) -> tuple[Runner, Runner]:
    """(detector, recogniser) opened and self-tested from ``models_dir``'s manifest."""
    try:
        read = read_manifest(models_dir)
    except ConfigError as err:
        raise EartagModelsUnavailable(str(err)) from err
    runners: list[Runner] = []
    for name in MODEL_NAMES:
        entry = next((e for e in read.entries if e.name == name), None)
        if entry is None:
            why = read.invalid.get(name, f"not listed in {read.path}")
            raise EartagModelsUnavailable(
                f"model {name}: {why}; run scripts/build_eartag_models.py to build it")
        try:
            runners.append(open_runner(entry, Path(models_dir), threads))
        except ModelRefused as err:
            raise EartagModelsUnavailable(str(err)) from err
    return runners[0], runners[1]


def runners_from_registry(registry: ModelRegistry) -> tuple[Runner, Runner] | None:
    """The active (detector, recogniser) pair, or None while either is refused or
    missing (the registry's status says why)."""
    det, rec = registry.get(DET_MODEL), registry.get(REC_MODEL)
    if det is None or rec is None:
        return None
    return det, rec
