#!/usr/bin/env python3
"""Re-run issue 12's attacks on a real `dairy-edge central` process and measure its memory.

Starts the receiver as a subprocess (PostgreSQL when it answers on 127.0.0.1:5432,
on a scratch database dropped after; else SQLite), samples its resident memory
(/proc/PID/status VmRSS every 5 ms, plus VmHWM after resetting it) during each
attack, and prints one line per attack: answers, baseline RSS, peak RSS, rise.

Memory attacks:
  unsigned-v2      40 concurrent 15 MiB uploads, X-Dairy-Auth with a wrong key
  unknown-key      40 concurrent 15 MiB uploads, a key id central does not know
  body-signed      40 concurrent 15 MiB uploads, body signature only, a known key
                   id and a wrong signature (the pre-v2 path: read two at a time)
  gzip-bomb        signed: 59 KiB of gzip that inflates to a 60 MiB JSON list
  json-bomb        signed: [{},{},...] under the decompressed cap
  big-string       signed: one 8 MiB JSON string (the largest body that parses)
Identity attacks (refused, nothing written): another gateway's key, a sequence
push to 10**12, a stored batch id with new records, a newline id.

    .venv/bin/python scripts/attack_central.py [--sqlite] [--goal-mb 64]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

import psycopg

from agent.records.protocol import BATCH_PATH, sign, sign_auth

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
GW_A, GW_B = "gw-attack-a", "gw-attack-b"
KEY_A, KEY_B = "a-secret-0123456789abcdef", "b-secret-0123456789abcdef"
MIB = 1024 * 1024


class RssSampler:
    """Peak resident memory of a process while a block runs (sampled and VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def field(self, name: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        return 0

    def __enter__(self) -> Self:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM
        except OSError:
            pass
        self.base_kib = self.field("VmRSS")
        self.peak_kib = self.base_kib
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.field("VmRSS"))
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_kib = max(self.peak_kib, self.field("VmHWM"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def v2_headers(gateway: str, key_id: str, key: bytes, body: bytes,
               encoding: str = "gzip") -> dict[str, str]:
    digest = hashlib.sha256(body).hexdigest()
    headers = {"Content-Type": "application/json", "X-Dairy-Key-Id": key_id,
               "X-Dairy-Gateway": gateway, "X-Dairy-Body-SHA256": digest,
               "X-Dairy-Auth": sign_auth(key, gateway, key_id, len(body), encoding, digest),
               "X-Dairy-Signature": sign(key, body)}
    if encoding == "gzip":
        headers["Content-Encoding"] = "gzip"
    return headers


async def raw_post(port: int, headers: dict[str, str], body: bytes | memoryview,
                   length: int | None = None) -> tuple[int, bytes]:
    """POST over a raw socket, tolerating a server that answers and closes early."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = len(body) if length is None else length
    head = f"POST {BATCH_PATH} HTTP/1.1\r\nHost: central\r\nContent-Length: {n}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    answer = asyncio.ensure_future(reader.read(64 * 1024))
    try:
        writer.write(head.encode())
        view = memoryview(body)
        for start in range(0, len(view), MIB):
            if answer.done():
                break
            writer.write(view[start:start + MIB])
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        data = await asyncio.wait_for(answer, 60)
    except (ConnectionError, OSError, TimeoutError):
        data = b""
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def doc(gateway: str, seq: int, records: list[dict[str, Any]], epoch: str = "e1",
        batch_id: str | None = None) -> dict[str, Any]:
    return {"protocol": 1, "device_id": gateway, "epoch": epoch, "seq": seq,
            "batch_id": batch_id or f"{gateway}:{epoch}:{seq}", "created_mono_ns": 1,
            "sent_wall_ts": time.time(), "clock_synced": True, "records": records}


def reading(rid: str, value: float = 38.5) -> dict[str, Any]:
    return {"record_id": rid, "kind": "reading", "wall_ts": time.time(), "mono_ns": 1,
            "boot_id": "b", "clock_synced": True, "sensor_id": "collar-1",
            "firmware": "collar-v2", "values": {"temp_c": value}}


def signed_batch(gateway: str, key_id: str, key: bytes,
                 d: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    body = gzip.compress(json.dumps(d).encode())
    headers = v2_headers(gateway, key_id, key, body)
    headers["X-Dairy-Batch-Id"] = d["batch_id"]
    return headers, body


async def concurrent(n: int, make: Callable[[], Awaitable[tuple[int, bytes]]]) -> dict[int, int]:
    results = await asyncio.gather(*(make() for _ in range(n)))
    counts: dict[int, int] = {}
    for status, _ in results:
        counts[status] = counts.get(status, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="use SQLite, not PostgreSQL")
    parser.add_argument("--uploads", type=int, default=40, help="concurrent uploads (40)")
    parser.add_argument("--size-mib", type=int, default=15, help="size of each upload (15)")
    parser.add_argument("--goal-mb", type=float, default=64.0, help="allowed rise (64 MB)")
    parser.add_argument(
        "--central-dir", type=Path, default=None,
        help="run the receiver from another checkout (e.g. a `git worktree` of an older "
        "commit, for before/after figures); its keys are then plain `id=key` pairs",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dairy-attack-"))
    db_name = None
    if args.sqlite:
        db_url = f"sqlite:///{work / 'central.db'}"
    else:
        db_name = f"dairy_attack_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        db_url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    port = free_port()
    (work / "central.yaml").write_text(
        f"central:\n  host: 127.0.0.1\n  port: {port}\n  database_url: {db_url}\n"
        "logging:\n  level: WARNING\n"
    )
    keys = f"{GW_A}/ka={KEY_A},{GW_B}/kb={KEY_B},fleet=fleet-secret-0123456789"
    env = {**os.environ, "DAIRY_EDGE_CENTRAL_KEYS": keys}
    if args.central_dir is not None:
        env["PYTHONPATH"] = str(args.central_dir.resolve())
        env["DAIRY_EDGE_CENTRAL_KEYS"] = keys.replace(f"{GW_A}/", "").replace(f"{GW_B}/", "")
    with open(work / "central.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "central", "--config",
             str(work / "central.yaml")], env=env, stdout=subprocess.DEVNULL, stderr=log,
            cwd=args.central_dir,
        )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        failures = asyncio.run(attack(args, proc.pid, port, db_url if db_name else None))
    finally:
        proc.terminate()
        proc.wait(10)
        if db_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    print("\nall within the goal and refused" if not failures else f"\n{failures} FAILED")
    return 1 if failures else 0


def answers(result: Any) -> str:
    """{status: count} for many requests; "status error" for one."""
    if isinstance(result, dict):
        return str(result)
    status, data = result
    try:
        error = json.loads(data.split(b"\r\n\r\n", 1)[-1])["error"]
    except (ValueError, KeyError):
        error = ""
    return f"{status} {error}"


async def attack(args: argparse.Namespace, pid: int, port: int, pg_url: str | None) -> int:
    failures = 0
    # Warm up: a few real batches, so the baseline includes a working receiver.
    for seq in range(1, 6):
        h, b = signed_batch(GW_A, "ka", KEY_A.encode(),
                            doc(GW_A, seq, [reading(f"w{seq}-{i}") for i in range(200)]))
        status, _ = await raw_post(port, h, b)
        assert status == 200, status
    sampler = RssSampler(pid)
    big = os.urandom(args.size_mib * MIB)
    print(f"central pid {pid} on {'SQLite' if args.sqlite else 'PostgreSQL'}; "
          f"{args.uploads} x {args.size_mib} MiB uploads; goal: rise < {args.goal_mb} MB")
    print(f"{'attack':<16} {'answers':<26} {'base MB':>8} {'peak MB':>8} {'rise MB':>8}")

    async def measure(name: str, action: Callable[[], Awaitable[Any]]) -> Any:
        nonlocal failures
        with sampler:
            result = await action()
        rise = (sampler.peak_kib - sampler.base_kib) / 1024
        ok = rise < args.goal_mb
        failures += not ok
        print(f"{name:<16} {answers(result):<26} {sampler.base_kib / 1024:8.1f} "
              f"{sampler.peak_kib / 1024:8.1f} {rise:8.1f} {'ok' if ok else 'OVER'}")
        await asyncio.sleep(0.5)
        return result

    wrong = v2_headers(GW_A, "ka", b"not-the-key", big, "identity")
    await measure("unsigned-v2", lambda: concurrent(
        args.uploads, lambda: raw_post(port, wrong, big)))
    unknown = {**wrong, "X-Dairy-Key-Id": "nobody"}
    await measure("unknown-key", lambda: concurrent(
        args.uploads, lambda: raw_post(port, unknown, big)))
    legacy = {"Content-Type": "application/json", "X-Dairy-Key-Id": "ka",
              "X-Dairy-Signature": "sha256=" + "0" * 64}
    await measure("body-signed", lambda: concurrent(
        args.uploads, lambda: raw_post(port, legacy, big)))

    bomb = gzip.compress(b"[" + b"0," * (30 * MIB) + b"0]", compresslevel=9)
    await measure(f"gzip-bomb({len(bomb) // 1024}K)", lambda: raw_post(
        port, v2_headers(GW_A, "ka", KEY_A.encode(), bomb), bomb))
    objs = gzip.compress(b"[" + b"{}," * (2 * MIB) + b"{}]", compresslevel=9)
    await measure("json-bomb", lambda: raw_post(
        port, v2_headers(GW_A, "ka", KEY_A.encode(), objs), objs))
    text = json.dumps({**doc(GW_A, 99, []), "records": "a" * (8 * MIB - 300)}).encode()
    string = gzip.compress(text)
    await measure("big-string", lambda: raw_post(
        port, v2_headers(GW_A, "ka", KEY_A.encode(), string), string))

    # Identity: each refused, nothing written for gateway B.
    print("\nidentity attacks (expected: refused, B unchanged)")
    cases = {
        "A's key as B": signed_batch(GW_B, "ka", KEY_A.encode(),
                                     doc(GW_B, 1, [reading("b1")])),
        "A's key, body B": signed_batch(GW_A, "ka", KEY_A.encode(),
                                        doc(GW_B, 1, [reading("b1")])),
        "B seq to 10^12": signed_batch(GW_B, "kb", KEY_B.encode(),
                                       doc(GW_B, 10**12, [reading("b2")])),
        "fleet key as B": signed_batch(GW_B, "fleet", b"fleet-secret-0123456789",
                                       doc(GW_B, 1, [reading("b3")])),
        "newline id": signed_batch(GW_B, "kb", KEY_B.encode(),
                                   doc(GW_B + "\n", 1, [reading("b4")])),
    }
    for name, (h, b) in cases.items():
        h = {k: v.replace("\n", "%0A") for k, v in h.items()}
        status, data = await raw_post(port, h, b)
        body = data.split(b"\r\n\r\n", 1)[-1][:90].decode("utf-8", "replace")
        refused = status in (400, 401, 403, 409)
        failures += not refused
        print(f"  {name:<18} {status} {body}")
    h, b = signed_batch(GW_B, "kb", KEY_B.encode(), doc(GW_B, 1, [reading("b5")]))
    first, _ = await raw_post(port, h, b)
    h, b = signed_batch(GW_B, "kb", KEY_B.encode(),
                        doc(GW_B, 1, [reading("b5"), reading("b6"), reading("b7")]))
    reuse, data = await raw_post(port, h, b)
    answer = data.split(b"\r\n\r\n", 1)[-1][:60].decode("utf-8", "replace")
    print(f"  stored batch id with new records: first {first}, reuse {reuse} {answer}")
    failures += not (first == 200 and reuse == 409)
    if pg_url:
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT device_id, count(*) FROM readings GROUP BY 1"
                                " ORDER BY 1").fetchall()
        print(f"  readings at central: {rows}")
        counts = {str(r[0]): int(r[1]) for r in rows}
        failures += counts.get(GW_B, 0) != 1
    return failures


if __name__ == "__main__":
    sys.exit(main())
