"""Status page users: a small JSON file of names, roles and argon2id hashes.

Why a file and not the buffer database: users are configuration, not data to
sync; the buffer can be moved aside when it is corrupt (T21) and must not take
the logins with it; and ``dairy-edge web user add`` must work whether the
agent runs or not without a second writer on the buffer. The agent re-reads
the file when it changes, so a user added (or removed) takes effect at once.

The file (``<data_dir>/web-users.json`` unless ``web.users_file`` says
otherwise) is written whole to a temporary file, fsynced and renamed over the
old one, with mode 0600 (written by root, it keeps the old file's owner, or its
folder's)::

    {"version": 1, "users": {"anna": {"role": "technician", "hash": "$argon2id$..."}}}
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from agent.errors import ConfigError

log = logging.getLogger(__name__)

ROLES = ("viewer", "technician")
# Roles that may change anything (confirm, reject, snooze, acknowledge).
CHANGERS = frozenset({"technician"})
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
FIRST_USER = "admin"
FIRST_PASSWORD_FILE = "web-initial-password"

# argon2id with the library's RFC 9106 "low memory" profile: 64 MiB, 3 passes,
# about 0.1 s a check on this machine (logins are rare and rate-limited).
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs as long
    as a wrong password (no user enumeration by timing). Made on first use, not
    at import: a hash costs 0.1 s, and every dairy-edge command imports this."""
    return _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    # A digest of the role and password hash: sessions carry it and end when it
    # changes (a new password or role logs the user out everywhere, in every process).
    stamp: str = ""


def _user(name: str, entry: dict[str, str]) -> User:
    digest = hashlib.sha256(f"{entry['role']}\0{entry['hash']}".encode()).hexdigest()[:24]
    return User(name, entry["role"], digest)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"user name {name!r}: use 1-32 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"password too long: at most {MAX_PASSWORD} characters")
    return password


class UserStore:
    """The users file; every method is thread-safe and re-reads a changed file."""

    def __init__(self, path: Path | None) -> None:
        """:param path: the users file; None: no users (nobody can log in)."""
        self.path = path
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, str]] = {}
        self._stamp: tuple[int, int, int] | None = None

    # -- reading ----------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, str]]:
        if self.path is None:
            return {}
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return self._users
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every write is a new inode
        if stamp == self._stamp:
            return self._users
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = data["users"]
            if not isinstance(users, dict):
                raise TypeError("users is not an object")
            clean = {
                str(n): {"role": str(u["role"]), "hash": str(u["hash"])}
                for n, u in users.items()
                if isinstance(u, dict) and u.get("role") in ROLES
            }
        except (OSError, ValueError, KeyError, TypeError) as err:
            # A broken file logs nobody in (never everybody); say how to fix it.
            log.error("users file %s unreadable (%s): nobody can log in until it is fixed "
                      "(dairy-edge web user add NAME --role ROLE rewrites it)", self.path, err)
            clean = {}
        self._users, self._stamp = clean, stamp
        return clean

    def users(self) -> list[User]:
        with self._lock:
            return [_user(n, u) for n, u in sorted(self._load().items())]

    def get(self, name: str) -> User | None:
        with self._lock:
            entry = self._load().get(name)
        return None if entry is None else _user(name, entry)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs; slow on purpose (argon2id)."""
        with self._lock:
            entry = self._load().get(name)
        hashed = entry["hash"] if entry else _dummy_hash()
        try:
            _HASHER.verify(hashed, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if entry is None:
            return None
        if _HASHER.check_needs_rehash(hashed):
            self.add(name, entry["role"], password)
            return self.get(name)
        return _user(name, entry)

    # -- writing ----------------------------------------------------------------
    def add(self, name: str, role: str, password: str) -> bool:
        """Add ``name`` or replace their role and password; True when new."""
        check_name(name)
        check_role(role)
        check_password(password)
        hashed = _HASHER.hash(password)
        with self._lock:
            users = dict(self._load())
            new = name not in users
            users[name] = {"role": role, "hash": hashed}
            self._write(users)
        return new

    def remove(self, name: str) -> bool:
        with self._lock:
            users = dict(self._load())
            if users.pop(name, None) is None:
                return False
            self._write(users)
        return True

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        if self.path is None:
            raise ConfigError("no users file configured (web.users_file)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = json.dumps({"version": 1, "users": users}, indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if os.geteuid() == 0:
                # root (sudo) writes for the agent's user: keep the old file's owner,
                # or its folder's, or the agent could no longer read its users.
                owner = self.path if self.path.exists() else self.path.parent
                st = owner.stat()
                os.fchown(fd, st.st_uid, st.st_gid)
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._stamp = None  # re-read on next use (mtime may not move within a tick)


def first_start(store: UserStore, password: str | None) -> dict[str, Any] | None:
    """With no users file yet, create it with ``admin`` (technician).

    The password is the ``web_admin_password`` secret when one is given (systemd
    ``LoadCredential=`` or ``$DAIRY_EDGE_WEB_ADMIN_PASSWORD``), else a random one
    written next to the users file (mode 0600) for the installer to read once.
    :returns: what was done (for the log), or None when the file already exists
        (even an unreadable one: fixing it is for a person, see the log).
    """
    if store.path is None or store.path.exists():
        return None  # users exist, or a broken file: never replaced behind anyone's back
    if password:
        store.add(FIRST_USER, "technician", password)
        return {"user": FIRST_USER, "password_from": "the web_admin_password secret"}
    generated = secrets.token_urlsafe(12)
    store.add(FIRST_USER, "technician", generated)
    where = store.path.with_name(FIRST_PASSWORD_FILE)
    fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (generated + "\n").encode())
    finally:
        os.close(fd)
    return {"user": FIRST_USER, "password_from": str(where)}
