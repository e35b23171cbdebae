"""Signed model and config updates: verified, staged, self-tested, switched
atomically, rolled back.

Two kinds, each in its own store: ``models`` (a models folder: its self-test
loads and self-tests every model) and ``config`` (``dairy-edge.yaml``: it must
load with the agent's loader, pass the preflight checks and keep
``gateway.data_dir``; the agent runs ``--config
<data_dir>/updates/config/current/dairy-edge.yaml`` and reads it at its next start).

A bundle is a tar file:

    bundle.json   {"format": 1, "kind": "models", "version": "1.4.0",
                   "created": ISO time, "files": {"manifest.json": SHA256, ...}}
    bundle.sig    Ed25519 signature of bundle.json's exact bytes (64 bytes)
    files/...     the payload: a models folder (manifest.json and what it lists)

On the gateway (``<data_dir>/updates/models``)::

    versions/1.3.0/   a verified, self-tested payload
    versions/1.4.0/
    current  -> versions/1.4.0     vision.models.dir points here
    previous -> versions/1.3.0
    pending.json                   written (atomically) just before a switch,
                                   cleared once the new version ran a while
    rolled_back.json               versions rolled back: not applied again
                                   without ``force``
    .lock                          held while an apply runs (one at a time)
    events.jsonl                   every switch, refusal and rollback, one JSON a line

``apply`` refuses (UpdateRefused, nothing changed) a bundle whose signature no
trusted key verifies, a file whose hash differs or that the signed list lacks,
a file over ``MAX_MEMBER_BYTES`` (each is hashed and counted while it is
extracted: a lying or sparse member stops at once), a version not newer than
the running one, a version rolled back before (unless ``force``), and models
that fail their self-test. Staging folders left by an apply that was killed are
removed by the next one.
The switch is one ``rename`` of a symlink, so a power cut or SIGKILL at any
moment leaves ``current`` at the old or the new version, each verified.

Crash loops: ``boot_check`` runs before every start (``ExecStartPre=`` in
the unit). After a switch (which the running agent hot-loads) it counts the
starts that follow the switch or the previous start within ``CRASH_WINDOW_S``
and, among them, those after an unclean exit: the agent leaves
``<data_dir>/updates/clean-stop`` when it stops gracefully (``mark_clean_stop``)
and each boot check takes it away, so a start without it followed a crash, a
kill by the watchdog or a power cut. At ``CRASH_STARTS`` such starts it switches
back to ``previous``; restarts for a config edit or a reboot do not count. A
start more than ``CRASH_WINDOW_S`` after the switch or the start before means
the new version ran that long: the switch is confirmed. A damaged
``pending.json`` is logged and read as "on trial since now"; one naming a
version that is not current (the apply stopped before its switch) is dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography is imported where a key is used: it costs the
    # daemon about 8 MiB of resident memory, and the daemon only reports versions
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config.model import ModelsConfig
from agent.errors import EdgeAgentError

log = logging.getLogger(__name__)

FORMAT = 1
KINDS = ("models", "config")
CONFIG_FILE = "dairy-edge.yaml"  # what a config bundle carries
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # one file of the payload (a model is tens of MB)
CRASH_WINDOW_S = 600.0
CRASH_STARTS = 3
CLEAN_STOP = "clean-stop"  # under <data_dir>/updates: the agent's last exit was graceful

SelfTest = Callable[[Path], str | None]  # staged folder -> problem, or None when it passes


class UpdateRefused(EdgeAgentError):
    """A bundle that is not applied; nothing on the gateway changed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"update refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class BundleInfo:
    kind: str
    version: str
    created: str
    files: dict[str, str]

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)


def version_key(version: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in version.split("."))
    except ValueError:
        raise UpdateRefused("bad_version", f"{version!r} is not dotted numbers") from None
    if not parts or any(p < 0 for p in parts):
        raise UpdateRefused("bad_version", f"{version!r} is not dotted numbers")
    return parts


# -- keys and signing (the publisher's side) -----------------------------------------

