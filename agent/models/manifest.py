"""``models/manifest.json``: what each model is, and proof that its file is it.

The manifest is ``{"models": [entry, ...]}``; each entry names a file with its
size and sha256, its tensors (dtype, shape, quantisation, meaning), licence,
source, training and measured metrics, and an optional self-test (sample
inputs and expected outputs in ``selftest/NAME-VERSION.npz``).

Reading is strict (unknown keys are refused, so a typo cannot pass silently)
but per entry: ``read_manifest`` returns the good entries and the errors of the
bad ones, so one bad entry refuses one model, not all. ``load_manifest`` is the
all-or-nothing form for build scripts and ``dairy-edge models verify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigError
from agent.models.errors import ModelRefused
from agent.models.runner import TensorSpec

MANIFEST_NAME = "manifest.json"
DType = Literal["float32", "float16", "int8", "uint8", "int32", "int64"]
Runtime = Literal["onnxruntime", "litert"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Strict):
    scale: float = Field(gt=0)
    zero_point: int


class TensorEntry(_Strict):
    name: str = Field(min_length=1)
    dtype: DType
    shape: list[int] = Field(min_length=1, description="-1 for a dimension of any size")
    quantization: Quantization | None = None
    meaning: str = ""

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in shape):
            raise ValueError(f"dimensions are sizes >= 1 or -1 (any), got {shape}")
        return shape

    def spec(self) -> TensorSpec:
        q = self.quantization
        return TensorSpec(self.name, self.dtype, tuple(self.shape),
                          (q.scale, q.zero_point) if q else None)


class Training(BaseModel):
    """How the model was made. Extra keys (tool versions) are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)
    script: str | None = None
    seed: int | None = None
    data: str


class SelfTest(_Strict):
    file: str = Field(description="npz under the models dir: input_0.., output_0..")
    atol: float = Field(ge=0)


class ModelEntry(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    task: str = Field(min_length=1)
    version: str = Field(min_length=1)
    runtime: Runtime
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(gt=0)
    inputs: list[TensorEntry] = Field(min_length=1)
    outputs: list[TensorEntry] = Field(min_length=1)
    quantization: str = Field(min_length=1, description="e.g. 'int8 full', 'none'")
    labels: list[str] | None = None
    licence: str = Field(min_length=1)
    source: str = Field(min_length=1)
    training: Training | None = None
    metrics: dict[str, float | int | str] = Field(default_factory=dict)
    self_test: SelfTest | None = None

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        p = PurePosixPath(value)
        if not value or p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{value!r}: a path relative to the models dir, without '..'")
        return value

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return tuple(t.spec() for t in self.inputs)

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return tuple(t.spec() for t in self.outputs)


class Manifest(_Strict):
    models: list[ModelEntry]

    def get(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models if m.name == name), None)


@dataclass
class ManifestRead:
    """A manifest read entry by entry: good entries, and errors by model name
    (or ``#INDEX`` when the entry has no usable name)."""

    path: Path
    entries: list[ModelEntry] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)


def _raw(models_dir: Path) -> tuple[Path, list[Any]]:
    path = Path(models_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no model manifest (models.dir points at the folder "
                          "holding manifest.json)") from err
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the model manifest: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError(f'{path}: expected {{"models": [...]}} at the top level')
    return path, data["models"]


def _explain(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in err.errors()
    )


def read_manifest(models_dir: Path) -> ManifestRead:
    """Parse every entry on its own. Raises ``ConfigError`` only when the file
    itself is unreadable; a bad entry lands in ``invalid``."""
    path, raw = _raw(models_dir)
    out = ManifestRead(path)
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        key = name if isinstance(name, str) and name else f"#{i}"
        try:
            entry = ModelEntry.model_validate(item)
        except ValidationError as err:
            out.invalid[key] = f"{path}: models[{i}] ({key}): {_explain(err)}"
            continue
        if entry.name in {e.name for e in out.entries} or entry.name in out.invalid:
            out.invalid[entry.name] = f"{path}: model {entry.name!r} is listed twice; keep one"
            out.entries = [e for e in out.entries if e.name != entry.name]
            continue
        out.entries.append(entry)
    return out


def load_manifest(models_dir: Path) -> Manifest:
    """The whole manifest, or ``ConfigError`` naming the file and every bad entry."""
    read = read_manifest(models_dir)
    if read.invalid:
        raise ConfigError("; ".join(read.invalid.values()))
    return Manifest(models=read.entries)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(entry: ModelEntry, models_dir: Path) -> Path:
    """The model's path once its size and sha256 match the entry; else ``ModelRefused``."""
    path = Path(models_dir) / entry.file
    if not path.is_file():
        raise ModelRefused(entry.name, f"file {path} is missing: copy it into {models_dir} "
                           "or remove the entry from the manifest")
    size = path.stat().st_size
    if size != entry.bytes:
        what = "truncated" if size < entry.bytes else "larger than listed"
        raise ModelRefused(entry.name, f"file {path} is {what} ({size} bytes, the manifest "
                           f"says {entry.bytes}): copy the file again")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ModelRefused(entry.name, f"file {path} has sha256 {digest[:12]}..., the manifest "
                           f"says {entry.sha256[:12]}...: the file is not the one listed; copy "
                           "it again, or rebuild it with its script (which updates the entry)")
    return path


def upsert_entry(models_dir: Path, entry: ModelEntry | dict[str, Any]) -> ModelEntry:
    """Add ``entry`` to the manifest, replacing the one with the same name; the
    file stays sorted by name and pretty-printed, and is replaced atomically
    (a reader never sees half a manifest). For build scripts."""
    valid = entry if isinstance(entry, ModelEntry) else ModelEntry.model_validate(entry)
    path = Path(models_dir) / MANIFEST_NAME
    raw: list[Any] = _raw(models_dir)[1] if path.exists() else []
    kept = [m for m in raw if not (isinstance(m, dict) and m.get("name") == valid.name)]
    kept.append(valid.model_dump(mode="json"))
    kept.sort(key=lambda m: str(m.get("name", "")) if isinstance(m, dict) else "")
    text = json.dumps({"models": kept}, indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; others read models too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return valid


def selftest_name(name: str, version: str) -> str:
    """Where a model's self-test lives, relative to the models dir."""
    return f"selftest/{name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}.npz"
