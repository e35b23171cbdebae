"""`dairy-edge demo`: a whole barn on one machine, on embedded defaults.

A simulated barn publishes over real MQTT (the broker on localhost:1883 when
one is there, else an embedded one), the agent ingests and buffers, and a
central receiver on SQLite takes the batches. Nothing to configure.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.central.server import run_central
from agent.config.loader import load_config
from agent.runtime.daemon import Agent
from agent.sources.broker import ensure_broker
from agent.sources.camera.synthetic import DEFAULT_HERD
from agent.sources.publisher import run_simulation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoInfo:
    web_port: int
    central_url: str
    broker_port: int
    broker_embedded: bool
    data_dir: Path


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


async def run_demo(
    stop: asyncio.Event,
    duration: float | None = None,
    web_port: int = 8080,
    rate: float = 20.0,
    data_dir: Path | None = None,
    mqtt_port: int = 1883,
    on_ready: Callable[[DemoInfo], None] | None = None,
    cameras: bool = True,
) -> int:
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="dairy-edge-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # A prefix of its own, so a demo never mixes with other traffic on a shared broker.
    prefix = f"demo{secrets.token_hex(3)}"
    broker = await ensure_broker("127.0.0.1", mqtt_port)
    central = await run_central(
        load_config(
            overrides={"central": {"port": 0, "database_url": f"sqlite:///{data_dir}/central.db"}}
        ).central,
        keys={"demo": key},
    )
    config = load_config(
        overrides={
            "gateway": {"id": "demo-gw", "data_dir": str(data_dir)},
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
            "web": {"host": "127.0.0.1", "port": _free_port(web_port)},
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
                {"id": "exit1", "role": "bcs", "source": "synthetic", "uri": "11",
                 "fps_cap": 1.0, "infer_fps": 1.0},
            ] if cameras else [],
            "vision": {"eartag": {"herd_register": str(DEFAULT_HERD),
                                  "review_dir": str(data_dir / "review")}},
        }
    )
    agent = Agent(config, hmac_key=key)
    sim_stop = threading.Event()

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
        if on_ready is not None:
            on_ready(DemoInfo(agent.state.web_port, central.url, broker.port, broker.embedded,
                              data_dir))
        print(
            f"\n  dairy-edge demo running\n"
            f"  status page:   http://127.0.0.1:{agent.state.web_port}/\n"
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
        await broker.stop()
    return 0
