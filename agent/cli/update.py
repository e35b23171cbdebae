"""``dairy-edge update``: signed model bundles (agent/runtime/updates.py).

    dairy-edge update keygen DIR                       # the publisher's key pair
    dairy-edge update sign MODELS_DIR --version V --key KEY -o BUNDLE
    dairy-edge update apply BUNDLE [--config FILE] [--force]   # on the gateway
    dairy-edge update status | rollback | boot-check [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KEYS_DIR = Path("/etc/dairy-edge/update-keys")
DEFAULT_CONFIG = Path("/etc/dairy-edge/dairy-edge.yaml")


def add_update_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    update = sub.add_parser(
        "update",
        help="signed model bundles: sign, apply (verify, self-test, switch), roll back",
        description="Signed model bundles. The publisher signs a models folder with an "
        "Ed25519 key; the gateway verifies the signature and every file's hash, refuses a "
        "version not newer than the running one, self-tests the models, and switches "
        "<data_dir>/updates/models/current in one rename (point vision.models.dir there). "
        "Every switch, refusal and rollback goes to <data_dir>/updates/models/events.jsonl. "
        "Run as root (sudo), what it writes is given to the owner of the data folder, so the "
        "agent's boot check can still write there.",
    )
    act = update.add_subparsers(dest="update_command", metavar="ACTION", required=True)

    keygen = act.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("dir", type=Path, help="writes update-signing.key (0600) and .pub")
    keygen.set_defaults(func=_keygen)

    sign = act.add_parser("sign", help="pack and sign a models folder into a bundle")
    sign.add_argument("payload", type=Path, help="a models folder (manifest.json and files)")
    sign.add_argument("--version", required=True, help="bundle version, dotted numbers")
    sign.add_argument("--key", type=Path, required=True, help="the private key (PEM)")
    sign.add_argument("--out", "-o", type=Path, required=True, help="the bundle file to write")
    sign.set_defaults(func=_sign)

    for name, text in (("apply", "verify, self-test and switch to a bundle"),
                       ("status", "the current, previous and staged versions"),
                       ("rollback", "switch back to the previous version"),
                       ("boot-check", ("before a start: confirm a switch or undo a crash "
                                       "loop (ExecStartPre= in the unit)"))):
        cmd = act.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name == "apply":
            cmd.add_argument("bundle", type=Path, help="the bundle file")
            cmd.add_argument("--keys", type=Path, default=KEYS_DIR,
                             help=f"folder of trusted *.pub keys (default {KEYS_DIR})")
            cmd.add_argument("--force", action="store_true",
                             help="apply a version that was rolled back before (it is "
                             "refused otherwise)")
        cmd.add_argument("--config", "-c", type=Path, default=None,
                         help=f"the agent's config, for gateway.data_dir (default "
                         f"{DEFAULT_CONFIG} when it exists)")
        cmd.add_argument("--data-dir", type=Path, default=None,
                         help="the agent's data folder (instead of --config)")
        cmd.set_defaults(func=_ACTIONS[name])


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from agent.config.loader import load_config
    from agent.runtime.updates import UpdateStore

    data_dir = args.data_dir
    if data_dir is None:
        path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        data_dir = load_config(path).gateway.data_dir
    return UpdateStore(data_dir)


def _keygen(args: argparse.Namespace) -> int:
    from agent.runtime.updates import make_keypair

    private, public = make_keypair(args.dir)
    print(f"wrote {private} (keep it off the gateways) and {public} (copy it to "
          f"{KEYS_DIR}/ on each gateway)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from agent.runtime.updates import sign_bundle

    out = sign_bundle(args.payload, "models", args.version, args.key, args.out)
    print(f"wrote {out} (models {args.version})")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from agent.runtime.updates import UpdateRefused, load_public_keys

    store = _store(args)
    try:
        info = store.apply(args.bundle, load_public_keys(args.keys), force=args.force)
    except UpdateRefused as err:
        print(f"dairy-edge update: {err}; nothing changed "
              f"(running {store.version() or 'no bundle'})", file=sys.stderr)
        return 1
    print(f"switched to models {info.version}; the agent loads it at its next manifest check")
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(_store(args).status(), indent=2))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from agent.runtime.updates import UpdateRefused

    try:
        print(f"back to models {_store(args).rollback()}")
    except UpdateRefused as err:
        print(f"dairy-edge update: {err}", file=sys.stderr)
        return 1
    return 0


def _boot_check(args: argparse.Namespace) -> int:
    print(f"dairy-edge update boot-check: {_store(args).boot_check()}")
    return 0  # never keep the agent from starting


_ACTIONS = {"apply": _apply, "status": _status, "rollback": _rollback, "boot-check": _boot_check}
