"""Signed model bundles (agent/runtime/updates.py): a good bundle switches and
reports its version; a bad signature, a wrong hash, an older version and a model
that fails its self-test are refused and nothing changes; a crash loop after a
switch is rolled back; SIGKILL during an apply leaves the old or the new version
active and verified, never a mix."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config.model import BUNDLED
from agent.runtime.updates import (
    CRASH_STARTS,
    CRASH_WINDOW_S,
    UpdateRefused,
    UpdateStore,
    load_public_keys,
    make_keypair,
    mark_clean_stop,
    models_self_test,
    sign_bundle,
    take_clean_stop,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = BUNDLED / "models"


def _payload(folder: Path, note: str = "", break_model: bool = False,
             model_version: str | None = None) -> Path:
    """A models folder with the shipped milk classifier only (small, self-tested)."""
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    entry = next(e for e in manifest["models"] if e["name"] == "milk_cls")
    folder.mkdir(parents=True)
    (folder / "selftest").mkdir()
    shutil.copy2(SHIPPED / entry["file"], folder / entry["file"])
    shutil.copy2(SHIPPED / entry["self_test"]["file"], folder / entry["self_test"]["file"])
    if break_model:  # signed as it is, but not the model the manifest's hash names
        (folder / entry["file"]).write_bytes(b"\0" * entry["bytes"])
    entry = {**entry, "source": entry["source"] + note,
             "version": model_version or entry["version"]}
    (folder / "manifest.json").write_text(json.dumps({"models": [entry]}, indent=1))
    return folder


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, _public = make_keypair(tmp_path / "keys")
    return private, tmp_path / "keys"


def _bundle(tmp_path: Path, private: Path, version: str, **kw: object) -> Path:
    payload = _payload(tmp_path / f"payload-{version}-{random.random()}", **kw)  # type: ignore[arg-type]
    return sign_bundle(payload, "models", version, private, tmp_path / f"m-{version}.tar")


def _events(store: UpdateStore) -> list[dict[str, object]]:
    return [json.loads(line) for line in store.events.read_text().splitlines()]


def test_a_good_bundle_switches_and_reports_its_version(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    info = store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    assert info.version == "1.0.0" and store.version() == "1.0.0"
    assert models_self_test(store.current) is None  # what vision.models.dir points at
    store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    status = store.status()
    assert status["current"] == "1.1.0" and status["previous"] == "1.0.0"
    assert status["versions"] == ["1.0.0", "1.1.0"]
    assert [e["event"] for e in _events(store)] == ["switched", "switched"]


def test_the_agents_model_registry_picks_up_a_switch(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """vision.models.dir at updates/models/current: a reload sees the new version."""
    from agent.config.model import ModelsConfig
    from agent.models.registry import ModelRegistry

    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0", model_version="7.0.0"),
                load_public_keys(pub))
    registry = ModelRegistry(ModelsConfig(dir=store.current))
    try:
        assert registry.load_all()["milk_cls"]["version"] == "7.0.0"
        store.apply(_bundle(tmp_path, private, "1.1.0", model_version="7.1.0"),
                    load_public_keys(pub))
        status = registry.reload()["milk_cls"]
        assert (status["state"], status["version"]) == ("active", "7.1.0")
        store.rollback()
        assert registry.reload()["milk_cls"]["version"] == "7.0.0"
    finally:
        registry.close()


@pytest.mark.parametrize("case", ["bad signature", "wrong hash", "older version",
                                  "same version", "fails its self-test", "unlisted file"])
def test_bad_bundles_are_refused_and_nothing_changes(
    case: str, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    before = (store.version(), sorted(p.name for p in (store.root / "versions").iterdir()))
    if case == "bad signature":
        other, _ = make_keypair(tmp_path / "other")
        bundle, reason = _bundle(tmp_path, other, "2.0.0"), "bad_signature"
    elif case in ("wrong hash", "unlisted file"):
        good = _bundle(tmp_path, private, "2.0.0")
        bundle = tmp_path / "tampered.tar"
        with tarfile.open(good) as src, tarfile.open(bundle, "w") as out:
            for member in src.getmembers():
                data = src.extractfile(member)
                if case == "wrong hash" and member.name == "files/milk_cls.onnx":
                    body = bytearray(data.read())  # type: ignore[union-attr]
                    body[100] ^= 0xFF
                    import io
                    out.addfile(member, io.BytesIO(bytes(body)))
                else:
                    out.addfile(member, data)
            if case == "unlisted file":
                import io
                extra = tarfile.TarInfo("files/extra.bin")
                extra.size = 3
                out.addfile(extra, io.BytesIO(b"abc"))
        reason = "bad_hash" if case == "wrong hash" else "unlisted_file"
    elif case == "older version":
        bundle, reason = _bundle(tmp_path, private, "0.9.0"), "not_newer"
    elif case == "same version":
        bundle, reason = _bundle(tmp_path, private, "1.0.0", note=" again"), "not_newer"
    else:
        bundle, reason = _bundle(tmp_path, private, "2.0.0", break_model=True), "self_test"
    with pytest.raises(UpdateRefused) as err:
        store.apply(bundle, load_public_keys(pub))
    assert err.value.reason == reason, err.value
    assert (store.version(), sorted(p.name for p in (store.root / "versions").iterdir())) == before
    assert not list(store.root.glob(".staging-*"))
    last = _events(store)[-1]
    assert last["event"] == "refused" and last["reason"] == reason


def test_a_crash_loop_after_a_switch_is_rolled_back(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    store.boot_check(now=0.0)
    assert "confirmed" in store.boot_check(now=CRASH_WINDOW_S + 1)  # 1.0.0 ran a while
    store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    t = 10_000.0
    for start in range(1, CRASH_STARTS):
        assert "on trial" in store.boot_check(now=t + start * 30)
        assert store.version() == "1.1.0"
    assert "rolled back to 1.0.0" in store.boot_check(now=t + CRASH_STARTS * 30)
    assert store.version() == "1.0.0" and not store.pending.exists()
    assert _events(store)[-1]["event"] == "rolled_back"
    assert models_self_test(store.current) is None


def test_a_switch_that_runs_a_while_is_confirmed(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    store.boot_check(now=100.0)
    assert "confirmed" in store.boot_check(now=100.0 + CRASH_WINDOW_S + 1)
    for later in range(5):  # restarts long after are not a crash loop
        store.boot_check(now=10_000.0 + later * 30)
    assert store.version() == "1.1.0"


def test_a_switch_hot_loaded_without_a_restart_is_confirmed_at_the_next_start(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    switched = json.loads(store.pending.read_text())["switched_at"]
    assert "confirmed" in store.boot_check(now=switched + CRASH_WINDOW_S + 1)
    for start in range(CRASH_STARTS + 1):  # a reboot loop weeks later is not the update's
        store.boot_check(now=switched + 30 * 86400 + start)
    assert store.version() == "1.1.0"


@pytest.mark.slow
def test_sigkill_during_an_apply_leaves_old_or_new_never_a_mix(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    data = tmp_path / "data"
    store = UpdateStore(data)
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    seen = set()
    rng = random.Random(7)
    for attempt in range(8):
        version = f"1.{attempt + 1}.0"
        bundle = _bundle(tmp_path, private, version)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "update", "apply", str(bundle), "--keys",
             str(pub), "--data-dir", str(data)], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        current = store.version()
        seen.add(current == version)
        assert current is not None and (store.root / "versions" / current).is_dir()
        assert models_self_test(store.current) is None, f"{current} is not whole"
        # a killed apply leaves no half version behind under versions/
        for folder in (store.root / "versions").iterdir():
            assert (folder / "manifest.json").is_file() and (folder / "milk_cls.onnx").is_file()
    assert True in seen, "no apply got as far as its switch"


def test_the_cli_signs_applies_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["update", "keygen", str(tmp_path / "k")]) == 0
    payload = _payload(tmp_path / "payload")
    bundle = tmp_path / "m.tar"
    assert main(["update", "sign", str(payload), "--version", "3.0.0", "--key",
                 str(tmp_path / "k" / "update-signing.key"), "-o", str(bundle)]) == 0
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["update", "apply", str(bundle), "--keys", str(tmp_path / "k"), *data]) == 0
    capsys.readouterr()
    assert main(["update", "status", *data]) == 0
    assert json.loads(capsys.readouterr().out)["models"]["current"] == "3.0.0"
    assert main(["update", "apply", str(bundle), "--keys", str(tmp_path / "k"), *data]) == 1
    assert "not newer" in capsys.readouterr().err
    assert main(["update", "rollback", *data]) == 1  # nothing to go back to
    assert main(["update", "boot-check", *data]) == 0


# -- the trial after a switch: pending.json and unclean exits ---------------------------


def _on_trial(tmp_path: Path, keys: tuple[Path, Path]) -> UpdateStore:
    """1.0.0 confirmed, then 1.1.0 switched to and on trial."""
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    store.pending.unlink()
    store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    return store


@pytest.mark.parametrize("damage", ["", "{\"version\": \"1.1", "[1, 2]",
                                    "{\"version\": \"1.1.0\", \"starts\": \"x\"}"])
def test_a_damaged_pending_file_is_on_trial_never_an_error(
    damage: str, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store = _on_trial(tmp_path, keys)
    store.pending.write_text(damage)
    assert "on trial" in store.boot_check(now=10_000.0)
    assert _events(store)[-1]["event"] == "pending_damaged"
    assert store.status()["pending"]["version"] == "1.1.0"
    # the crash-loop rollback still works after the damage
    for start in range(2, CRASH_STARTS + 1):
        result = store.boot_check(now=10_000.0 + start * 30)
    assert "rolled back to 1.0.0" in result and store.version() == "1.0.0"


def test_status_shows_a_damaged_pending_file(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    store = _on_trial(tmp_path, keys)
    store.pending.write_text("")
    assert "damaged" in store.status()["pending"]


def test_pending_is_written_before_the_switch(
    tmp_path: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply that stops between the two (power cut: here the switch fails)
    leaves a pending version that is not current; the boot check drops it."""
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    store.pending.unlink()
    seen: list[object] = []

    def cut(target: Path) -> None:
        seen.append(json.loads(store.pending.read_text())["version"])
        raise OSError("power cut")

    monkeypatch.setattr(store, "_switch", cut)
    with pytest.raises(OSError):
        store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    assert seen == ["1.1.0"] and store.version() == "1.0.0"
    assert not list(store.root.glob(".pending.json.*"))  # written whole, then renamed
    assert "never switched to" in store.boot_check(now=time.time())
    assert not store.pending.exists() and store.version() == "1.0.0"


