"""Safe mode: what `dairy-edge run` does with a configuration it cannot trust.

Exiting would put systemd into a restart storm and leave the technician with
nothing to look at. Instead the agent serves the status page (on the web
section of the file when that part is valid, else the defaults), reports the
configuration error on /healthz (503) and, after a login, on the page, takes no MQTT messages (the
broker keeps them in our persistent session) and waits for a fixed file and a
restart. Nothing in the broken file can switch anything *off*: safe mode reads
only the page's address, names, TLS and users file from it (``safe_web``); the
login stays on and /metrics closed whatever the file says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent import __version__
from agent.config.model import Config, WebConfig
from agent.runtime.notify import Notifier
from agent.web.app import make_web_app, start_web
from agent.web.status import StatusSnapshot
from agent.web.wiring import build_access, tls_context

log = logging.getLogger(__name__)


def salvage_web(path: Path | None) -> WebConfig:
    """The file's ``web`` section when it alone is valid, else the defaults."""
    if path is None:
        return WebConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        section: Any = data.get("web", {}) if isinstance(data, dict) else {}
        return WebConfig.model_validate(section or {})
    except (OSError, yaml.YAMLError, ValidationError, AttributeError):
        return WebConfig()


def safe_web(path: Path | None) -> WebConfig:
    """What safe mode takes from the file's ``web`` section: where to listen, the
    names it answers to, its certificate and its users (so technicians reach it
    as usual); never ``login: false`` nor ``metrics_open``."""
    web = salvage_web(path)
    return WebConfig(host=web.host, port=web.port, allowed_hosts=web.allowed_hosts,
                     users_file=web.users_file, tls_cert=web.tls_cert, tls_key=web.tls_key,
                     session_hours=web.session_hours)


async def run_safe_mode(error: str, config_path: Path | None, stop: asyncio.Event) -> int:
    web = safe_web(config_path)
    started = time.monotonic()
    problems = [f"configuration invalid: {line.strip()}" for line in error.splitlines()[1:]]
    problems = problems or [f"configuration invalid: {error}"]

    def status() -> StatusSnapshot:
        return StatusSnapshot(
            version=__version__,
            uptime_s=round(time.monotonic() - started, 1),
            safe_mode=True,
            storage_health="not started",
            problems=problems,
        )

    # The login stays on; users are web.users_file's, else the default data
    # folder's (none made here): /healthz still tells anyone why the agent idles.
    access = build_access(web, Config().gateway.data_dir, force_login=True,
                          create_first=False)
    try:
        ssl_context = tls_context(web)
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        log.error("safe mode: cannot load web.tls_cert/tls_key (%s): serving plain HTTP",
                  err)
        problems.append(f"TLS certificate unusable: {err}")
        ssl_context = None
    runner, port = await start_web(make_web_app(status, access=access), web.host, web.port,
                                   ssl_context=ssl_context)
    notifier = Notifier()
    # READY so systemd does not restart us in a loop; STATUS says why we idle.
    notifier.ready()
    notifier.status("safe mode: configuration invalid, ingest off")
    log.error("safe mode: ingest is off until the configuration is fixed; status page on "
              "http%s://%s:%d/", "s" if ssl_context else "", web.host, port)
    try:
        # Alive, if idle: systemd's watchdog (WatchdogSec=) must not restart us in a loop.
        ping = notifier.watchdog_interval_s
        while not stop.is_set():
            if ping is None:
                await stop.wait()
                break
            notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=ping)
    finally:
        notifier.stopping()
        await runner.cleanup()
    return 0
