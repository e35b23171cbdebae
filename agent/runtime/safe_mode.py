"""Safe mode: what `dairy-edge run` does with a configuration it cannot trust.

Exiting would put systemd into a restart storm and leave the technician with
nothing to look at. Instead the agent serves the status page (on the web
section of the file when that part is valid, else the defaults), reports the
configuration error on /healthz (503) and, after a login, on the page, takes no MQTT messages (the
broker keeps them in our persistent session) and waits for a fixed file and a
restart. Nothing in the broken file can switch anything *off*: safe mode reads
only the listen address from it.
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
from agent.web.wiring import build_access

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


async def run_safe_mode(error: str, config_path: Path | None, stop: asyncio.Event) -> int:
    web = salvage_web(config_path)
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

    # The login stays on and only the listen address comes from the file; users
    # are those of the default data folder (none made here): /healthz still
    # tells anyone why the agent idles.
    access = build_access(WebConfig(host=web.host, port=web.port),
                          Config().gateway.data_dir, force_login=True, create_first=False)
    runner, port = await start_web(make_web_app(status, access=access), web.host, web.port)
    notifier = Notifier()
    # READY so systemd does not restart us in a loop; STATUS says why we idle.
    notifier.ready()
    notifier.status("safe mode: configuration invalid, ingest off")
    log.error("safe mode: ingest is off until the configuration is fixed; status page on "
              "http://%s:%d/", web.host, port)
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
