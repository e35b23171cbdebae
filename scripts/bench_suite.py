#!/usr/bin/env python3
"""Issue 10's table in one command: the agent's throughput, CPU and memory, each
beside the limit measured on this machine in the same run.

    .venv/bin/python scripts/bench_suite.py --quick        # 20,000 messages, 1 round
    .venv/bin/python scripts/bench_suite.py                # 100,000 messages, 3 rounds
    .venv/bin/python scripts/bench_suite.py --micro        # hot-path stages, in process

Everything is real and private: a Mosquitto on a free port (no queue limit), a
scratch PostgreSQL database (dropped after), Redis, and `dairy-edge run` /
`dairy-edge central` as subprocesses (tests/e2e_harness.py). Messages are the
simulated barn (``--devices``: 40 collars and 2 nodes of each other firmware = 50).

Rows of the table:
  drain, default config   the agent is stopped (its persistent session stays), the
                          backlog is published QoS 1, the agent is started: rate and
                          CPU per message (its utime+stime) from the first committed
                          reading to the last; central up, sync on.
  drain, detection off    the same with detect.enabled false (and central down, so the
                          readings stay in the buffer for the next row).
  limit                   a bare paho subscriber with the agent's MQTT 5 session
                          settings (clean_start false, session expiry, manual acks,
                          same broker) draining the same backlog, counting and acking.
  central load            the central receiver started on that buffered backlog:
                          PostgreSQL rows/s and central CPU per row (beside it the
                          agent's CPU per row while it uploads, one batch at a time,
                          and the batches' size: which side the rate waits on).
  limit                   COPY of the same rows (same table definition, indexes and
                          unique keys) in one transaction.
  memory                  the agent's resident set idle (after READY) and after the
                          drain; the bare subscriber's.

  live                    default config, central up: traffic published at each of
                          ``--live-rates`` for ``--live-s`` seconds from
                          ``--live-devices`` devices; a rate is sustained when the
                          publisher kept it, and at the end neither the agent's
                          buffer nor central was more than 2 s of traffic behind.
                          The highest sustained rate, and per rate the lag at the
                          end and the time to catch up.
  latency                 live traffic at ``--latency-rate`` msg/s, publish to the
                          PostgreSQL row.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TICKS = os.sysconf("SC_CLK_TCK")


# -- process figures ---------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the agent's detection worker)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return out


def _own_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` (all threads) and of its live child processes
    (``detect.worker: process``), seconds."""
    return _own_cpu_s(pid) + sum(_own_cpu_s(c) for c in children(pid))


