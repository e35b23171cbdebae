"""`dairy-edge central versions`: which model and config versions each gateway runs
(its latest "versions" event, with the models' manifest metrics);
`dairy-edge central bundles add|list`: the signed bundles published, verified
against the trusted update keys before they are recorded.

Central does not push bundles to the gateways: copy the file to a gateway and run
`dairy-edge update apply` there (docs/install.md, "Model and config updates").
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.cli.central_keys import _run, _with_store

KEYS_DIR = Path("/etc/dairy-edge/update-keys")


def add_central_updates_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    versions = sub.add_parser(
        "versions", help="the model and config versions each gateway runs",
        description="List each gateway's model bundle, config bundle and model versions "
        "(with the metrics of their manifest entries) from its latest 'versions' event, "
        "and when central last heard from it.",
    )
    versions.add_argument("--json", action="store_true", help="print JSON (with metrics)")
    config_option(versions)
    versions.set_defaults(func=cmd_versions)

    bundles = sub.add_parser(
        "bundles", help="the signed update bundles published",
        description="Record signed bundles (made by `dairy-edge update sign`) after "
        "verifying them like a gateway does, and list them. Central keeps the record; "
        "it does not send bundles to gateways.",
    )
    bundles.set_defaults(func=lambda args: (bundles.print_usage(sys.stderr), 2)[1])
    actions = bundles.add_subparsers(dest="bundles_command", metavar="ACTION")
    add = actions.add_parser(
        "add", help="verify a bundle and record its kind, version and SHA-256",
        description="Verify BUNDLE's signature and every file's hash against the trusted "
        "keys, then record it. Refused (exit 1, nothing recorded) when it does not verify "
        "or its kind and version are recorded already.",
    )
    add.add_argument("bundle", type=Path, help="the bundle file")
    add.add_argument("--keys", type=Path, default=KEYS_DIR,
                     help=f"folder of trusted *.pub keys (default {KEYS_DIR})")
    config_option(add)
    add.set_defaults(func=cmd_bundles_add)
    lst = actions.add_parser("list", help="list the recorded bundles",
                             description="List the recorded bundles, oldest first by kind.")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    config_option(lst)
    lst.set_defaults(func=cmd_bundles_list)


def cmd_versions(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = _run(_with_store(args, _versions))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'gateway':<20} {'models':<10} {'config':<8} {'last seen':<27} model versions")
    for row in rows:
        models = row["models"] if isinstance(row["models"], dict) else {}
        named = ", ".join(f"{name} {entry.get('version')}" for name, entry in
                          sorted(models.items()) if isinstance(entry, dict))
        print(f"{row['device_id']:<20} {row['models_bundle'] or 'shipped':<10} "
              f"{row['config_bundle'] or 'local':<8} {row['last_seen'] or '-'!s:<27} "
              f"{named or models.get('error', '-')}")
    if not rows:
        print("(no gateway has reported its versions yet)")
    return 0


async def _versions(store: Any) -> list[dict[str, Any]]:
    if not hasattr(store, "gateway_versions"):
        raise SystemExit("this central store keeps no versions")
    rows: list[dict[str, Any]] = await store.gateway_versions()
    return rows


def cmd_bundles_add(args: argparse.Namespace) -> int:
    from agent.runtime.updates import UpdateRefused, load_public_keys, verify_bundle

    try:
        with tempfile.TemporaryDirectory() as tmp:
            info = verify_bundle(args.bundle, load_public_keys(args.keys), Path(tmp) / "p")
        digest = hashlib.sha256(args.bundle.read_bytes()).hexdigest()
    except (UpdateRefused, OSError) as err:
        print(f"dairy-edge central bundles add: {err}; nothing recorded", file=sys.stderr)
        return 1
    added: bool = _run(_with_store(args, lambda s: s.add_bundle(
        digest, info.kind, info.version, info.created or dt.datetime.now(dt.UTC).isoformat(),
        info.files)))
    if not added:
        print(f"dairy-edge central bundles add: {info.kind} {info.version} (or this file) is "
              "recorded already; sign a new version", file=sys.stderr)
        return 1
    print(f"recorded {info.kind} {info.version} sha256 {digest}")
    return 0


def cmd_bundles_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = _run(_with_store(args, lambda s: s.bundles()))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        print(f"{row['kind']:<7} {row['version']:<12} {row['sha256']}  added {row['added_at']}")
    if not rows:
        print("(no bundle recorded)")
    return 0
