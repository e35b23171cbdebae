"""``dairy-edge web user add|remove|list``: the status page's users.

The password is read from standard input (one line) when it is not a terminal,
else asked twice without echo; it is never an argument (it would land in the
shell history and in ``ps``). A running agent picks the change up at once.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.web.users import UserStore

# Every dairy-edge command builds this parser: the users module (argon2) and the
# config loader are imported by the commands that use them, not here.
ROLES = ("viewer", "technician")  # agent.web.users.ROLES (a test checks they agree)


def add_web_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    web = sub.add_parser("web", help="manage the status page's users",
                         description="Manage who may log in to the status page.")
    web_sub = web.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    user = web_sub.add_parser("user", help="add, remove or list users",
                              description="Add, remove or list status page users.")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", type=Path,
                       help="agent config (its web.users_file or <data_dir>/web-users.json)")
        p.add_argument("--users-file", type=Path, help="the users file itself (overrides)")

    add = user_sub.add_parser(
        "add", help="add a user or change their role and password",
        description="Add a user, or replace an existing user's role and password. The "
        "password is read from standard input, or asked for on a terminal.")
    add.add_argument("name", help="login name: lower-case letters, digits, _ . -")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="viewer (reads) or technician (also confirms, rejects, snoozes)")
    common(add)
    add.set_defaults(func=_cmd_add)
    rm = user_sub.add_parser("remove", help="remove a user (their sessions end at once)",
                             description="Remove a user; their open sessions end at once.")
    rm.add_argument("name")
    common(rm)
    rm.set_defaults(func=_cmd_remove)
    ls = user_sub.add_parser("list", help="list users and roles",
                             description="List the users and their roles.")
    common(ls)
    ls.set_defaults(func=_cmd_list)


def _store(args: argparse.Namespace) -> UserStore:
    from agent.config.loader import load_config
    from agent.web.users import UserStore
    from agent.web.wiring import users_path

    if args.users_file is not None:
        return UserStore(args.users_file)
    config = load_config(args.config)
    return UserStore(users_path(config.web, config.gateway.data_dir))


def _password() -> str:
    from agent.web.users import check_password

    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise ConfigError("no password on standard input: pipe one line, or run on a "
                              "terminal to be asked")
        return check_password(line.rstrip("\r\n"))
    first = getpass.getpass("password: ")
    check_password(first)
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ: nothing changed")
    return first


def _cmd_add(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        new = store.add(args.name, args.role, _password())
    except PermissionError as err:
        raise ConfigError(f"cannot write {store.path}: {err.strerror}; run it as the "
                          "agent's user: sudo -u dairy-edge dairy-edge web user add ...") \
            from err
    print(f"{'added' if new else 'updated'} {args.name} ({args.role}) in {store.path}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    if not store.remove(args.name):
        print(f"dairy-edge web: no user {args.name!r} in {store.path}", file=sys.stderr)
        return 1
    print(f"removed {args.name} from {store.path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    users = store.users()
    if not users:
        print(f"no users in {store.path}; add one with "
              "`dairy-edge web user add NAME --role technician`")
        return 0
    for user in users:
        print(f"{user.name}\t{user.role}")
    return 0
