"""`dairy-edge central keys add|rotate|revoke|list`: each gateway's keys in the central database;
`dairy-edge central retention`: drop old readings by whole partitions.

A key is printed once, when it is made; the database keeps it (the receivers
need it to check signatures), `list` never shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from agent.config.loader import load_config
from agent.config.secrets import read_secret
from agent.errors import ConfigError

DATABASE_URL_ENV = "DAIRY_EDGE_CENTRAL_DATABASE_URL"


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # here: every command's parser imports this module, few need a loop

    return asyncio.run(coro)


def add_central_keys_parser(central: argparse.ArgumentParser) -> None:
    """Hang `keys ...` and `retention` under `central` (which alone still runs the receiver)."""
    sub = central.add_subparsers(dest="central_command", metavar="ACTION")
    keys = sub.add_parser(
        "keys",
        help="manage the gateways' keys in the central database",
        description="Each gateway signs its batches with a key of its own; central accepts "
        "a batch only from a key of the gateway it names. Keys live in the central database "
        "(central.database_url), so every receiver on it knows them within 5 s.",
    )
    keys.set_defaults(func=lambda args: _usage(keys))
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")

    def config_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", dest="keys_config", type=Path,
                       help="YAML config whose `central.database_url` names the database "
                       f"(required, unless {DATABASE_URL_ENV} is set)")

    add = actions.add_parser(
        "add", help="make a key for a gateway and print it once",
        description="Make a new key for GATEWAY_ID (at most two are valid at once) and print "
        "its id and secret: set them on the gateway as sync.key_id and DAIRY_EDGE_HMAC_KEY.",
    )
    add.add_argument("gateway", metavar="GATEWAY_ID", help="the gateway's gateway.id")
    add.add_argument("--key-id", help="key id (default: the gateway id and 8 random hex digits)")
    add.add_argument("--json", action="store_true", help="print JSON instead of text")
    config_option(add)
    add.set_defaults(func=cmd_keys_add, rotate=False)

    rotate = actions.add_parser(
        "rotate", help="make the gateway's next key (the oldest of two is revoked)",
        description="Make a new key for GATEWAY_ID. The current key stays valid, so the "
        "gateway keeps syncing until it has the new one; when it already has two, the "
        "oldest is revoked. Revoke the old key once the gateway uses the new one.",
    )
    rotate.add_argument("gateway", metavar="GATEWAY_ID", help="the gateway's gateway.id")
    rotate.add_argument("--key-id", help="key id (default: the gateway id and 8 random hex)")
    rotate.add_argument("--json", action="store_true", help="print JSON instead of text")
    config_option(rotate)
    rotate.set_defaults(func=cmd_keys_add, rotate=True)

    revoke = actions.add_parser(
        "revoke", help="revoke a key (refused within 5 s by every receiver)",
        description="Revoke KEY_ID: batches signed with it are answered 401 once the "
        "receivers reload their keys (at most 5 s).",
    )
    revoke.add_argument("key_id", metavar="KEY_ID")
    config_option(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)

    lst = actions.add_parser(
        "list", help="list keys (never their secrets)",
        description="List the keys in the central database: id, gateway, made, revoked.",
    )
    lst.add_argument("gateway", metavar="GATEWAY_ID", nargs="?", help="only this gateway")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    config_option(lst)
    lst.set_defaults(func=cmd_keys_list)

    retention = sub.add_parser(
        "retention",
        help="drop readings older than N days (whole monthly partitions)",
        description="Drop every monthly partition of the readings table (PostgreSQL) that "
        "ends more than --keep-days days ago, with its exactly-once claims. Readings of "
        "gateways without a synced clock (stamped 1970) stay in readings_default. "
        "Run it from cron or a systemd timer.",
    )
    retention.add_argument("--keep-days", type=int, required=True,
                           help="keep readings of at least this many days")
    retention.add_argument("--dry-run", action="store_true",
                           help="print what would be dropped, drop nothing")
    config_option(retention)
    retention.set_defaults(func=cmd_retention)

    from agent.cli.central_updates import add_central_updates_parsers

    add_central_updates_parsers(sub, config_option)  # `central versions`, `central bundles`


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def database_url(args: argparse.Namespace) -> str:
    """The database these commands act on: --config's, else DAIRY_EDGE_CENTRAL_DATABASE_URL.

    Never the default ``sqlite:///central.db``: a key added to a database no
    receiver reads would be silently lost. Says on stderr which one it is.
    """
    from agent.sources.camera.base import redact_uri

    path = getattr(args, "keys_config", None) or getattr(args, "config", None)
    if path is not None:
        url = load_config(path).central.database_url
        where = f"central.database_url of {path}"
    else:
        url = os.environ.get(DATABASE_URL_ENV, "").strip()
        where = DATABASE_URL_ENV
        if not url:
            raise ConfigError(
                "which central database? Pass --config FILE (its central.database_url, the "
                f"receivers' config) or set {DATABASE_URL_ENV}=postgresql://user@host/db"
            )
    print(f"database: {redact_uri(url)} ({where})", file=sys.stderr)
    return url


def _store(args: argparse.Namespace) -> Any:
    from agent.central.store import open_store

    return open_store(database_url(args), read_secret("db_password"))


async def _with_store(args: argparse.Namespace, fn: Any) -> Any:
    store = _store(args)
    await store.start()
    try:
        return await fn(store)
    finally:
        await store.close()


def cmd_keys_add(args: argparse.Namespace) -> int:
    from agent.central.keys import check_gateway, check_key_id, new_key_id, new_secret

    gateway = check_gateway(args.gateway)
    key_id = check_key_id(args.key_id) if args.key_id else new_key_id(gateway)
    secret = new_secret()
    revoked: list[str] = _run(
        _with_store(args, lambda s: s.add_key(gateway, key_id, secret, rotate=args.rotate))
    )
    if args.json:
        print(json.dumps({"gateway": gateway, "key_id": key_id, "secret": secret,
                          "revoked": revoked}))
        return 0
    print(f"gateway: {gateway}\nkey id:  {key_id}\nsecret:  {secret}")
    for old in revoked:
        print(f"revoked: {old} (the gateway already had two keys)")
    print("\nOn the gateway set, and restart it:\n"
          f"  config:      sync.key_id: {key_id}\n"
          "  environment: DAIRY_EDGE_HMAC_KEY=<the secret above>  (or the systemd "
          "credential hmac_key)\n"
          "The secret is not shown again.")
    if args.rotate:
        print("Once the gateway syncs with the new key: "
              "dairy-edge central keys revoke <old key id>")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    done: bool = _run(_with_store(args, lambda s: s.revoke_key(args.key_id)))
    if not done:
        print(f"dairy-edge: no active key {args.key_id!r} (see `dairy-edge central keys "
              "list --all`)", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}; receivers refuse it within 5 s")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    rows = _run(_with_store(args, lambda s: s.key_rows(include_revoked=args.all)))
    rows = [r for r in rows if args.gateway is None or r.device_id == args.gateway]
    if args.json:
        print(json.dumps([{"key_id": r.key_id, "gateway": r.device_id,
                           "created_at": r.created_at, "revoked_at": r.revoked_at}
                          for r in rows]))
        return 0
    if not rows:
        print("no keys" + (f" for {args.gateway}" if args.gateway else ""))
        return 0
    print(f"{'KEY ID':<52} {'GATEWAY':<24} {'MADE':<26} REVOKED")
    for r in rows:
        print(f"{r.key_id:<52} {r.device_id:<24} {r.created_at[:26]:<26} {r.revoked_at or '-'}")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    import time

    if args.keep_days < 1:
        print("dairy-edge: --keep-days must be at least 1", file=sys.stderr)
        return 2
    cutoff = time.time() - args.keep_days * 86400

    async def run(store: Any) -> list[str] | None:
        if not hasattr(store, "drop_readings_before"):
            return None
        dropped: list[str] = await store.drop_readings_before(cutoff, dry_run=args.dry_run)
        return dropped

    dropped = _run(_with_store(args, run))
    if dropped is None:
        print("this central database is SQLite: readings are not partitioned; nothing dropped")
        return 0
    verb = "would drop" if args.dry_run else "dropped"
    when = time.strftime("%Y-%m-%d", time.gmtime(cutoff))
    print(f"{verb} {len(dropped)} readings partition(s) ending before {when}"
          + (": " + ", ".join(dropped) if dropped else ""))
    return 0