def test_clean_restarts_do_not_roll_back(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Config edits and reboots stop the agent gracefully: not a crash loop."""
    store = _on_trial(tmp_path, keys)
    t = json.loads(store.pending.read_text())["switched_at"]
    for start in range(1, CRASH_STARTS * 3):
        mark_clean_stop(tmp_path / "data")
        assert "after a clean stop" in store.boot_check(now=t + start * 30)
    assert store.version() == "1.1.0"
    # unclean exits among them still count, up to the limit
    for crash in range(1, CRASH_STARTS + 1):
        result = store.boot_check(now=t + 300 + crash * 30)
        if crash < CRASH_STARTS:
            mark_clean_stop(tmp_path / "data")
            store.boot_check(now=t + 300 + crash * 30 + 5)
    assert "rolled back to 1.0.0" in result and store.version() == "1.0.0"


def test_a_crash_loop_on_the_first_version_ever_is_reported_not_raised(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    for start in range(1, CRASH_STARTS + 1):
        result = store.boot_check(now=time.time() + start)
    assert "nothing to go back to" in result or "no previous" in result
    assert store.version() == "1.0.0" and not store.pending.exists()


async def test_the_agent_marks_a_graceful_stop(tmp_path: Path) -> None:
    import asyncio

    from agent.config.loader import load_config
    from agent.runtime.daemon import Agent
    from agent.runtime.updates import CLEAN_STOP

    config = load_config(overrides={
        "gateway": {"id": "gw-clean", "data_dir": str(tmp_path)},
        "sync": {"enabled": False}, "web": {"enabled": False},
    })
    mark = tmp_path / "updates" / CLEAN_STOP
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(0.5)
    assert not mark.exists()
    stop.set()
    await asyncio.wait_for(task, 60)
    assert mark.is_file()
    assert take_clean_stop(tmp_path) and not mark.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (sudo dairy-edge update apply)")
def test_root_hands_what_it_writes_to_the_data_folders_owner(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """`sudo dairy-edge update apply` on a data folder owned by the service user:
    the boot check (User=dairy-edge) must still be able to write pending.json."""
    private, pub = keys
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 4321, 4321)
    store = UpdateStore(data)
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    store.apply(_bundle(tmp_path, private, "1.1.0"), load_public_keys(pub))
    store.rollback()
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [data / "updates",
                                                             *(data / "updates").rglob("*")]}
    assert owners == {(4321, 4321)}


def test_status_skips_a_stray_folder_under_versions(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    (store.root / "versions" / "backup-old").mkdir()
    assert main(["update", "status", "--kind", "models", "--data-dir",
                 str(tmp_path / "data")]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["versions"] == ["1.0.0"] and status["not_versions"] == ["backup-old"]


# -- extraction limits, stale staging, versions rolled back ----------------------------


def test_a_file_over_the_member_cap_is_refused_while_extracting(
    tmp_path: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.runtime import updates

    private, pub = keys
    bundle = _bundle(tmp_path, private, "1.0.0")
    monkeypatch.setattr(updates, "MAX_MEMBER_BYTES", 4096)  # the model is larger
    store = UpdateStore(tmp_path / "data")
    with pytest.raises(UpdateRefused) as err:
        store.apply(bundle, load_public_keys(pub))
    assert err.value.reason == "too_large" and store.version() is None
    assert not list(store.root.glob(".staging-*"))


def test_a_wrong_hash_stops_the_extraction_at_that_file(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """Hashed while extracted: the files after a bad one are never written."""
    import io

    private, pub = keys
    good = _bundle(tmp_path, private, "1.0.0")
    bundle = tmp_path / "tampered.tar"
    with tarfile.open(good) as src, tarfile.open(bundle, "w") as out:
        members = src.getmembers()
        first = next(m for m in members if m.name.startswith("files/"))
        for member in members:
            data = src.extractfile(member)
            body = data.read() if data else b""
            if member is first:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            out.addfile(member, io.BytesIO(body))
    into = tmp_path / "into"
    from agent.runtime import updates

    with pytest.raises(UpdateRefused) as err:
        updates.verify_bundle(bundle, load_public_keys(pub), into)
    assert err.value.reason == "bad_hash" and first.name.removeprefix("files/") in str(err.value)
    written = [p.name for p in into.rglob("*") if p.is_file()]
    assert written == [Path(first.name).name]  # nothing after it


def test_staging_left_by_a_killed_apply_goes_at_the_next_one(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    stale = store.root / ".staging-killed"
    (stale / "payload").mkdir(parents=True)
    (stale / "payload" / "big.onnx").write_bytes(b"\0" * 1000)
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    assert not list(store.root.glob(".staging-*"))


def test_a_rolled_back_version_is_refused_unless_forced(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    bad = _bundle(tmp_path, private, "1.1.0")
    store.apply(bad, load_public_keys(pub))
    t = json.loads(store.pending.read_text())["switched_at"]
    for start in range(1, CRASH_STARTS + 1):
        store.boot_check(now=t + start)
    assert store.version() == "1.0.0"
    assert "1.1.0" in store.status()["rolled_back"]
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["update", "apply", str(bad), "--keys", str(pub), *data]) == 1
    err = capsys.readouterr().err
    assert "was rolled back" in err and "--force" in err and store.version() == "1.0.0"
    assert _events(store)[-1]["reason"] == "rolled_back"
    assert main(["update", "apply", str(bad), "--keys", str(pub), "--force", *data]) == 0
    assert store.version() == "1.1.0" and store.status()["rolled_back"] == {}
    assert _events(store)[-1]["forced"] is True


def test_one_apply_at_a_time(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    import fcntl

    private, pub = keys
    store = UpdateStore(tmp_path / "data")
    store.root.mkdir(parents=True)
    with (store.root / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UpdateRefused) as err:
            store.apply(_bundle(tmp_path, private, "1.0.0"), load_public_keys(pub))
    assert err.value.reason == "busy" and store.version() is None
