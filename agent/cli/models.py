"""``dairy-edge models list|verify|selftest``: the model manifest from a shell.

Each command loads models exactly as the agent does (``ModelRegistry`` and
``open_runner``), so what it reports is what the daemon would do.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent.config.loader import load_config
from agent.config.model import ModelsConfig
from agent.errors import ConfigError
from agent.models.errors import ModelRefused
from agent.models.loader import open_runner
from agent.models.manifest import read_manifest, verify_file
from agent.models.registry import ModelRegistry
from agent.models.selftest import run_self_test


def _models_config(args: argparse.Namespace) -> ModelsConfig:
    cfg = load_config(args.config).vision.models if args.config else ModelsConfig()
    updates: dict[str, object] = {}
    if args.dir is not None:
        updates["dir"] = args.dir
    if args.threads is not None:
        updates["threads"] = args.threads
    return cfg.model_copy(update=updates)


def _sha_state(cfg: ModelsConfig, name: str) -> str:
    try:
        entry = next(e for e in read_manifest(cfg.dir).entries if e.name == name)
        verify_file(entry, cfg.dir)
    except StopIteration:
        return "-"
    except ModelRefused:
        return "no"
    return "yes"


def _cmd_list(args: argparse.Namespace) -> int:
    cfg = _models_config(args)
    registry = ModelRegistry(cfg)
    status = registry.load_all()
    if registry.manifest_error:
        print(f"dairy-edge models: {registry.manifest_error}")
        return 1
    rows = [("NAME", "VERSION", "RUNTIME", "STATE", "SHA OK")]
    rows += [(name, s["version"] or "-", s["runtime"] or "-", s["state"], _sha_state(cfg, name))
             for name, s in status.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    cfg = _models_config(args)
    registry = ModelRegistry(cfg)
    status = registry.load_all()
    if registry.manifest_error:
        print(f"REFUSED  manifest: {registry.manifest_error}")
        return 1
    bad = 0
    for name, s in status.items():
        if s["state"] == "active":
            print(f"ok       {name} {s['version']} ({s['runtime']}, {s['file']})")
        else:
            bad += 1
            print(f"{s['state'].upper():<8} {name}: {s['error']}")
    print(f"{len(status) - bad} of {len(status)} models usable in {cfg.dir}")
    return 1 if bad else 0


def _cmd_selftest(args: argparse.Namespace) -> int:
    cfg = _models_config(args)
    try:
        read = read_manifest(cfg.dir)
    except ConfigError as err:
        print(f"REFUSED  manifest: {err}")
        return 1
    if args.name in read.invalid:
        print(f"REFUSED  {args.name}: {read.invalid[args.name]}")
        return 1
    entry = next((e for e in read.entries if e.name == args.name), None)
    if entry is None:
        names = ", ".join(e.name for e in read.entries) or "none"
        print(f"no model {args.name!r} in {read.path} (listed: {names})")
        return 1
    if entry.self_test is None:
        print(f"{entry.name} {entry.version} has no self-test (self_test is null); "
              "its file and tensors were checked only by loading")
    try:
        start = time.perf_counter()
        runner = open_runner(entry, cfg.dir, cfg.threads)  # verifies and self-tests once
        worst = run_self_test(runner, entry, cfg.dir) if entry.self_test else None
    except ModelRefused as err:
        print(f"REFUSED  {err}")
        return 1
    seconds = time.perf_counter() - start
    if worst is not None and entry.self_test is not None:
        print(f"ok       {entry.name} {entry.version}: outputs within {worst:.4g} of the "
              f"expected (atol {entry.self_test.atol}); load and tests took {seconds:.2f} s")
    return 0


def add_models_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``models`` (list, verify, selftest) to top-level argparse subparsers.

    Each leaf sets ``func``; ``run_models(args)`` (or ``args.func(args)``)
    returns the exit code.
    """
    models = subparsers.add_parser(
        "models", help="list, verify and self-test the on-device models",
        description="List, verify and self-test the models in models/manifest.json, "
        "loading them exactly as the agent does.",
    )
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", type=Path, default=None,
                       help="models folder with manifest.json (default: models.dir of the "
                       "config, else the bundled models/)")
        p.add_argument("--config", "-c", type=Path, default=None,
                       help="YAML config to take vision.models from")
        p.add_argument("--threads", type=int, default=None, help="threads per runner")

    lst = sub.add_parser("list", help="table of models: version, runtime, state, sha ok")
    common(lst)
    lst.set_defaults(func=_cmd_list)
    ver = sub.add_parser("verify", help="load every model; exit 1 if any is refused",
                         description="Verify every model (file size, sha256, tensors, "
                         "self-test). Prints one line per model; exit 1 if any is refused "
                         "or missing.")
    common(ver)
    ver.set_defaults(func=_cmd_verify)
    st = sub.add_parser("selftest", help="run one model's self-test",
                        description="Load one model and run its bundled self-test.")
    st.add_argument("name", metavar="NAME", help="model name in the manifest")
    common(st)
    st.set_defaults(func=_cmd_selftest)
    return models


def run_models(args: argparse.Namespace) -> int:
    """Run the parsed ``models`` command; returns the exit code."""
    return int(args.func(args))