def _own_rss_mib(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return float("nan")


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    """Resident set of ``pid`` plus its live child processes' (the detection worker)."""
    return _own_rss_mib(pid, key) + sum(_own_rss_mib(c, key) for c in children(pid))


@dataclass
class Drain:
    messages: int
    seconds: float
    cpu_s: float
    rss_mib: float = float("nan")

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.messages * 1e6


def watch(count: Callable[[], int], pid: int, total: int, timeout: float,
          step: float = 0.1) -> Drain:
    """From the first counted item to ``total``: items, seconds, CPU of ``pid``."""
    deadline = time.monotonic() + timeout
    first: tuple[int, float, float] | None = None
    while time.monotonic() < deadline:
        n = count()
        now = time.monotonic()
        if first is None and n > 0:
            first = (n, now, cpu_s(pid))
        if n >= total and first is not None:
            cpu = cpu_s(pid)
            # The first poll may have caught up to 0.1 s of work already done.
            return Drain(n - first[0], now - first[1], cpu - first[2], rss_mib(pid))
        time.sleep(step)
    raise AssertionError(f"timed out: {count()} of {total}")


# -- the bare subscriber (the limit) ---------------------------------------------

def bare_subscriber(port: int, topic: str, total: int, agent_decode: bool) -> None:
    """Run in a child process: make a persistent MQTT 5 session like the agent's,
    say READY, wait for GO on stdin, reconnect and drain ``total`` messages
    (count, ack), print a JSON line with the figures. With ``agent_decode``, paho
    decodes PUBLISH packets with the agent's cheaper decoder (agent.sources.mqtt)."""
    if agent_decode:
        import agent.sources.mqtt  # noqa: F401 - installs the decoder
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client_id = f"bare-{os.getpid()}"
    done = threading.Event()
    subscribed = threading.Event()
    state = {"n": 0, "first": 0.0, "cpu0": 0.0}

    def make() -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        c.manual_ack_set(True)
        c.max_queued_messages_set(1000)

        def on_message(cl: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
            if state["n"] == 0:
                state["first"] = time.monotonic()
                state["cpu0"] = time.process_time()
            state["n"] += 1
            cl.ack(msg.mid, msg.qos)
            if state["n"] >= total:
                done.set()

        c.on_message = on_message
        c.on_subscribe = lambda *_a: subscribed.set()
        return c

    def connect(c: paho.Client) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
        c.loop_start()

    c = make()
    connect(c)
    c.subscribe(topic, 1)
    assert subscribed.wait(10), "no SUBACK"
    c.disconnect()
    c.loop_stop()
    print("READY", flush=True)
    sys.stdin.readline()
    c = make()
    connect(c)
    assert done.wait(600), f"bare subscriber got {state['n']} of {total}"
    end, cpu = time.monotonic(), time.process_time()
    c.disconnect()
    c.loop_stop()
    # The first message is the clock's start, as for the agent's first poll.
    print(json.dumps({"messages": state["n"] - 1, "seconds": end - state["first"],
                      "cpu_s": cpu - state["cpu0"], "rss_mib": rss_mib(os.getpid()),
                      "hwm_mib": rss_mib(os.getpid(), "VmHWM")}), flush=True)


def run_bare(port: int, topic: str, publish_backlog: Callable[[], object], total: int,
             agent_decode: bool) -> Drain:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--_bare", str(port), topic, str(total),
         "1" if agent_decode else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout.readline().strip() == "READY", "bare subscriber failed"
        publish_backlog()
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads(line)
    return Drain(doc["messages"], doc["seconds"], doc["cpu_s"], doc["rss_mib"])


# -- the agent ------------------------------------------------------------------------

def stored(farm: Any) -> int:
    try:
        conn = sqlite3.connect(f"file:{farm.buffer_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


# The backlog's readings are dated from this long ago (the devices' own `ts`):
# a gateway catching up after days offline. Readings dated more than a week back
# would be taken for wrong device clocks and judged on arrival (`--sim-dates`,
# the simulator's fixed June 2025, does that: every reading of the backlog then
# arrives within minutes by the rules' clock).
BACKLOG_AGE_S = 6 * 86400.0
SIM_DATES = False


def messages(prefix: str, count: int, devices: int, seed: int) -> list[Any]:
    from agent.config.model import GatewayConfig
    from agent.sources.simulator import DEFAULT_START, BarnSimulator

    start = DEFAULT_START if SIM_DATES else time.time() - BACKLOG_AGE_S
    sim = BarnSimulator.from_dir(GatewayConfig().firmware_dir, seed=seed,
                                 herd_size=devices - 10, sensors_per_kind=2,
                                 topic_prefix=prefix, start_wall=start)
    return sim.take(count)


def publish_all(port: int, msgs: list[Any]) -> float:
    from agent.sources.publisher import publish

    t0 = time.monotonic()
    report = publish(msgs, "127.0.0.1", port, qos=1, window=200, ack_timeout_s=120)
    acked = len(report.acked)
    assert acked == len(msgs), f"broker acknowledged {acked} of {len(msgs)}"
    return time.monotonic() - t0


def agent_drain(workdir: Path, args: argparse.Namespace, *, detect: bool, central: bool,
                seed: int) -> dict[str, Any]:
    """One drain of the agent; with ``central`` False, also the central load and COPY."""
    from e2e_harness import Barn, wait_until

    overrides: dict[str, Any] = {"sync": {"interval_s": 2.0}}
    if not detect:
        overrides["detect"] = {"enabled": False}
    farm = Barn(workdir, agent_overrides=overrides)
    out: dict[str, Any] = {}
    try:
        farm.broker.start()
        if central:
            farm.central.start()
            wait_until(lambda: _listening(farm.central_port), 30, "central")
        farm.start_agent()
        time.sleep(1.0)
        out["idle_rss_mib"] = rss_mib(farm.agent.pid)
        farm.agent.terminate()  # graceful: the broker keeps the session
        msgs = messages(farm.prefix, args.messages, args.devices, seed)
        out["publish_s"] = publish_all(farm.broker.port, msgs)
        farm.start_agent()
        drain = watch(lambda: stored(farm), farm.agent.pid, len(msgs), timeout=900)
        out["drain"] = drain
        out["streams"] = len({m.topic for m in msgs})
        if not central:
            farm.central.start()
            wait_until(lambda: _listening(farm.central_port), 30, "central")
            pid = farm.central.pid
            device = farm.gateway_id

            def central_rows() -> int:
                return int(farm.db.query(
                    "SELECT count(*) FROM readings WHERE device_id = %s", (device,))[0][0])

            agent_cpu = cpu_s(farm.agent.pid)
            out["central"] = watch(central_rows, pid, len(msgs), timeout=900, step=0.25)
            # The uploader sends one batch at a time: its CPU per row, beside central's,
            # says which side the rate waits on.
            out["upload_cpu_us"] = (cpu_s(farm.agent.pid) - agent_cpu) / len(msgs) * 1e6
            row = farm.db.query("SELECT count(*), avg(record_count) FROM batches"
                                " WHERE device_id = %s AND outcome = 'new'", (device,))[0]
            out["batches"], out["batch_records"] = int(row[0]), float(row[1] or 0)
            out["copy"] = copy_limit(farm.db.url, device)
    finally:
        farm.close()
    return out


def latency_round(workdir: Path, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """Live traffic at ``--latency-rate`` msg/s for ``--latency-s`` seconds, default
    config, central up: per reading, the time from the agent stamping it on
    arrival (wall clock) to its row at central (``received_at``, PostgreSQL's
    transaction time). Broker transit on loopback (well under a millisecond) is
    not in it."""
    from e2e_harness import Barn, wait_until

    from agent.sources.publisher import publish

    farm = Barn(workdir)
    try:
        farm.broker.start()
        farm.central.start()
        wait_until(lambda: _listening(farm.central_port), 30, "central")
        farm.start_agent()
        time.sleep(2.0)
        count = int(args.latency_rate * args.latency_s)
        msgs = messages(farm.prefix, count, args.devices, seed)
        report = publish(msgs, "127.0.0.1", farm.broker.port, qos=1, rate=args.latency_rate,
                         window=200, ack_timeout_s=120)
        assert len(report.acked) == count, f"broker acknowledged {len(report.acked)} of {count}"
        device = farm.gateway_id

        def rows() -> int:
            return int(farm.db.query(
                "SELECT count(*) FROM readings WHERE device_id = %s", (device,))[0][0])

        wait_until(lambda: rows() >= count, 120, "every reading at central")
        lat = sorted(float(r[0]) for r in farm.db.query(
            "SELECT extract(epoch FROM received_at) - wall_ts FROM readings "
            "WHERE device_id = %s", (device,)))
    finally:
        farm.close()
    return {"readings": float(len(lat)), "p50_s": lat[len(lat) // 2],
            "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "max_s": lat[-1]}


def live_messages(prefix: str, count: int, devices: int, seed: int) -> list[Any]:
    """``count`` messages dated so the last is about now (a live barn's readings are
    current); generated twice, the first time only to learn the span they cover."""
    from agent.config.model import GatewayConfig
    from agent.sources.simulator import BarnSimulator

    def make(start: float) -> list[Any]:
        return BarnSimulator.from_dir(GatewayConfig().firmware_dir, seed=seed,
                                      herd_size=devices - 10, sensors_per_kind=2,
                                      topic_prefix=prefix, start_wall=start).take(count)

    probe = make(time.time())
    span = probe[-1].sim_ts - probe[0].sim_ts
    del probe
    return make(time.time() - span - 60.0)


def live_round(workdir: Path, args: argparse.Namespace, rate: float,
               seed: int) -> dict[str, float]:
    """Traffic at ``rate`` msg/s for ``args.live_s`` seconds, default config, central
    up. Sampled once a second: messages sent, readings in the agent's buffer, rows
    at central."""
    from e2e_harness import Barn, wait_until

    from agent.sources.publisher import publish

    count = int(rate * args.live_s)
    farm = Barn(workdir)
    try:
        farm.broker.start()
        farm.central.start()
        wait_until(lambda: _listening(farm.central_port), 30, "central")
        msgs = live_messages(farm.prefix, count, args.live_devices, seed)
        farm.start_agent()
        time.sleep(2.0)
        device = farm.gateway_id

        def rows() -> int:
            return int(farm.db.query(
                "SELECT count(*) FROM readings WHERE device_id = %s", (device,))[0][0])

        sent = [0]
        cpu0 = cpu_s(farm.agent.pid)
        report = publish(msgs, "127.0.0.1", farm.broker.port, qos=1, rate=rate, window=200,
                         ack_timeout_s=120, progress=lambda s, _a: sent.__setitem__(0, s))
        buffered, central = stored(farm), rows()  # where they stand as publishing ends
        cpu_pub = cpu_s(farm.agent.pid) - cpu0
        t_end = time.monotonic()

        def catch_up(cond: Callable[[], bool], what: str) -> float:
            try:  # a rate far beyond the agent's: report it, do not abort the suite
                wait_until(cond, 600, what)
            except AssertionError:
                return float("inf")
            return time.monotonic() - t_end

        buffer_catch = catch_up(lambda: stored(farm) >= count, "every reading in the buffer")
        central_catch = catch_up(lambda: rows() >= count, "every reading at central")
    finally:
        farm.close()
    kept = report.sent / report.elapsed_s if report.elapsed_s > 0 else 0.0
    slack = 2.0 * rate
    return {"rate": rate, "published_rate": kept, "buffer_lag": float(count - buffered),
            "central_lag": float(count - central), "buffer_catchup_s": buffer_catch,
            "central_catchup_s": central_catch, "agent_cpu_us": cpu_pub / count * 1e6,
            "sustained": float(kept >= 0.98 * rate and count - buffered <= slack
                               and count - central <= slack)}


def copy_limit(url: str, device: str) -> Drain:
    """COPY the device's rows into an empty table of the same definition, one transaction."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE copy_probe (LIKE readings INCLUDING ALL)")
        conn.commit()
        buf = io.BytesIO()
        with conn.cursor().copy(
            "COPY (SELECT * FROM readings WHERE device_id = %s) TO STDOUT (FORMAT binary)",
            (device,),
        ) as cp:
            for chunk in cp:
                buf.write(chunk)
        row = conn.execute("SELECT count(*) FROM readings WHERE device_id = %s",
                           (device,)).fetchone()
        rows = int(row[0]) if row else 0
        data = buf.getvalue()
        t0, c0 = time.monotonic(), time.process_time()
        with conn.transaction(), conn.cursor().copy(
                "COPY copy_probe FROM STDIN (FORMAT binary)") as cp:
            for i in range(0, len(data), 1 << 20):
                cp.write(data[i:i + (1 << 20)])
        return Drain(rows, time.monotonic() - t0, time.process_time() - c0)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def bare_round(workdir: Path, args: argparse.Namespace, seed: int,
               agent_decode: bool = False) -> Drain:
    from helpers_mqtt import PrivateMosquitto

    broker = PrivateMosquitto(workdir, queue_limit=0)
    broker.start()
    try:
        msgs = messages("bare", args.messages, args.devices, seed)
        return run_bare(broker.port, "bare/#", lambda: publish_all(broker.port, msgs),
                        len(msgs), agent_decode)
    finally:
        broker.stop()


# -- the report -------------------------------------------------------------------------

def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_rounds(values: list[float], spec: str = ",.0f") -> str:
    inner = " / ".join(format(v, spec) for v in values)
    return f"{format(med(values), spec)} ({inner})" if len(values) > 1 else inner


def micro(count: int) -> None:
    """CPU per message of each hot-path stage, in this process (best of 5, process time)."""
    import struct

    from agent.clock import SystemClock, boot_id
    from agent.config.model import GatewayConfig, IngestConfig
    from agent.ingest import Ingestor
    from agent.sources import mqtt as mqtt_source
    from agent.sources.simulator import BarnSimulator
    from agent.store.inserts import encode

    cfg = GatewayConfig()
    ingestor = Ingestor(cfg.firmware_dir, ROOT / "calibration", IngestConfig(), SystemClock(),
                        boot_id())
    msgs = [(m.topic, m.payload) for m in BarnSimulator(ingestor.specs, seed=1).take(count)]
    readings = [ingestor.parse(t, p) for t, p in msgs]
    packets = [bytearray(struct.pack("!H", len(t.encode())) + t.encode() + struct.pack("!H", 7)
                         + b"\x00" + p) for t, p in msgs]

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(5):
            c0 = time.process_time()
            fn()
            times.append(time.process_time() - c0)
        return min(times) / count * 1e6

    print(f"hot-path stages, us CPU per message ({count:,} simulated messages, best of 5):")
    stages: list[tuple[str, Callable[[], object]]] = [
        ("Ingestor.parse", lambda: [ingestor.parse(t, p) for t, p in msgs]),
        ("Reading.to_dict", lambda: [r.to_dict() for r in readings]),
        ("store encode (to_dict + JSON)", lambda: [encode(r) for r in readings]),
    ]
    stored = [encode(r).body or "" for r in readings]
    encoded = [(r, encode(r)) for r in readings]
    stages.append(("store insert (groups of 200)", lambda: store_inserts(encoded)))
    stages.append(("sync batch body (per record)", lambda: sync_bodies(stored)))
    decode = mqtt_source._paho_decode_publish
    if decode is not None:
        fast = mqtt_source._decode_publish_fast
        stages += [
            ("MQTT 5 PUBLISH decode, paho", lambda: [decode(0x32, b, 5) for b in packets]),
            ("MQTT 5 PUBLISH decode, agent", lambda: [fast(0x32, b, 5) for b in packets]),
        ]
    for name, fn in stages:
        print(f"  {name:32} {best(fn):7.1f}")


def store_inserts(encoded: list[Any], per_group: int = 200) -> None:
    """The writer's inserts of encoded readings, a transaction per group of 200 (the
    default commit_max_messages), into a fresh buffer on tmpfs if there is one."""
    from agent.store import db
    from agent.store.inserts import GroupStats, insert
    from agent.store.migrations import migrate

    folder = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        conn = db.connect(Path(tmp) / "buffer.db")
        migrate(conn, 0.0)
        for i in range(0, len(encoded), per_group):
            conn.execute("BEGIN IMMEDIATE")
            stats = GroupStats()
            for item, enc in encoded[i:i + per_group]:
                insert(conn, item, stats, enc)
            conn.execute("COMMIT")
        conn.close()


def sync_bodies(stored: list[str], per_batch: int = 500) -> None:
    """What sync does per batch between the stored bodies and the gzipped request
    body (outbox.wire_text, the envelope, splicing, gzip); the SELECT not included."""
    from agent.records.protocol import PROTOCOL_VERSION, Batch
    from agent.store.outbox import wire_text
    from agent.sync.signing import splice_body

    for i in range(0, len(stored), per_batch):
        envelope = Batch.model_validate({
            "protocol": PROTOCOL_VERSION, "device_id": "gw", "epoch": "e", "seq": 1 + i,
            "batch_id": f"gw:e:{1 + i}", "created_mono_ns": 0, "sent_wall_ts": 0.0,
            "clock_synced": True, "records": []}).model_dump(mode="json")
        splice_body(envelope, [wire_text(b) for b in stored[i:i + per_batch]])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_bare":
        bare_subscriber(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20,000 messages, one round")
    ap.add_argument("--messages", type=int, default=None, help="backlog size (100,000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of each figure (3)")
    ap.add_argument("--devices", type=int, default=50, help="simulated devices (>= 11)")
    ap.add_argument("--sim-dates", action="store_true",
                    help="date the backlog June 2025 (the simulator's own start; more than a "
                    "week old, so judged on arrival) instead of the last 6 days")
    ap.add_argument("--only", default="bare,default,nodetect,latency,live",
                    help="comma list of: bare, default, nodetect (nodetect includes central), "
                    "latency, live")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--latency-rate", type=float, default=500.0,
                    help="live rate of the latency row, msg/s (500)")
    ap.add_argument("--latency-s", type=float, default=60.0,
                    help="seconds of live traffic in the latency row (60)")
    ap.add_argument("--live-rates", default="1000,2000,4000,8000,10000",
                    help="rates of the live row, msg/s, tried in order until one is not "
                    "sustained (1000,2000,4000,8000,10000)")
    ap.add_argument("--live-s", type=float, default=60.0,
                    help="seconds of traffic at each live rate (60; the issue's goal: 300)")
    ap.add_argument("--live-devices", type=int, default=1000, choices=range(11, 100_001),
                    metavar="N (11-100000)",
                    help="devices of the live row (1000: at 10,000 msg/s for 60 s their "
                    "readings span about two days, all dated before now)")
    ap.add_argument("--micro", action="store_true",
                    help="only the CPU per message of each hot-path stage, in process")
    args = ap.parse_args()
    global SIM_DATES
    SIM_DATES = args.sim_dates
    if args.micro:
        micro(args.messages or 20_000)
        return 0
    args.messages = args.messages or (20_000 if args.quick else 100_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    only = set(args.only.split(","))
    print("readings dated June 2025 (judged on arrival)" if SIM_DATES
          else "readings dated from 6 days ago (judged on the devices' clocks)")
    print(f"backlog {args.messages:,} QoS 1 messages from {args.devices} simulated devices, "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    bare: list[Drain] = []
    bare_fast: list[Drain] = []
    default: list[dict[str, Any]] = []
    nodetect: list[dict[str, Any]] = []
    latency: list[dict[str, float]] = []
    live: list[dict[str, float]] = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench_suite-") as tmp:
            base = Path(tmp)
            if "bare" in only:
                (base / "bare").mkdir()
                bare.append(bare_round(base / "bare", args, seed=r + 1))
                print(f"  round {r + 1} bare subscriber: {bare[-1].rate:,.0f} msg/s, "
                      f"{bare[-1].cpu_us:.1f} us/msg", flush=True)
                (base / "bare-fast").mkdir()
                bare_fast.append(bare_round(base / "bare-fast", args, seed=r + 1,
                                            agent_decode=True))
                print(f"  round {r + 1} bare subscriber, agent's PUBLISH decode: "
                      f"{bare_fast[-1].rate:,.0f} msg/s, {bare_fast[-1].cpu_us:.1f} us/msg",
                      flush=True)
            if "default" in only:
                (base / "default").mkdir()
                default.append(agent_drain(base / "default", args, detect=True, central=True,
                                           seed=r + 1))
                d = default[-1]["drain"]
                print(f"  round {r + 1} agent, default: {d.rate:,.0f} msg/s, "
                      f"{d.cpu_us:.0f} us/msg", flush=True)
            if "nodetect" in only:
                (base / "nodetect").mkdir()
                nodetect.append(agent_drain(base / "nodetect", args, detect=False,
                                            central=False, seed=r + 1))
                d = nodetect[-1]["drain"]
                c = nodetect[-1]["central"]
                print(f"  round {r + 1} agent, detection off: {d.rate:,.0f} msg/s, "
                      f"{d.cpu_us:.0f} us/msg; central {c.rate:,.0f} rows/s, "
                      f"{c.cpu_us:.0f} us CPU/row (the agent uploading: "
                      f"{nodetect[-1]['upload_cpu_us']:.0f} us/row; "
                      f"{nodetect[-1]['batches']} batches of "
                      f"{nodetect[-1]['batch_records']:.0f} readings); "
                      f"COPY {nodetect[-1]['copy'].rate:,.0f} rows/s", flush=True)
            if "latency" in only:
                (base / "latency").mkdir()
                lat = latency_round(base / "latency", args, seed=r + 1)
                latency.append(lat)
                print(f"  round {r + 1} latency at {args.latency_rate:,.0f} msg/s, default "
                      f"config: p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s, max "
                      f"{lat['max_s']:.3f} s (goal: p99 <= 0.5 s)", flush=True)
            if "live" in only:
                for rate in (float(x) for x in args.live_rates.split(",")):
                    (base / f"live-{rate:.0f}").mkdir()
                    row = live_round(base / f"live-{rate:.0f}", args, rate, seed=r + 1)
                    row["round"] = r + 1
                    live.append(row)
                    print(f"  round {r + 1} live {rate:,.0f} msg/s for {args.live_s:.0f} s: "
                          f"published {row['published_rate']:,.0f} msg/s; as publishing ended "
                          f"the buffer was {row['buffer_lag']:,.0f} readings behind, central "
                          f"{row['central_lag']:,.0f}; caught up in "
                          f"{row['buffer_catchup_s']:.1f} s / {row['central_catchup_s']:.1f} s; "
                          f"agent {row['agent_cpu_us']:.0f} us CPU/msg; "
                          f"{'sustained' if row['sustained'] else 'NOT sustained'}", flush=True)
                    if not row["sustained"]:
                        break
    report(args, bare, bare_fast, default, nodetect)
    if live:
        best = [max([x["rate"] for x in live if x["round"] == r + 1 and x["sustained"]],
                    default=0.0) for r in range(args.rounds)]
        print(f"| live, highest rate sustained for {args.live_s:.0f} s (default config, "
              f"{args.live_devices} devices) | {fmt_rounds(best)} msg/s | | |")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other work on this machine "
          "inflates every figure; compare the ratios within one run)")
    if args.json:
        doc = {"messages": args.messages, "rounds": args.rounds,
               "bare": [vars(d) for d in bare], "bare_fast": [vars(d) for d in bare_fast],
               "default": [_plain(x) for x in default],
               "nodetect": [_plain(x) for x in nodetect], "latency": latency, "live": live}
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


def _plain(x: dict[str, Any]) -> dict[str, Any]:
    return {k: vars(v) if isinstance(v, Drain) else v for k, v in x.items()}


def report(args: argparse.Namespace, bare: list[Drain], bare_fast: list[Drain],
           default: list[dict[str, Any]], nodetect: list[dict[str, Any]]) -> None:
    # The ratio is against the faster of the two bare subscribers: the stricter limit.
    limit = max(med([d.rate for d in bare]), med([d.rate for d in bare_fast])) if bare \
        else float("nan")
    print()
    print("| figure | agent | limit measured beside it | ratio |")
    print("|---|---|---|---|")
    if bare:
        print(f"| bare paho subscriber, MQTT 5 session, count + ack | "
              f"{fmt_rounds([d.rate for d in bare])} msg/s, "
              f"{med([d.cpu_us for d in bare]):.1f} us CPU/msg | | |")
        print(f"| the same, paho decoding PUBLISH with the agent's decoder | "
              f"{fmt_rounds([d.rate for d in bare_fast])} msg/s, "
              f"{med([d.cpu_us for d in bare_fast]):.1f} us CPU/msg | | |")
    for label, runs in (("drain of a queued backlog, default config", default),
                        ("the same, detection off", nodetect)):
        if not runs:
            continue
        rates = [x["drain"].rate for x in runs]
        cpus = [x["drain"].cpu_us for x in runs]
        print(f"| {label} | {fmt_rounds(rates)} msg/s, {fmt_rounds(cpus, '.0f')} us CPU/msg "
              f"| {limit:,.0f} msg/s | {med(rates) / limit:.3f} |")
    if nodetect:
        rows = [x["central"].rate for x in nodetect]
        cus = [x["central"].cpu_us for x in nodetect]
        copies = [x["copy"].rate for x in nodetect]
        uploads = [x["upload_cpu_us"] for x in nodetect]
        print(f"| {args.messages:,} buffered readings into PostgreSQL once central is back | "
              f"{fmt_rounds(rows)} rows/s, central {fmt_rounds(cus, '.0f')} us CPU/row "
              f"(agent uploading {fmt_rounds(uploads, '.0f')} us/row) | "
              f"COPY in one transaction {fmt_rounds(copies)} rows/s | "
              f"{med(rows) / med(copies):.3f} |")
    if default:
        after = [x["drain"].rss_mib for x in default]
        idle = [x["idle_rss_mib"] for x in default]
        bare_rss = f"; bare paho {med([d.rss_mib for d in bare]):.0f} MiB" if bare else ""
        print(f"| agent memory (RSS) after {args.messages:,} messages "
              f"({default[0]['streams']} topics) | {fmt_rounds(after, '.0f')} MiB | "
              f"idle {med(idle):.0f} MiB{bare_rss} | |")


if __name__ == "__main__":
    raise SystemExit(main())
