"""`dairy-edge`: the command line. Thin: it parses arguments and calls the parts."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.config.loader import load_config, schema
from agent.config.model import Config
from agent.errors import ConfigError, EdgeAgentError
from agent.runtime.logging_setup import setup_logging

log = logging.getLogger("dairy-edge")


def build_parser(optional: bool | str = True) -> argparse.ArgumentParser:
    """The command line; without ``optional``, only the core commands (``run`` and
    the others defined here, not the tools in ``_add_optional_commands``); with a
    tool's command name, the core commands and that tool."""
    parser = argparse.ArgumentParser(
        prog="dairy-edge",
        description="Edge agent for dairy barns: MQTT sensors in, a durable buffer, "
        "exactly-once sync to the central store.",
        epilog="Start with `dairy-edge demo`. Each command has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"dairy-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the agent daemon", description="Run the agent daemon.")
    run.add_argument("--config", "-c", type=Path, help="YAML config (defaults when omitted)")
    run.add_argument(
        "--strict-config",
        action="store_true",
        help="exit with status 2 on an invalid config instead of starting in safe mode "
        "(status page up with the error, ingest off)",
    )
    run.set_defaults(func=cmd_run)

    central = sub.add_parser(
        "central",
        help="run the central receiver",
        description="Run the central receiver: verifies signed batches and stores them "
        "exactly once in PostgreSQL (or SQLite) and Redis.",
    )
    central.add_argument("--config", "-c", type=Path, help="YAML config (the `central` section)")
    central.set_defaults(func=cmd_central)
    from agent.cli.central_keys import add_central_keys_parser

    add_central_keys_parser(central)  # `central keys add|rotate|revoke|list`

    sim = sub.add_parser(
        "simulate",
        help="publish a simulated barn to a broker",
        description="Publish realistic payloads for every firmware config to an MQTT broker.",
    )
    sim.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    sim.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    sim.add_argument("--count", type=int, default=None, help="stop after this many messages")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sim.add_argument(
        "--bad-ratio", type=float, default=0.0, help="share of malformed payloads (0-1)"
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--prefix", default="barn", help="topic prefix (default barn)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser(
        "demo",
        help="run a whole simulated barn, agent and central receiver",
        description="Run the simulated barn, the agent and a central receiver on SQLite, "
        "with no config and no services to set up. Prints the status page URL.",
    )
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument(
        "--web-port", type=int, default=None,
        help="status page port; a busy one is an error (default: 8080, or any free port "
        "when 8080 is taken; 0: any free port)",
    )
    demo.add_argument("--rate", type=float, default=20.0, help="simulated messages per second")
    demo.add_argument(
        "--data-dir", type=Path, default=None,
        help="where to keep demo data (kept at exit; default: a temporary folder, "
        "removed at exit)",
    )
    demo.add_argument(
        "--mqtt-port",
        type=int,
        default=None,
        help="use the broker on this localhost port, or start an embedded one there; "
        "an error when that cannot listen (default: 1883, or any free port for the "
        "embedded broker)",
    )
    demo.add_argument(
        "--no-camera",
        action="store_true",
        help="leave out the generated ear-tag camera (sensors only)",
    )
    demo.set_defaults(func=cmd_demo)

    cfg = sub.add_parser("config", help="check a config file or print its schema")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = cfg_sub.add_parser(
        "check",
        help="validate a config file and what it needs, as `run` does",
        description="Validate a config file and everything `dairy-edge run` checks before "
        "it starts: the data folder, the firmware and calibration files, TLS files and the "
        "secrets (from the environment or $CREDENTIALS_DIRECTORY, as the service sees them). "
        "Exit status 2 when run would refuse it. Run it as the service user.",
    )
    check.add_argument("file", type=Path, help="the YAML config file")
    check.set_defaults(func=cmd_config_check)
    sch = cfg_sub.add_parser("schema", help="print the JSON Schema of the config")
    sch.set_defaults(func=cmd_config_schema)

    if optional:
        _add_optional_commands(sub, optional if isinstance(optional, str) else None)
    return parser


# The tools' top-level commands, in the order of the help, and the function that
# adds each one's parser (imported only when wanted: some import OpenCV).
_OPTIONAL = {
    "anomaly": ("agent.detect.anomaly.cli", "add_anomaly_cli"),
    "vision": ("agent.cli.vision", "add_vision_parser"),
    "models": ("agent.cli.models", "add_models_parser"),
    "calibrate": ("agent.cli.calibrate", "add_calibrate_parser"),
    "doctor": ("agent.cli.doctor", "add_doctor_parser"),
    "init": ("agent.cli.init", "add_init_parser"),
    "update": ("agent.cli.update", "add_update_parser"),
    "replay": ("agent.cli.replay", "add_replay_parser"),
    "web": ("agent.cli.web", "add_web_parser"),
}


def _add_optional_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                           only: str | None = None) -> None:
    """The tools' parsers; with ``only``, that command's alone."""
    for command, (module, adder) in _OPTIONAL.items():
        if only is None or command == only:
            getattr(importlib.import_module(module), adder)(sub)


def cmd_config_check(args: argparse.Namespace) -> int:
    from agent.runtime.preflight import check_config, failures

    config = load_config(args.file)
    findings = check_config(config)
    bad = failures(findings)
    print(f"{args.file}: {'NOT OK' if bad else 'OK'}")
    print(f"  gateway {config.gateway.id}, broker {config.mqtt.host}:{config.mqtt.port}, "
          f"buffer {config.store_path}, sync {'on' if config.sync.enabled else 'off'}")
    for cam in config.cameras:
        print(f"  camera {cam.id}: {cam.role} from {cam.source}, "
              f"{cam.infer_fps:g} frames/s to the models")
    for finding in findings:
        print("  " + finding.line().replace("\n", "\n  "))
    if bad:
        print(f"dairy-edge: {len(bad)} check(s) failed; `dairy-edge run` would refuse this "
              "config", file=sys.stderr)
        return 2
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(schema(), indent=2))
    return 0


