"""`dairy-edge web user add|remove|list`: the password from stdin (never an
argument), hashed with argon2id in a 0600 file the running page reads at once."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config.model import WebConfig
from agent.web.users import UserStore
from agent.web.wiring import build_access


def _run(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def test_add_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "users.json"
    args = ["--users-file", str(path)]
    assert _run(["web", "user", "add", "anna", "--role", "technician", *args],
                "correct horse\n", monkeypatch) == 0
    assert "added anna (technician)" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "correct horse" not in text and "$argon2id$" in text
    store = UserStore(path)
    assert store.verify("anna", "correct horse") is not None
    assert store.verify("anna", "wrong horse") is None
    # a change of role and password replaces the old ones
    assert _run(["web", "user", "add", "anna", "--role", "viewer", *args], "new password\n",
                monkeypatch) == 0
    assert store.verify("anna", "correct horse") is None
    assert store.verify("anna", "new password").role == "viewer"  # type: ignore[union-attr]
    assert _run(["web", "user", "list", *args], "", monkeypatch) == 0
    assert "anna\tviewer" in capsys.readouterr().out
    assert _run(["web", "user", "remove", "anna", *args], "", monkeypatch) == 0
    assert _run(["web", "user", "remove", "anna", *args], "", monkeypatch) == 1
    assert json.loads(path.read_text())["users"] == {}


@pytest.mark.parametrize(("argv", "stdin", "says"), [
    (["anna", "--role", "technician"], "short\n", "at least 8"),
    (["anna", "--role", "technician"], "", "no password on standard input"),
    (["Anna!", "--role", "technician"], "long enough\n", "user name"),
])
def test_bad_input_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], argv: list[str],
                                   stdin: str, says: str) -> None:
    code = _run(["web", "user", "add", *argv, "--users-file", str(tmp_path / "u.json")], stdin,
                monkeypatch)
    assert code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "u.json").exists()


def test_first_start_creates_admin_with_a_password_file(tmp_path: Path) -> None:
    access = build_access(WebConfig(), tmp_path)
    assert access.users is not None
    password = (tmp_path / "web-initial-password").read_text().strip()
    assert stat.S_IMODE((tmp_path / "web-initial-password").stat().st_mode) == 0o600
    assert access.users.verify("admin", password) is not None
    # a second start leaves the users alone
    build_access(WebConfig(), tmp_path, admin_password="other password")
    assert access.users.verify("admin", password) is not None


def test_first_start_from_the_secret_and_login_off_only_on_loopback(tmp_path: Path) -> None:
    access = build_access(WebConfig(), tmp_path, admin_password="from the secret")
    assert access.users is not None and access.users.verify("admin", "from the secret")
    assert not (tmp_path / "web-initial-password").exists()
    assert build_access(WebConfig(host="127.0.0.1", login=False), tmp_path).users is None
    with pytest.raises(ValueError, match="allowed only with host"):
        WebConfig(host="0.0.0.0", login=False)
    safe = build_access(WebConfig(host="127.0.0.1", login=False), tmp_path, force_login=True)
    assert safe.login


def test_a_broken_users_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "web-users.json"
    path.write_text("{not json")
    access = build_access(WebConfig(), tmp_path)
    assert path.read_text() == "{not json", "left for a person to fix"
    assert not (tmp_path / "web-initial-password").exists()
    assert access.users is not None and access.users.verify("admin", "anything") is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_root_keeps_the_users_files_owner(tmp_path: Path) -> None:
    """`sudo dairy-edge web user add` must not leave root:root 0600 behind, which
    the service user (dairy-edge) could not read."""
    folder = tmp_path / "data"
    folder.mkdir()
    os.chown(folder, 4242, 4343)
    store = UserStore(folder / "web-users.json")
    store.add("anna", "technician", "anna-pass-1")  # a new file: the folder's owner
    st = (folder / "web-users.json").stat()
    assert (st.st_uid, st.st_gid) == (4242, 4343)
    os.chown(folder / "web-users.json", 4444, 4545)
    store.add("ben", "viewer", "ben-pass-1")  # an old file: its owner
    st = (folder / "web-users.json").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4444, 4545, 0o600)


def test_commands_do_not_pay_for_the_web_page() -> None:
    """Building the dairy-edge parser imports neither the page (aiohttp,
    prometheus_client, Babel) nor the users module (argon2); the names
    ``agent.web`` exports still work, on first use."""
    import subprocess
    import sys

    import agent.cli.web as cli_web
    import agent.web
    from agent.web.users import ROLES

    assert cli_web.ROLES == ROLES
    code = ("import argparse, sys; from agent.cli.main import _add_optional_commands; "
            "_add_optional_commands(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('aiohttp', 'argon2', 'babel', 'agent.web.app', "
            "'agent.web.users') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
    assert agent.web.make_web_app.__module__ == "agent.web.app"
    with pytest.raises(AttributeError):
        _ = agent.web.nothing_here  # type: ignore[attr-defined]
