"""Self-tests: bundled sample inputs and the outputs the model must give.

``selftest/NAME-VERSION.npz`` holds ``input_0..input_k`` (one call's inputs,
in the model's dtypes) and ``output_0..output_m`` (the expected outputs). A
model passes when every output is within the entry's ``atol`` of the expected
one (compared as float64, so int8 outputs compare in quantisation steps).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from agent.models.errors import ModelError, ModelRefused
from agent.models.manifest import ModelEntry
from agent.models.runner import Runner


def _arrays(npz: np.lib.npyio.NpzFile, prefix: str) -> list[np.ndarray]:
    out, i = [], 0
    while f"{prefix}_{i}" in npz.files:
        out.append(np.asarray(npz[f"{prefix}_{i}"]))
        i += 1
    return out


def run_self_test(runner: Runner, entry: ModelEntry, models_dir: Path) -> float | None:
    """Run the entry's self-test; return the largest difference seen (None when
    the entry has no self-test). ``ModelRefused`` when it fails."""
    if entry.self_test is None:
        return None
    path = Path(models_dir) / entry.self_test.file
    try:
        with np.load(path, allow_pickle=False) as npz:
            inputs, expected = _arrays(npz, "input"), _arrays(npz, "output")
    except (OSError, ValueError) as err:
        raise ModelRefused(entry.name, f"cannot read its self-test {path}: {err}; ship the "
                           "npz beside the model or set self_test to null") from err
    if not inputs or not expected:
        raise ModelRefused(entry.name, f"self-test {path} needs input_0.. and output_0.. arrays")
    try:
        got = runner.run(inputs)
    except ModelError as err:
        raise ModelRefused(entry.name, f"self-test {path} failed to run: {err.detail}") from err
    if len(got) < len(expected):
        raise ModelRefused(entry.name, f"self-test expects {len(expected)} outputs, the "
                           f"model gave {len(got)}")
    worst = 0.0
    for i, (g, e) in enumerate(zip(got, expected, strict=False)):
        if g.shape != e.shape:
            raise ModelRefused(entry.name, f"self-test output_{i} has shape {list(g.shape)}, "
                               f"expected {list(e.shape)}")
        diff = float(np.max(np.abs(g.astype(np.float64) - e.astype(np.float64)), initial=0.0))
        if not diff <= entry.self_test.atol:  # also catches NaN
            raise ModelRefused(entry.name, f"self-test output_{i} differs by {diff:.4g} "
                               f"(atol {entry.self_test.atol}): this build gives different "
                               "answers; keep the old version and check the new one")
        worst = max(worst, diff)
    return worst


def write_self_test(path: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
    """Write a self-test npz (for build scripts: run the model on sample
    inputs, then save the inputs and what it gave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"input_{i}": x for i, x in enumerate(inputs)}
    arrays.update({f"output_{i}": y for i, y in enumerate(outputs)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; others read models too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