def _load(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    setup_logging(config.logging)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from agent.runtime.daemon import Agent
    from agent.runtime.safe_mode import run_safe_mode

    try:
        agent = Agent(_load(args))  # a missing secret is a config error too
    except ConfigError as err:
        problem = str(err)
        print(f"dairy-edge: configuration error: {problem}", file=sys.stderr)
        if args.strict_config:
            return 2
        setup_logging(load_config().logging)
        return _run_until_signal(lambda stop: run_safe_mode(problem, args.config, stop))
    return _run_until_signal(agent.run)


def cmd_central(args: argparse.Namespace) -> int:
    from agent.central import serve_forever

    config = _load(args)
    return _run_until_signal(lambda stop: serve_forever(config.central, stop))


def cmd_simulate(args: argparse.Namespace) -> int:
    from agent.sources.publisher import run_simulation

    setup_logging(load_config().logging)
    report = run_simulation(
        host=args.host,
        port=args.port,
        rate=args.rate,
        count=args.count,
        duration=args.duration,
        bad_ratio=args.bad_ratio,
        seed=args.seed,
        topic_prefix=args.prefix,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.runtime.demo import run_demo

    setup_logging(load_config().logging)
    return _run_until_signal(
        lambda stop: run_demo(
            stop,
            duration=args.duration,
            web_port=args.web_port,
            rate=args.rate,
            data_dir=args.data_dir,
            mqtt_port=args.mqtt_port,
            cameras=not args.no_camera,
        )
    )


def _run_until_signal(main) -> int:  # type: ignore[no-untyped-def]
    """Run ``main(stop)`` until it returns or SIGINT/SIGTERM sets ``stop``."""
    import asyncio  # here: the one-shot tools (replay) need no event loop

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        result = await main(stop)
        return int(result or 0)

    return asyncio.run(runner())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The tools' parsers import their modules, and the vision tools import OpenCV:
    # about 34 MiB that `run`, the long-lived service, would then hold for good,
    # and a third of a second that every tool would wait for (`replay` included).
    command = argv[0] if argv else ""
    optional: bool | str = command if command in _OPTIONAL else command != "run"
    parser = build_parser(optional=optional)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"dairy-edge: configuration error: {err}", file=sys.stderr)
        return 2
    except EdgeAgentError as err:
        print(f"dairy-edge: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
