"""``dairy-edge update``: signed model and config bundles (agent/runtime/updates.py).

    dairy-edge update keygen DIR                       # the publisher's key pair
    dairy-edge update sign MODELS_DIR --version V --key KEY -o BUNDLE
    dairy-edge update sign dairy-edge.yaml --kind config --version V --key KEY -o BUNDLE
    dairy-edge update apply BUNDLE [--config FILE] [--force]   # on the gateway
    dairy-edge update status | rollback [--kind K] | boot-check [--config FILE]
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
        help="signed model and config bundles: sign, apply (verify, self-test, switch), "
        "roll back",
        description="Signed model and config bundles. The publisher signs a models folder "
        "or a dairy-edge.yaml with an Ed25519 key; the gateway verifies the signature and "
        "every file's hash, refuses a version not newer than the running one, self-tests "
        "the models (or loads and preflight-checks the config), and switches "
        "<data_dir>/updates/KIND/current in one rename (point vision.models.dir at "
        "updates/models/current; run the agent with --config "
        "<data_dir>/updates/config/current/dairy-edge.yaml). Every switch, refusal and "
        "rollback goes to <data_dir>/updates/KIND/events.jsonl; the running agent sends "
        "them to central as events. "
        "Run as root (sudo), what it writes is given to the owner of the data folder, so the "
        "agent's boot check can still write there.",
    )
    act = update.add_subparsers(dest="update_command", metavar="ACTION", required=True)

    keygen = act.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("dir", type=Path, help="writes update-signing.key (0600) and .pub")
    keygen.set_defaults(func=_keygen)

    sign = act.add_parser("sign", help="pack and sign a models folder or a config file "
                          "into a bundle")
    sign.add_argument("payload", type=Path, help="a models folder (manifest.json and files), "
                      "or with --kind config a dairy-edge.yaml")
    sign.add_argument("--kind", choices=("models", "config"), default="models",
                      help="what the bundle carries (default models)")
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
        if name in ("status", "rollback"):
            cmd.add_argument("--kind", choices=("models", "config"),
                             default=None if name == "status" else "models",
                             help="which store (rollback: default models; status: both)")
        if name == "apply":
            cmd.add_argument("bundle", type=Path,
                             help="the bundle file, or a drop folder: its *.tar bundles are "
                             "applied oldest version first and moved to applied/ or refused/")
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


def _data_dir(args: argparse.Namespace) -> Path:
    from agent.config.loader import load_config

    if args.data_dir is not None:
        return Path(args.data_dir)
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return load_config(path).gateway.data_dir


def _store(args: argparse.Namespace, kind: str = "models"):  # type: ignore[no-untyped-def]
    from agent.runtime.updates import UpdateStore

    return UpdateStore(_data_dir(args), kind)


def _keygen(args: argparse.Namespace) -> int:
    from agent.runtime.updates import make_keypair

    private, public = make_keypair(args.dir)
    print(f"wrote {private} (keep it off the gateways) and {public} (copy it to "
          f"{KEYS_DIR}/ on each gateway)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from agent.runtime.updates import sign_bundle

    try:
        out = sign_bundle(args.payload, args.kind, args.version, args.key, args.out)
    except (ValueError, OSError) as err:
        print(f"dairy-edge update sign: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({args.kind} {args.version})")
    return 0


def _apply(args: argparse.Namespace) -> int:
    if args.bundle.is_dir():
        return _apply_folder(args)
    return min(_apply_one(args, args.bundle), 1)


def _apply_folder(args: argparse.Namespace) -> int:
    """Every *.tar of a drop folder, oldest version first; each goes to applied/
    or refused/ beside it (one refused as busy stays for the next run)."""
    from agent.runtime.updates import UpdateRefused, peek

    order = []
    for path in sorted(args.bundle.glob("*.tar")):
        try:
            order.append((peek(path), path))
        except UpdateRefused:
            order.append((("models", ()), path))
    if not order:
        print(f"dairy-edge update: no *.tar bundle in {args.bundle}")
        return 0
    worst = 0
    for _key, path in sorted(order):
        outcome = _apply_one(args, path)
        if outcome == 3:  # busy: try again next time
            worst = max(worst, 1)
            continue
        done = args.bundle / ("applied" if outcome == 0 else "refused")
        done.mkdir(exist_ok=True)
        path.replace(done / path.name)
        worst = max(worst, outcome)
    return worst


def _apply_one(args: argparse.Namespace, bundle: Path) -> int:
    from agent.runtime.updates import UpdateRefused, load_public_keys, peek_kind

    try:
        kind = peek_kind(bundle)
    except UpdateRefused as err:
        print(f"dairy-edge update: {err}; nothing changed", file=sys.stderr)
        return 1
    store = _store(args, kind)
    try:
        info = store.apply(bundle, load_public_keys(args.keys), force=args.force)
    except UpdateRefused as err:
        print(f"dairy-edge update: {err}; nothing changed "
              f"(running {kind} {store.version() or 'no bundle'})", file=sys.stderr)
        return 3 if err.reason == "busy" else 1
    if kind == "config":
        print(f"switched to config {info.version}; restart the agent to run it "
              "(systemctl restart dairy-edge); a crash loop after it rolls it back")
    else:
        print(f"switched to models {info.version}; the agent loads it at its next "
              "manifest check")
    return 0


def _status(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else ["models", "config"]
    out = {kind: _store(args, kind).status() for kind in kinds}
    print(json.dumps(out[args.kind] if args.kind else out, indent=2))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from agent.runtime.updates import UpdateRefused

    try:
        print(f"back to {args.kind} {_store(args, args.kind).rollback()}")
    except UpdateRefused as err:
        print(f"dairy-edge update: {err}", file=sys.stderr)
        return 1
    return 0


def _boot_check(args: argparse.Namespace) -> int:
    from agent.runtime.updates import boot_check_all

    for kind, outcome in boot_check_all(_data_dir(args)).items():
        print(f"dairy-edge update boot-check ({kind}): {outcome}")
    return 0  # never keep the agent from starting


_ACTIONS = {"apply": _apply, "status": _status, "rollback": _rollback, "boot-check": _boot_check}
