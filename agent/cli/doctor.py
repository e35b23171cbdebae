"""``dairy-edge doctor [--config FILE] [--json]``: the first thing a technician runs."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/dairy-edge/dairy-edge.yaml")


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = sub.add_parser(
        "doctor",
        help="check this gateway: config, broker, central, clock, disk, buffer, cameras",
        description="Check this gateway the way a technician would: the config and what it "
        "needs (as `config check`), the broker (reachable, login, subscriptions allowed), "
        "central (reachable, TLS, the key accepted by a signed probe that stores nothing), "
        "the clock, disk space, the buffer's health, and cameras and models when configured. "
        "Each check says OK, WARN or FAIL with the fix. Exit status 1 when any check fails. "
        "Run it as the service user (sudo -u dairy-edge) with the service's secrets in the "
        "environment, or as root.",
    )
    doctor.add_argument(
        "--config", "-c", type=Path, default=None,
        help=f"the agent's config (default {DEFAULT_CONFIG} when it exists, else the "
        "built-in defaults)",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON document instead of text")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.runtime.doctor import report_json, run_checks

    path = args.config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    findings = run_checks(path)
    failed = [f for f in findings if f.level == "failure"]
    if args.json:
        print(report_json(findings))
    else:
        for finding in findings:
            print(finding.line())
        warned = sum(f.level == "warning" for f in findings)
        print(f"\n{len(findings)} checks: {len(failed)} failed, {warned} warnings")
    return 1 if failed else 0