def make_keypair(folder: Path, name: str = "update-signing") -> tuple[Path, Path]:
    """Write ``name.key`` (private, 0600) and ``name.pub`` (public) PEM files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = folder / f"{name}.key"
    public = folder / f"{name}.pub"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sign_bundle(payload: Path, kind: str, version: str, private_key: Path, out: Path) -> Path:
    """Pack ``payload`` (a folder, or for ``config`` a YAML file) into a signed
    bundle at ``out``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    version_key(version)
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{private_key} is not an Ed25519 private key")
    if payload.is_file():  # a config file: carried as dairy-edge.yaml
        if kind != "config":
            raise ValueError(f"a {kind} bundle is made from a folder, not a file")
        sources = {CONFIG_FILE: payload}
    else:
        sources = {p.relative_to(payload).as_posix(): p
                   for p in sorted(payload.rglob("*")) if p.is_file()}
    files = {rel: _sha256(path) for rel, path in sources.items()}
    meta = json.dumps({"format": FORMAT, "kind": kind, "version": version,
                       "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       "files": files}, indent=1, sort_keys=True).encode()
    with tarfile.open(out, "w") as tar:
        for name, data in (("bundle.json", meta), ("bundle.sig", key.sign(meta))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            with tempfile.TemporaryFile() as tmp:
                tmp.write(data)
                tmp.seek(0)
                tar.addfile(info, tmp)
        for rel in files:
            tar.add(sources[rel], arcname=f"files/{rel}", recursive=False)
    return out


def load_public_keys(folder: Path) -> list[Ed25519PublicKey]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = []
    for path in sorted(folder.glob("*.pub")) if folder.is_dir() else []:
        key = serialization.load_pem_public_key(path.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            keys.append(key)
    return keys


# -- verification (the gateway's side) ------------------------------------------------

def verify_bundle(bundle: Path, keys: Iterable[Ed25519PublicKey], into: Path) -> BundleInfo:
    """Check the signature, then extract the payload into ``into`` and check
    every file against the signed list. UpdateRefused on any problem."""
    keys = list(keys)
    if not keys:
        raise UpdateRefused("no_keys", "no trusted public key (*.pub) to verify with")
    try:
        if bundle.stat().st_size > MAX_BUNDLE_BYTES:
            raise UpdateRefused("too_large", f"{bundle} is over {MAX_BUNDLE_BYTES} bytes")
        with tarfile.open(bundle, "r:") as tar:
            return _verify_tar(bundle, tar, keys, into)
    except (OSError, tarfile.TarError) as err:
        raise UpdateRefused("unreadable", f"{bundle}: {err}") from err


def _verify_tar(bundle: Path, tar: tarfile.TarFile, keys: list[Ed25519PublicKey],
                into: Path) -> BundleInfo:
    from cryptography.exceptions import InvalidSignature

    members = {m.name: m for m in tar.getmembers()}
    meta, sig = _member(tar, members, "bundle.json"), _member(tar, members, "bundle.sig")
    for key in keys:
        try:
            key.verify(sig, meta)
            break
        except InvalidSignature:
            continue
    else:
        raise UpdateRefused("bad_signature", f"{bundle.name}: no trusted key signed it")
    info = _parse_meta(meta)
    into.mkdir(parents=True)
    extracted: set[str] = set()
    for name, member in members.items():
        if name in ("bundle.json", "bundle.sig"):
            continue
        rel = _payload_name(name)
        if rel not in info.files:
            raise UpdateRefused("unlisted_file", f"{name} is not in the signed list")
        if not member.isfile() or member.issparse():
            raise UpdateRefused("bad_member", f"{name} is not a plain file")
        if member.size > MAX_MEMBER_BYTES:
            raise UpdateRefused("too_large", f"{name} is {member.size} bytes, over "
                                f"{MAX_MEMBER_BYTES}")
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None
        with source, target.open("wb") as out:
            if _copy_hashed(source, out) != info.files[rel]:
                raise UpdateRefused("bad_hash", f"{rel} does not hash to its signed SHA-256")
        extracted.add(rel)
    for rel in info.files.keys() - extracted:
        raise UpdateRefused("missing_file", f"{rel} is signed but not in the bundle")
    return info


def _copy_hashed(source: Any, out: Any) -> str:
    """Copy at most ``MAX_MEMBER_BYTES``; the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    copied = 0
    for chunk in iter(lambda: source.read(1 << 20), b""):
        copied += len(chunk)
        if copied > MAX_MEMBER_BYTES:
            raise UpdateRefused("too_large", f"a file is over {MAX_MEMBER_BYTES} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name)
    if member is None or not member.isfile() or member.size > 1 << 20:
        raise UpdateRefused("not_a_bundle", f"no {name}")
    data = tar.extractfile(member)
    assert data is not None
    return data.read()


def _payload_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or path.parts[:1] != ("files",) or len(
            path.parts) < 2:
        raise UpdateRefused("bad_member", f"{name!r} is outside files/")
    return PurePosixPath(*path.parts[1:]).as_posix()


def _parse_meta(meta: bytes) -> BundleInfo:
    try:
        data = json.loads(meta)
        if data.get("format") != FORMAT:
            raise UpdateRefused("bad_format", f"format {data.get('format')!r}, not {FORMAT}")
        info = BundleInfo(kind=str(data["kind"]), version=str(data["version"]),
                          created=str(data.get("created", "")),
                          files={str(k): str(v) for k, v in dict(data["files"]).items()})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UpdateRefused("not_a_bundle", f"bundle.json: {err}") from err
    if info.kind not in KINDS:
        raise UpdateRefused("bad_kind", f"kind {info.kind!r}")
    version_key(info.version)
    for rel in info.files:
        _payload_name(f"files/{rel}")
    return info


def models_self_test(folder: Path) -> str | None:
    """Every model of the staged folder loads, verifies and passes its self-test."""
    from agent.models.registry import ModelRegistry

    registry = ModelRegistry(ModelsConfig(dir=folder, reload_interval_s=0))
    try:
        status = registry.load_all()
        if registry.manifest_error:
            return registry.manifest_error
        bad = [f"{n}: {s['state']} ({s.get('error')})" for n, s in status.items()
               if s["state"] != "active"]
        if not status:
            return "the manifest lists no model"
        return "; ".join(bad) or None
    finally:
        registry.close()


def config_self_test(data_dir: Path | None = None) -> SelfTest:
    """A staged config bundle: ``dairy-edge.yaml`` loads with the agent's own
    loader and passes its preflight checks (folders, firmware, calibration, TLS,
    vision), and keeps ``gateway.data_dir`` (the updates live there). Secrets are
    not in a bundle and the CLI may not see the unit's credentials: their
    findings are left to the agent's start (a failure there is a crash loop,
    rolled back)."""

    def test(folder: Path) -> str | None:
        from agent.config.loader import load_config
        from agent.errors import ConfigError
        from agent.runtime.preflight import check_config, failures

        path = folder / CONFIG_FILE
        if not path.is_file():
            return f"the bundle has no {CONFIG_FILE}"
        try:
            config = load_config(path)
            bad = [f for f in failures(check_config(config))
                   if not f.check.startswith("secret ")]
        except ConfigError as err:
            return f"{CONFIG_FILE} does not validate: {err}"
        if bad:
            return "; ".join(f"{f.check}: {f.detail}" for f in bad)
        if data_dir is not None and config.gateway.data_dir.resolve() != data_dir.resolve():
            return (f"gateway.data_dir is {config.gateway.data_dir}, not {data_dir}: a config "
                    "bundle cannot move the data folder (its updates live there)")
        return None

    return test


def self_test_for(kind: str, data_dir: Path) -> SelfTest:
    return config_self_test(data_dir) if kind == "config" else models_self_test


def peek_kind(bundle: Path) -> str:
    """The kind a bundle says it is, unverified: only to pick the store, which
    verifies everything and refuses a kind it does not hold."""
    return peek(bundle)[0]


def peek(bundle: Path) -> tuple[str, tuple[int, ...]]:
    """The kind and version key a bundle says it has, unverified (to pick the
    store and the order of a folder's bundles); an odd version sorts first."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            meta = json.loads(_member(tar, members, "bundle.json"))
            kind, version = meta.get("kind"), str(meta.get("version"))
    except (OSError, tarfile.TarError, ValueError, AttributeError) as err:
        raise UpdateRefused("unreadable", f"{bundle}: {err}") from err
    try:
        key = version_key(version)
    except UpdateRefused:
        key = ()
    return (str(kind) if kind in KINDS else "models"), key


# -- the gateway's store of versions --------------------------------------------------

class UpdateStore:
    """``<data_dir>/updates/<kind>``: versions, the current and previous links."""

    def __init__(self, data_dir: Path, kind: str = "models",
                 self_test: SelfTest | None = None) -> None:
        self.root = data_dir / "updates" / kind
        self.kind = kind
        self.self_test = self_test or self_test_for(kind, data_dir)
        self.current = self.root / "current"
        self.previous = self.root / "previous"
        self.pending = self.root / "pending.json"
        self.rolled_back = self.root / "rolled_back.json"
        self.events = self.root / "events.jsonl"

    def version(self, link: Path | None = None) -> str | None:
        link = link or self.current
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def apply(self, bundle: Path, keys: Iterable[Ed25519PublicKey],
              force: bool = False) -> BundleInfo:
        """Verify, stage, self-test, switch. UpdateRefused (and an event) when not.

        :param force: apply a version that was rolled back before."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "versions").mkdir(exist_ok=True)
        try:
            with self._apply_lock():
                self._remove_stale_staging()
                return self._apply(bundle, keys, force)
        except UpdateRefused as err:
            self._event("refused", bundle=bundle.name, reason=err.reason, detail=err.detail)
            raise
        finally:
            self._hand_over()

    def _apply(self, bundle: Path, keys: Iterable[Ed25519PublicKey],
               force: bool) -> BundleInfo:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            info = verify_bundle(bundle, keys, staging / "payload")
            if info.kind != self.kind:
                raise UpdateRefused("bad_kind", f"a {info.kind} bundle, not {self.kind}")
            running = self.version()
            if running is not None and info.key <= version_key(running):
                raise UpdateRefused("not_newer",
                                    f"version {info.version} is not newer than {running}")
            bad = self._rolled_back().get(info.version)
            if bad is not None and not force:
                raise UpdateRefused("rolled_back", f"version {info.version} was rolled back "
                                    f"({bad}); apply it again with --force")
            problem = self.self_test(staging / "payload")
            if problem:
                raise UpdateRefused("self_test", problem)
            target = self.root / "versions" / info.version
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "payload", target)
            _fsync_dir(target.parent)
            old = self.version()
            # pending.json first: a stop between the two leaves a pending version that
            # is not current, which boot_check drops; never a switch without a trial.
            _write_json(self.pending, {"version": info.version, "previous": old,
                                       "starts": [], "crashes": [],
                                       "switched_at": time.time()})
            self._switch(target)
            if old is not None:
                self._link(self.previous, self.root / "versions" / old)
            if bad is not None:
                self._remember_rolled_back(info.version, None)
            self._event("switched", version=info.version, previous=old,
                        **({"forced": True} if bad is not None else {}))
            return info
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @contextlib.contextmanager
    def _apply_lock(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateRefused("busy", "another update is being applied") from None
            yield
        finally:
            os.close(fd)

    def _remove_stale_staging(self) -> None:
        """Staging folders of an apply that was killed (we hold the lock: none is live)."""
        for stale in self.root.glob(".staging-*"):
            log.info("removing %s, left by an apply that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)

    def _rolled_back(self) -> dict[str, str]:
        """Versions rolled back, with why; a damaged file is read as none (logged)."""
        if not self.rolled_back.exists():
            return {}
        try:
            data = json.loads(self.rolled_back.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in dict(data).items()}
        except (OSError, ValueError, TypeError) as err:
            log.warning("%s is damaged (%s): no version is held back", self.rolled_back, err)
            return {}

    def _remember_rolled_back(self, version: str | None, why: str | None) -> None:
        if version is None:
            return
        held = self._rolled_back()
        if why is None:
            held.pop(version, None)
        else:
            held[version] = why
        _write_json(self.rolled_back, held)

    def rollback(self, why: str = "requested") -> str:
        try:
            return self._rollback(why)
        finally:
            self._hand_over()

    def _rollback(self, why: str) -> str:
        old = self.version(self.previous)
        if old is None or not (self.root / "versions" / old).is_dir():
            raise UpdateRefused("no_previous", "no previous version to go back to")
        bad = self.version()
        self._switch(self.root / "versions" / old)
        self.previous.unlink(missing_ok=True)
        self.pending.unlink(missing_ok=True)
        self._remember_rolled_back(bad, why)
        self._event("rolled_back", version=old, from_version=bad, why=why)
        return old

    def boot_check(self, now: float | None = None, clean: bool | None = None) -> str:
        """Before each start: confirm a switch that ran, roll back a crash loop.
        Never raises for a damaged state: a boot check must not stop a start.

        :param clean: whether the last exit was graceful, when the caller took
            the mark already (``boot_check_all``: one mark for every kind)."""
        try:
            if clean is None:
                clean = take_clean_stop(self.root.parent.parent)
            return self._boot_check(time.time() if now is None else now, clean)
        finally:
            self._hand_over()

    def _boot_check(self, now: float, clean: bool) -> str:
        if not self.pending.exists():
            return "nothing pending"
        current = self.version()
        state = self._read_pending(now, current)
        version = state.get("version")
        if version is None or version != current:
            # The apply stopped between writing pending.json and its switch, or
            # someone switched by hand: what runs is not on trial.
            self.pending.unlink(missing_ok=True)
            self._event("pending_dropped", version=version, current=current)
            return f"version {version} was never switched to (running {current}): " \
                   "nothing on trial"
        starts = [float(t) for t in state.get("starts", [])]
        crashes = [float(t) for t in state.get("crashes", [])]
        # The agent hot-loads a switched version without a restart: the switch
        # counts as the start before the first one.
        last = starts[-1] if starts else float(state.get("switched_at", now))
        if now - last > CRASH_WINDOW_S:
            self.pending.unlink()
            self._event("confirmed", version=version)
            return f"version {version} confirmed"
        starts.append(now)
        if not clean:
            crashes.append(now)
        if len(crashes) >= CRASH_STARTS:
            why = (f"{len(crashes)} starts after an unclean exit within "
                   f"{CRASH_WINDOW_S:g} s of each other after the switch")
            try:
                old = self._rollback(why)
            except UpdateRefused as err:  # the first version ever: nothing to go back to
                self.pending.unlink(missing_ok=True)
                self._event("crash_loop", version=version, detail=f"{why}; {err.detail}")
                return f"crash loop on version {version}, and {err.detail}"
            return f"crash loop: rolled back to {old}"
        state.update(starts=starts, crashes=crashes)
        _write_json(self.pending, state)
        how = "a clean stop" if clean else "an unclean exit"
        return (f"version {version} on trial (start {len(starts)} after the switch, "
                f"this one after {how}; {len(crashes)} of {CRASH_STARTS} unclean)")

    def _read_pending(self, now: float, current: str | None) -> dict[str, Any]:
        """pending.json; a damaged one is logged and read as "on trial since now"."""
        try:
            state = json.loads(self.pending.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise TypeError("not a JSON object")
            for key in ("starts", "crashes"):
                if not all(isinstance(t, int | float) for t in state.get(key, [])):
                    raise TypeError(f"{key} is not a list of times")
            return state
        except (OSError, ValueError, TypeError) as err:
            log.warning("%s is damaged (%s): version %s is on trial from now", self.pending,
                        err, current)
            self._event("pending_damaged", version=current, detail=str(err))
            return {"version": current, "previous": self.version(self.previous),
                    "starts": [], "crashes": [], "switched_at": now}

    def versions(self) -> tuple[list[str], list[str]]:
        """The version folders, oldest first, and the other names under versions/
        (skipped with a warning: a folder someone put there is not a version)."""
        folder = self.root / "versions"
        good: list[str] = []
        other: list[str] = []
        for path in folder.iterdir() if folder.is_dir() else []:
            try:
                version_key(path.name)
            except UpdateRefused:
                other.append(path.name)
            else:
                (good if path.is_dir() else other).append(path.name)
        if other:
            log.warning("%s: skipping %s: not version folders", folder, ", ".join(sorted(other)))
        return sorted(good, key=version_key), sorted(other)

    def status(self) -> dict[str, Any]:
        versions, other = self.versions()
        pending: Any = None
        if self.pending.exists():
            try:
                pending = json.loads(self.pending.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                pending = {"damaged": str(err)}
        return {"kind": self.kind, "current": self.version(),
                "previous": self.version(self.previous), "versions": versions,
                **({"not_versions": other} if other else {}), "pending": pending,
                "rolled_back": self._rolled_back()}

    def _hand_over(self) -> None:
        """Run by root (``sudo dairy-edge update ...``) on a data folder another
        user owns: give what was written under ``updates/`` to that owner, so the
        agent and its boot check (``User=dairy-edge``) can still write there."""
        if os.geteuid() != 0:
            return
        updates = self.root.parent
        try:
            owner = updates.parent.stat()
        except OSError:
            return
        if owner.st_uid == 0:
            return
        for top, dirs, files in os.walk(updates):
            for name in [top, *(os.path.join(top, n) for n in [*dirs, *files])]:
                try:
                    st = os.lstat(name)
                    if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                        os.lchown(name, owner.st_uid, owner.st_gid)
                except OSError as err:
                    log.warning("cannot give %s to uid %d: %s", name, owner.st_uid, err)

    def _switch(self, target: Path) -> None:
        self._link(self.current, target)

    def _link(self, link: Path, target: Path) -> None:
        """Point ``link`` at ``target`` in one rename: never absent, never half."""
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
        _fsync_dir(link.parent)

    def _event(self, what: str, **fields: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "kind": self.kind, "event": what, **fields})
        with self.events.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def take_clean_stop(data_dir: Path) -> bool:
    """Whether the agent's last exit was graceful; the mark is used up."""
    mark = data_dir / "updates" / CLEAN_STOP
    try:
        mark.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("cannot remove %s (%s): counting this start as after a crash", mark, err)
        return False
    return True


def boot_check_all(data_dir: Path, now: float | None = None) -> dict[str, str]:
    """The boot check of every kind, with the one clean-stop mark read once."""
    clean = take_clean_stop(data_dir)
    return {kind: UpdateStore(data_dir, kind, self_test_for(kind, data_dir)).boot_check(
        now, clean) for kind in KINDS}


def mark_clean_stop(data_dir: Path) -> None:
    """Called by the agent when it stops gracefully: the next ``boot_check``
    does not count that start as one after a crash. Never raises."""
    mark = data_dir / "updates" / CLEAN_STOP
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(dt.datetime.now(dt.UTC).isoformat(timespec="seconds") + "\n")
    except OSError as err:
        log.warning("cannot write %s (%s): the next start counts as after a crash", mark, err)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a temporary file, fsynced, renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(data))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- to central: the events the CLI wrote, and the versions that run ---------------------

SENT = "events.sent"  # under each kind's folder: bytes of events.jsonl the agent stored
EVENT_NAMES = {"switched": "update_switch", "refused": "update_refused",
               "rolled_back": "update_rollback"}


@dataclass(frozen=True)
class UpdateEvent:
    """One line of a kind's events.jsonl not yet stored by the agent."""

    kind: str
    name: str  # the agent's Event name: update_switch, update_refused, ...
    line: str  # the JSON line as written (its hash is the record id: a re-import dedups)
    fields: dict[str, Any]
    end: int  # the byte offset after this line, for ``mark_sent``


def unsent_events(data_dir: Path, limit: int = 1000) -> list[UpdateEvent]:
    """Complete lines of every kind's events.jsonl after the offset in events.sent.

    The CLI (often run by root while the agent runs) only appends to events.jsonl;
    the agent imports new lines at its start and once a minute, and moves the
    offset after its store committed them. A file shorter than the offset (it
    was replaced) is read from its start; a damaged line is sent as it is."""
    out: list[UpdateEvent] = []
    for kind in KINDS:
        root = data_dir / "updates" / kind
        offset = _sent_offset(root)
        try:
            with (root / "events.jsonl").open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if offset > size:
                    offset = 0
                fh.seek(offset)
                data = fh.read(1 << 20)
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("cannot read %s/events.jsonl: %s", root, err)
            continue
        end = offset
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n") or len(out) >= limit:
                break  # a line being written: the next import takes it
            end += len(raw)
            line = raw.decode("utf-8", "replace").strip()
            try:
                fields = json.loads(line)
                if not isinstance(fields, dict):
                    raise TypeError("not a JSON object")
            except (ValueError, TypeError) as err:
                fields = {"event": "damaged", "line": line[:500], "error": str(err)}
            what = str(fields.get("event", ""))
            out.append(UpdateEvent(kind, EVENT_NAMES.get(what, f"update_{what}"), line,
                                   fields, end))
    return out


def mark_sent(data_dir: Path, kind: str, end: int) -> None:
    """Remember that events.jsonl of ``kind`` is stored up to byte ``end``."""
    root = data_dir / "updates" / kind
    if end <= _sent_offset(root):
        return
    try:
        _write_json(root / SENT, {"offset": end})
    except OSError as err:
        log.warning("cannot write %s/%s (%s): those events are imported again (same "
                    "record ids: the store keeps one)", root, SENT, err)


def _sent_offset(root: Path) -> int:
    try:
        return int(json.loads((root / SENT).read_text(encoding="utf-8"))["offset"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, TypeError, KeyError) as err:
        log.warning("%s/%s is damaged (%s): importing events from the start", root, SENT, err)
        return 0


def versions_report(data_dir: Path, models_dir: Path) -> dict[str, Any]:
    """What this gateway runs: the model and config bundle versions (None when not
    from a bundle) and each model of the manifest in use, with its version and
    the metrics its manifest entry reports."""
    models: dict[str, Any] = {}
    try:
        manifest = json.loads((models_dir / "manifest.json").read_text(encoding="utf-8"))
        for entry in manifest.get("models", []):
            models[str(entry["name"])] = {"version": entry.get("version"),
                                          "metrics": entry.get("metrics") or {}}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        models = {"error": f"{models_dir}/manifest.json: {err}"}
    return {"models_bundle": UpdateStore(data_dir, "models").version(),
            "config_bundle": UpdateStore(data_dir, "config").version(),
            "models": models}
