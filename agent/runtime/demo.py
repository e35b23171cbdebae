"""`dairy-edge demo`: a whole barn on one machine, on embedded defaults.

A simulated barn publishes over real MQTT (the broker on localhost:1883 when
one is there, else an embedded one), the agent ingests and buffers, and a
central receiver on SQLite takes the batches. Nothing to configure.

Ports given explicitly are kept or refused (a busy one is an error); the
defaults (web 8080, MQTT 1883) move to a free port when taken. A temporary data
folder is removed at the end; a --data-dir is kept. The sample calibration is
copied with dates relative to today, so no device starts overdue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.central.server import run_central
from agent.config.loader import load_config
from agent.config.secrets import ENV_PREFIX, read_secret
from agent.errors import EdgeAgentError
from agent.runtime.daemon import Agent
from agent.runtime.sample_data import copy_calibration
from agent.sources.broker import BrokerHandle, ensure_broker
from agent.sources.camera.synthetic import DEFAULT_HERD
from agent.sources.publisher import run_simulation

log = logging.getLogger(__name__)

DEFAULT_WEB_PORT = 8080
DEFAULT_MQTT_PORT = 1883


@dataclass(frozen=True)
class DemoInfo:
    web_port: int
    central_url: str
    broker_port: int
    broker_embedded: bool
    data_dir: Path
    login_url: str = ""  # a one-time login link to the status page (15 min)
    password_from: str = ""  # where the admin password is (password_source)


def password_source(data_dir: Path, had_users: bool) -> str:
    """Where the demo's ``admin`` password is, in the agent's own order: the
    ``web_admin_password`` secret (environment, then credentials) when there are
    no users yet, else a random one written to ``web-initial-password``.

    :param had_users: the users file was there before the agent started: the
        agent created nobody, the password is the one already set."""
    users = data_dir / "web-users.json"
    if had_users:
        return f"the one already set in {users}"
    env = ENV_PREFIX + "WEB_ADMIN_PASSWORD"
    if os.environ.get(env):
        return f"${env}"
    if read_secret("web_admin_password"):
        return "$CREDENTIALS_DIRECTORY/web_admin_password"
    return f"{data_dir}/web-initial-password"


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port")


def _web_port(asked: int | None) -> int:
    """The status page's port: the default 8080 or any free one; an explicit
    port exactly (0: the kernel picks), or an error when it is taken."""
    if asked is None:
        return _free_port(DEFAULT_WEB_PORT)
    if asked != 0:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", asked))
            except OSError as err:
                raise EdgeAgentError(
                    f"--web-port {asked}: cannot listen there ({err.strerror}); something "
                    "else uses it. Choose another port, or leave --web-port out for 8080 or "
                    "any free one."
                ) from err
    return asked


async def run_demo(
    stop: asyncio.Event,
    duration: float | None = None,
    web_port: int | None = None,
    rate: float = 20.0,
    data_dir: Path | None = None,
    mqtt_port: int | None = None,
    on_ready: Callable[[DemoInfo], None] | None = None,
    cameras: bool = True,
) -> int:
    """Run the demo until ``stop`` is set or ``duration`` passes.

    :param web_port: None: 8080, or a free port when taken; 0: any free port;
        otherwise exactly that port (EdgeAgentError when taken).
    :param mqtt_port: None: the broker on 1883, or an embedded one (on 1883 or a
        free port); otherwise the broker on that port, or an embedded one there
        (TransientError when it cannot listen there).
    :param data_dir: kept at the end; None: a temporary folder, removed at the end.
    """
    port = _web_port(web_port)
    own_dir = data_dir is None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="dairy-edge-demo-"))
    try:
        return await _run(stop, duration, port, rate, data_dir, mqtt_port, on_ready, cameras)
    finally:
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
            log.info("removed the demo's temporary folder %s", data_dir)


async def _run(
    stop: asyncio.Event,
    duration: float | None,
    web_port: int,
    rate: float,
    data_dir: Path,
    mqtt_port: int | None,
    on_ready: Callable[[DemoInfo], None] | None,
    cameras: bool,
) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    # The shipped sample calibration, its dates moved so no device starts overdue.
    calibration_dir = data_dir / "calibration"
    copy_calibration(calibration_dir)
    key = secrets.token_bytes(32)
    # A prefix of its own, so a demo never mixes with other traffic on a shared broker.
    prefix = f"demo{secrets.token_hex(3)}"
    broker = await ensure_broker(
        "127.0.0.1", DEFAULT_MQTT_PORT if mqtt_port is None else mqtt_port,
        fallback=mqtt_port is None)
    try:
        return await _run_with_broker(stop, duration, web_port, rate, data_dir, calibration_dir,
                                      broker, key, prefix, on_ready, cameras)
    finally:
        await broker.stop()


async def _run_with_broker(
    stop: asyncio.Event,
    duration: float | None,
    web_port: int,
    rate: float,
    data_dir: Path,
    calibration_dir: Path,
    broker: BrokerHandle,
    key: bytes,
    prefix: str,
    on_ready: Callable[[DemoInfo], None] | None,
    cameras: bool,
) -> int:
    central = await run_central(
        load_config(
            overrides={"central": {"port": 0, "database_url": f"sqlite:///{data_dir}/central.db"}}
        ).central,
        keys={"demo": key},
    )
    config = load_config(
        overrides={
            "gateway": {"id": "demo-gw", "data_dir": str(data_dir),
                        "calibration_dir": str(calibration_dir)},
            "ingest": {"topic_prefix": prefix},
            "mqtt": {
                "port": broker.port,
                "topics": [f"{prefix}/#"],
                "client_id": f"dairy-edge-{prefix}",
                "session_expiry_s": 300,
                # amqtt speaks 3.1.1 only; skip the MQTT 5 attempt against it.
                "protocol": broker.protocol or "auto",
            },
            "sync": {"url": central.url, "key_id": "demo", "interval_s": 1.0},
            "web": {"host": "127.0.0.1", "port": web_port},
            # A generated walk-through lane: cows of examples/herd.csv (and two
            # strangers) pass the ear-tag camera; identifications join the readings.
            "cameras": [
                # No station: the demo has no RFID reader at the lane to wait for.
                {"id": "lane1", "role": "eartag", "source": "synthetic", "uri": "7",
                 "fps_cap": 5.0, "infer_fps": 2.0},
                # A generated exit lane seen from above: a body condition score per
                # cow that walks under it (no station here either, so the scores
                # are per visit; a station with an RFID reader or an ear-tag
                # camera names the cow).
                # fps_cap 2: a generated frame's pacing wait (1/fps_cap) is what a
                # stop waits for; at 1 frame/s it was a second of the 2 s stop budget.
                {"id": "exit1", "role": "bcs", "source": "synthetic", "uri": "11",
                 "fps_cap": 2.0, "infer_fps": 1.0},
            ] if cameras else [],
            "vision": {"eartag": {"herd_register": str(DEFAULT_HERD),
                                  "review_dir": str(data_dir / "review")}},
        }
    )
    had_users = (data_dir / "web-users.json").exists()
    try:
        agent = Agent(config, hmac_key=key)
    except BaseException:
        await central.stop()
        raise
    sim_stop = threading.Event()

    async def stop_simulator() -> None:
        # The simulator stops with everything else, not after the agent has
        # drained: its last PUBACKs may never come from a broker going down.
        await stop.wait()
        sim_stop.set()

    async def simulate() -> None:
        await asyncio.to_thread(
            run_simulation,
            host="127.0.0.1",
            port=broker.port,
            rate=rate,
            count=None,
            duration=duration,
            bad_ratio=0.02,
            seed=7,
            topic_prefix=prefix,
            progress=False,
            stop=sim_stop,
            protocol=broker.protocol or "5",
        )

    async def report() -> None:
        while agent.state.web_port is None:
            await asyncio.sleep(0.1)
        base = f"http://127.0.0.1:{agent.state.web_port}"
        # The demo's first user (admin, password in the data folder); the link
        # logs a browser in once, within 15 minutes.
        link = base + agent.web_access.login_link("admin") if agent.web_access else base + "/"
        password_from = password_source(data_dir, had_users)
        if on_ready is not None:
            on_ready(DemoInfo(agent.state.web_port, central.url, broker.port, broker.embedded,
                              data_dir, link, password_from))
        print(
            f"\n  dairy-edge demo running\n"
            f"  status page:   {link}\n"
            f"                 (one-time login link; user admin, password: "
            f"{password_from})\n"
            f"  JSON status:   http://127.0.0.1:{agent.state.web_port}/api/status\n"
            f"  central:       {central.url} (SQLite at {data_dir}/central.db)\n"
            f"  broker:        127.0.0.1:{broker.port} "
            f"({'embedded' if broker.embedded else 'existing'})\n"
            f"  Ctrl-C stops.\n",
            flush=True,
        )
        while not stop.is_set():
            await asyncio.sleep(5)
            counts = agent.reader.counts()
            stats = await central.stats()
            print(
                f"  readings buffered {counts.get('readings', 0):>6}   "
                f"quarantined {counts.get('quarantine', 0):>4}   "
                f"unsynced {counts.get('backlog', 0):>5}   "
                f"cows identified {agent.reader.identification_counts()['identified']:>4}   "
                f"BCS scored {counts.get('body_conditions', 0):>4}   "
                f"central has {stats.get('records', 0):>6}",
                flush=True,
            )

    async def deadline() -> None:
        if duration is not None:
            await asyncio.sleep(duration)
            stop.set()

    helpers = [
        asyncio.create_task(stop_simulator()),
        asyncio.create_task(simulate()),
        asyncio.create_task(report()),
        asyncio.create_task(deadline()),
    ]
    try:
        await agent.run(stop)
    finally:
        sim_stop.set()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await central.stop()
    return 0
