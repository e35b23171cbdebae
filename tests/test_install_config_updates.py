"""Signed config bundles (agent/runtime/updates.py, kind "config"): a good
dairy-edge.yaml switches ``updates/config/current`` (what ``run --config``
points at); one that does not validate, moves the data folder or is not newer
is refused and nothing changes; a crash loop after a config switch is rolled
back, with the one clean-stop mark shared by both kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config.loader import load_config
from agent.runtime.updates import (
    CRASH_STARTS,
    UpdateRefused,
    UpdateStore,
    boot_check_all,
    load_public_keys,
    make_keypair,
    mark_clean_stop,
    sign_bundle,
)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, _public = make_keypair(tmp_path / "keys")
    return private, tmp_path / "keys"


def _config(tmp_path: Path, version: str, body: str = "") -> Path:
    data = tmp_path / "data"
    path = tmp_path / f"cfg-{version}.yaml"
    gw = version.replace(".", "-")
    path.write_text(f"gateway:\n  id: gw-{gw}\n  data_dir: {data}\n{body}")
    return path


def _bundle(tmp_path: Path, private: Path, version: str, body: str = "") -> Path:
    return sign_bundle(_config(tmp_path, version, body), "config", version, private,
                       tmp_path / f"c-{version}.tar")


def _events(store: UpdateStore) -> list[dict[str, object]]:
    return [json.loads(line) for line in store.events.read_text().splitlines()]


def test_a_good_config_bundle_switches_and_the_agent_loads_it(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data", "config")
    store.apply(_bundle(tmp_path, private, "1"), load_public_keys(pub))
    store.apply(_bundle(tmp_path, private, "2"), load_public_keys(pub))
    assert store.version() == "2" and store.version(store.previous) == "1"
    running = load_config(store.current / "dairy-edge.yaml")
    assert running.gateway.id == "gw-2"
    assert [e["event"] for e in _events(store)] == ["switched", "switched"]
    assert store.rollback() == "1"
    assert load_config(store.current / "dairy-edge.yaml").gateway.id == "gw-1"


@pytest.mark.parametrize(("body", "reason", "detail"), [
    ("mqtt:\n  port: not-a-port\n", "self_test", "does not validate"),
    ("nonsense_key: 1\n", "self_test", "does not validate"),
])
def test_a_config_that_does_not_validate_is_refused_and_nothing_changes(
    tmp_path: Path, keys: tuple[Path, Path], body: str, reason: str, detail: str
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data", "config")
    store.apply(_bundle(tmp_path, private, "1"), load_public_keys(pub))
    with pytest.raises(UpdateRefused) as err:
        store.apply(_bundle(tmp_path, private, "2", body), load_public_keys(pub))
    assert err.value.reason == reason and detail in err.value.detail
    assert store.version() == "1" and store.status()["versions"] == ["1"]
    assert _events(store)[-1]["event"] == "refused"


def test_a_config_that_moves_the_data_folder_is_refused(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(f"gateway:\n  id: gw\n  data_dir: {tmp_path / 'other'}\n")
    store = UpdateStore(tmp_path / "data", "config")
    with pytest.raises(UpdateRefused, match="cannot move the data folder"):
        store.apply(sign_bundle(elsewhere, "config", "1", private, tmp_path / "e.tar"),
                    load_public_keys(pub))
    assert store.version() is None


def test_an_older_or_same_config_version_is_refused(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    store = UpdateStore(tmp_path / "data", "config")
    store.apply(_bundle(tmp_path, private, "2.0"), load_public_keys(pub))
    for version in ("1.9", "2.0"):
        with pytest.raises(UpdateRefused) as err:
            store.apply(_bundle(tmp_path, private, version), load_public_keys(pub))
        assert err.value.reason == "not_newer"
    assert store.version() == "2.0"


def test_a_models_bundle_is_not_a_config(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, pub = keys
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"models": []}')
    bundle = sign_bundle(folder, "models", "5", private, tmp_path / "m.tar")
    with pytest.raises(UpdateRefused) as err:
        UpdateStore(tmp_path / "data", "config").apply(bundle, load_public_keys(pub))
    assert err.value.reason == "bad_kind"


def test_a_crash_loop_after_a_config_switch_is_rolled_back(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, pub = keys
    data = tmp_path / "data"
    store = UpdateStore(data, "config")
    store.apply(_bundle(tmp_path, private, "1"), load_public_keys(pub))
    store.pending.unlink()
    store.apply(_bundle(tmp_path, private, "2"), load_public_keys(pub))
    t = json.loads(store.pending.read_text())["switched_at"]
    # A clean restart to pick up the config does not count ...
    mark_clean_stop(data)
    assert "on trial" in boot_check_all(data, now=t + 5)["config"]
    assert (data / "updates" / "clean-stop").exists() is False
    # ... starts after unclean exits do.
    for n in range(1, CRASH_STARTS):
        assert "on trial" in boot_check_all(data, now=t + 5 + n * 30)["config"]
    outcome = boot_check_all(data, now=t + 5 + CRASH_STARTS * 30)
    assert "rolled back to 1" in outcome["config"]
    assert outcome["models"] == "nothing pending"
    assert store.version() == "1" and "2" in store.status()["rolled_back"]


def test_the_cli_signs_and_applies_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["update", "keygen", str(tmp_path / "k")]) == 0
    key = str(tmp_path / "k" / "update-signing.key")
    bundle = tmp_path / "c.tar"
    assert main(["update", "sign", str(_config(tmp_path, "1")), "--kind", "config",
                 "--version", "1", "--key", key, "-o", str(bundle)]) == 0
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["update", "apply", str(bundle), "--keys", str(tmp_path / "k"), *data]) == 0
    assert "restart the agent" in capsys.readouterr().out
    assert main(["update", "status", "--kind", "config", *data]) == 0
    assert json.loads(capsys.readouterr().out)["current"] == "1"
    bad = tmp_path / "bad.tar"
    assert main(["update", "sign", str(_config(tmp_path, "2", "mqtt:\n  port: x\n")),
                 "--kind", "config", "--version", "2", "--key", key, "-o", str(bad)]) == 0
    assert main(["update", "apply", str(bad), "--keys", str(tmp_path / "k"), *data]) == 1
    assert "nothing changed (running config 1)" in capsys.readouterr().err
    assert main(["update", "boot-check", *data]) == 0
    assert "(config)" in capsys.readouterr().out


def test_a_drop_folder_is_applied_oldest_first(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    private, pub = keys
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for version, body in (("3", ""), ("1", ""), ("2", "mqtt:\n  port: x\n")):
        _bundle(tmp_path, private, version, body).rename(inbox / f"z-{version}.tar")
    (inbox / "junk.tar").write_bytes(b"not a tar")
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["update", "apply", str(inbox), "--keys", str(pub), *data]) == 1
    store = UpdateStore(tmp_path / "data", "config")
    assert store.version() == "3" and store.status()["versions"] == ["1", "3"]
    assert sorted(p.name for p in (inbox / "applied").iterdir()) == ["z-1.tar", "z-3.tar"]
    assert sorted(p.name for p in (inbox / "refused").iterdir()) == ["junk.tar", "z-2.tar"]
    assert not list(inbox.glob("*.tar"))
    assert main(["update", "apply", str(inbox), "--keys", str(pub), *data]) == 0  # empty now
