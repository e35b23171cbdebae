"""The models the agent has loaded, and hot swap with rollback.

``load_all`` opens every manifest entry (verify the file, open the runtime,
check the tensors, run the self-test). A model that fails any step is refused
with a clear status; nothing here raises to the caller, so a bad model never
stops the agent. ``reload`` re-reads the manifest: a changed entry is opened
and self-tested beside the active one and swapped in only when it passes; on
failure the old version stays active (rolled back) and the status says why.

Thread-safety: ``get``/``status``/``versions`` may be called from any thread;
loads run outside the lock and one ``reload`` runs at a time. A runner itself
serves one caller at a time (the vision worker). After a swap the registry
drops the old runner; a caller still holding it finishes its call and Python
frees it, so the old model is never closed under a running call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.config.model import ModelsConfig
from agent.errors import ConfigError
from agent.metrics import MODEL_LOADS
from agent.models.errors import ModelRefused
from agent.models.loader import open_runner
from agent.models.manifest import ModelEntry, read_manifest
from agent.models.runner import Runner

log = logging.getLogger(__name__)

State = Literal["active", "refused", "missing"]
Opener = Callable[[ModelEntry, Path, int], Runner]


@dataclass
class _Slot:
    state: State = "missing"
    entry: ModelEntry | None = None  # the active entry, else the last one listed
    runner: Runner | None = None
    error: str | None = None
    tried: tuple[object, ...] | None = None  # what the last attempt saw, to not retry it
    listed: bool = False  # in the manifest at the last reload


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class ModelRegistry:
    """Every model in ``cfg.dir``'s manifest, by name.

    :param cfg: the ``models`` config section (dir, threads, reload_interval_s).
    :param required: names the agent expects; one not in the manifest shows as
        ``missing`` in ``status`` instead of being absent.
    :param only: load only these names (None: every model in the manifest), so a
        part that needs two models does not hold the others in memory.
    :param opener: builds a verified, self-tested runner (``open_runner``);
        replaceable only to count loads in tests.
    """

    def __init__(self, cfg: ModelsConfig, *, required: Iterable[str] = (),
                 opener: Opener = open_runner, only: Iterable[str] | None = None) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self.manifest_error: str | None = None
        self._open = opener
        self._only = None if only is None else frozenset(only)
        self._lock = threading.Lock()  # guards _slots
        self._reload_lock = threading.Lock()  # one load/reload at a time
        self._slots: dict[str, _Slot] = {}
        for name in required:
            self._slots[name] = _Slot(error=f"not listed in {self.dir / 'manifest.json'}")

    # -- reading ---------------------------------------------------------

    def get(self, name: str) -> Runner | None:
        """The active runner for ``name``, or None when refused or missing."""
        with self._lock:
            slot = self._slots.get(name)
            return slot.runner if slot is not None and slot.state == "active" else None

    def versions(self) -> dict[str, str]:
        """Active version of every active model, for result records."""
        with self._lock:
            return {n: s.entry.version for n, s in self._slots.items()
                    if s.state == "active" and s.entry is not None}

    def status(self) -> dict[str, dict[str, Any]]:
        """``{name: {state, version, error, runtime, file, sha256}}``; ``version``
        is the active one when active, else the one the manifest lists."""
        with self._lock:
            return {
                name: {
                    "state": s.state,
                    "version": s.entry.version if s.entry else None,
                    "error": s.error,
                    "runtime": s.entry.runtime if s.entry else None,
                    "file": s.entry.file if s.entry else None,
                    "sha256": s.entry.sha256 if s.entry else None,
                }
                for name, s in sorted(self._slots.items())
            }

    # -- loading ---------------------------------------------------------

    def load_all(self) -> dict[str, dict[str, Any]]:
        """Load every model in the manifest; returns ``status()``. Never raises."""
        return self.reload()

    def reload(self) -> dict[str, dict[str, Any]]:
        """Re-read the manifest and (re)load what changed; returns ``status()``.

        An active model reloads only when its entry changed; a refused one is
        retried when its entry or its files changed. Never raises.
        """
        with self._reload_lock:
            try:
                self._reload()
            except Exception:  # a bug here must not stop the agent either
                log.exception("model reload failed; the active models stay")
        return self.status()

    def _reload(self) -> None:
        try:
            read = read_manifest(self.dir)
        except ConfigError as err:
            if self.manifest_error != str(err):
                log.error("models: %s; the active models stay", err)
            self.manifest_error = str(err)
            return
        self.manifest_error = None
        for name, error in read.invalid.items():
            if self._only is None or name in self._only:
                self._refuse(name, None, error, fingerprint=("invalid", error))
        for entry in read.entries:
            if self._only is None or entry.name in self._only:
                self._consider(entry)
        listed = {e.name for e in read.entries} | set(read.invalid)
        with self._lock:
            gone = [n for n, s in self._slots.items() if n not in listed and s.listed]
            for name in gone:  # taken out of the manifest: unload
                slot = self._slots[name]
                slot.state, slot.runner, slot.tried, slot.listed = "missing", None, None, False
                slot.error = f"no longer listed in {read.path}"
                log.warning("model %s: %s; unloaded", name, slot.error)

    def _fingerprint(self, entry: ModelEntry) -> tuple[object, ...]:
        files = [self.dir / entry.file]
        if entry.self_test is not None:
            files.append(self.dir / entry.self_test.file)
        return (entry.model_dump_json(), *(_stat(p) for p in files))

    def _consider(self, entry: ModelEntry) -> None:
        with self._lock:
            slot = self._slots.setdefault(entry.name, _Slot())
            slot.listed = True
            active = slot.runner is not None and slot.state == "active"
            if active and slot.entry == entry:
                # Unchanged (or put back after a refused candidate): never load
                # the same model twice; a rollback notice no longer applies.
                slot.error, slot.tried = None, None
                return
            fingerprint = self._fingerprint(entry)
            if slot.tried == fingerprint:
                return  # this exact candidate already failed; wait for a change
        try:
            runner = self._open(entry, self.dir, self.cfg.threads)
        except ModelRefused as err:
            self._refuse(entry.name, entry, str(err), fingerprint)
            return
        except Exception as err:  # noqa: BLE001 - a runtime bug or odd file: refuse, never crash
            self._refuse(entry.name, entry, f"model {entry.name}: unexpected error while "
                         f"loading: {err!r}", fingerprint)
            return
        with self._lock:
            old = slot.entry.version if active and slot.entry else None
            slot.state, slot.entry, slot.runner = "active", entry, runner
            slot.error, slot.tried = None, fingerprint
        MODEL_LOADS.labels(model=entry.name, outcome="active").inc()
        if old is None:
            log.info("model %s %s loaded (%s)", entry.name, entry.version, entry.runtime)
        else:
            log.info("model %s: %s replaced by %s after its self-test", entry.name, old,
                     entry.version)

    def _refuse(self, name: str, entry: ModelEntry | None, error: str,
                fingerprint: tuple[object, ...]) -> None:
        with self._lock:
            slot = self._slots.setdefault(name, _Slot())
            slot.listed = True
            if slot.tried == fingerprint:
                return
            slot.tried = fingerprint
            if slot.state == "active" and slot.runner is not None and slot.entry is not None:
                new = entry.version if entry else "the new entry"
                slot.error = f"{new} refused, {slot.entry.version} stays active: {error}"
                outcome = "rolled_back"
            else:
                missing = entry is not None and not (self.dir / entry.file).exists()
                slot.state = "missing" if missing else "refused"
                slot.entry = entry or slot.entry
                slot.runner = None
                slot.error = error
                outcome = "refused"
        MODEL_LOADS.labels(model=name, outcome=outcome).inc()
        log.error("%s", slot.error)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload every ``cfg.reload_interval_s`` until ``stop`` is set (0: never).

        The reload runs in a worker thread: opening a model must not block the
        event loop (MQTT ingest lives there)."""
        interval = self.cfg.reload_interval_s
        if interval <= 0:
            return
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                await asyncio.to_thread(self.reload)

    def close(self) -> None:
        """Drop every runner (their memory goes when the last caller lets go)."""
        with self._lock:
            for slot in self._slots.values():
                slot.runner = None
                if slot.state == "active":
                    slot.state, slot.error = "missing", "registry closed"
