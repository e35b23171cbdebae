"""Opening the buffer database: pragmas, integrity check, corrupt-file recovery.

Every connection uses WAL (readers never block the writer) and
``synchronous=FULL`` (a COMMIT survives power loss, R5), because an MQTT
PUBACK is sent only after the COMMIT returns.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

# Primary result codes (the low byte of an extended code) that mean the disk
# or file failed rather than our SQL.
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26
_FAULT_KINDS = {
    SQLITE_FULL: "disk_full",
    SQLITE_IOERR: "io_error",
    SQLITE_CORRUPT: "corrupt",
    SQLITE_NOTADB: "corrupt",
    SQLITE_CANTOPEN: "cant_open",
    SQLITE_READONLY: "read_only",
}


def fault_kind(err: BaseException) -> str | None:
    """The storage-fault kind of a sqlite3 error, or None if it is not one."""
    if not isinstance(err, sqlite3.Error):
        return None
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _FAULT_KINDS:
        return _FAULT_KINDS[code & 0xFF]
    text = str(err).lower()
    if "disk is full" in text:
        return "disk_full"
    if "disk i/o error" in text:
        return "io_error"
    if "malformed" in text or "not a database" in text:
        return "corrupt"
    return None


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with our pragmas; autocommit mode so we own BEGIN/COMMIT."""
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
    else:
        conn = sqlite3.connect(
            str(path),
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("buffer %s: journal_mode is %s, not wal", path, mode)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """Problems found by ``PRAGMA quick_check``; empty when the file is sound."""
    rows = conn.execute("PRAGMA quick_check").fetchall()
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


@dataclass(frozen=True, slots=True)
class OpenResult:
    conn: sqlite3.Connection
    moved_aside: Path | None  # where a corrupt file went, if there was one
    problems: tuple[str, ...]  # what quick_check or sqlite said about it


def open_checked(path: Path) -> OpenResult:
    """Open (creating) the buffer; move a corrupt file aside and start fresh.

    A corrupt buffer must not cause a crash loop (T21): what it held is lost
    either way, and the broker still holds everything we did not acknowledge.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str]
    try:
        conn = connect(path)
        try:
            problems = quick_check(conn)
        except sqlite3.DatabaseError as err:
            problems = [str(err)]
        if not problems:
            return OpenResult(conn, None, ())
        conn.close()
    except sqlite3.DatabaseError as err:
        if fault_kind(err) != "corrupt":
            raise
        problems = [str(err)]
    moved = move_aside(path)
    log.error("buffer %s is corrupt (%s); moved to %s", path, "; ".join(problems[:5]), moved)
    return OpenResult(connect(path), moved, tuple(problems))


def move_aside(path: Path) -> Path:
    """Rename ``path`` (and its -wal/-shm) to the first free ``<name>.corrupt-<n>``."""
    n = 1
    while path.with_name(f"{path.name}.corrupt-{n}").exists():
        n += 1
    target = path.with_name(f"{path.name}.corrupt-{n}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target
