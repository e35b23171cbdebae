"""Status page figures for docs/web.md: latency of /, /api/view, /api/status
(p50, p95) with a farm of N cows (a collar and a milk meter each) plus other
devices; the page's weight as Chromium loads it; the bytes an open phone costs
per minute when nothing changes (Playwright, Debian's Chromium).

    .venv/bin/python scripts/bench_web.py --cows 800 --devices 100
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_web import PASSWORDS, csrf_of, farm_status, user_store

from agent.web import WebAccess, make_web_app


async def _timed(http: aiohttp.ClientSession, url: str, n: int,
                 headers: dict[str, str] | None = None) -> tuple[list[float], int, int]:
    times, size, status = [], 0, 0
    for _ in range(n):
        t = time.perf_counter()
        async with http.get(url, headers=headers or {}, auto_decompress=False) as r:
            body = await r.read()
            status = r.status
        times.append((time.perf_counter() - t) * 1000)
        size = len(body)
    return times, size, status


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def _buffer_provider(status: dict[str, Any], path: Path) -> Any:
    """Store one reading per sensor through the agent's writer; the provider reads
    them back each request like ``Agent.status`` does."""
    from helpers_store import make_writer

    from agent.records.types import Reading, Stamp
    from agent.store.reader import StoreReader

    writer = make_writer(path)
    now = time.time()
    for i, s in enumerate(status["sensors"]):
        writer.submit(Reading(
            record_id=f"bench-{i}", sensor_id=s["sensor_id"], firmware=s["firmware"],
            topic=f"barn/x/{s['sensor_id']}", values=s["values"], raw=s["values"], units={},
            stamp=Stamp(now - (s["age_s"] or 0), time.monotonic_ns(), "bench", True),
            animal_id=s["animal_id"]))
    writer.close()
    reader = StoreReader(path)
    rest = {k: v for k, v in status.items() if k != "sensors"}

    def provider() -> dict[str, Any]:
        sensors = [
            {"sensor_id": r["sensor_id"], "values": r["values"], "age_s": r["age_s"],
             "health": "ok", "firmware": r["firmware"], "animal_id": r["animal_id"],
             "seen_ts": r["wall_ts"]}
            for r in reader.sensor_latest(now_wall=time.time())
        ]
        counts = reader.counts()
        return {**copy.deepcopy(rest), "sensors": sensors, "backlog": counts["backlog"]}

    return provider


async def _browser(base: str, idle_s: float, warmup_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    out: dict[str, Any] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=["--no-sandbox"])
        ctx = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await ctx.new_page()
        await page.goto(base + "/login")
        await page.fill("#user", "tech")
        await page.fill("#password", PASSWORDS["tech"])
        sizes: list[tuple[str, int]] = []

        async def record(request: Any) -> None:
            s = await request.sizes()
            sizes.append((request.url, s["requestHeadersSize"] + s["requestBodySize"]
                          + s["responseHeadersSize"] + s["responseBodySize"]))

        pending: list[asyncio.Future[None]] = []
        page.on("requestfinished", lambda r: pending.append(asyncio.ensure_future(record(r))))

        async def poll_size(response: Any) -> None:
            # A 304 to fetch() ends as "aborted" in Playwright's events: count its
            # bytes from the headers both ways (HTTP/1.1 lines) and its empty body.
            def head(headers: dict[str, str]) -> int:
                return sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2

            req = await response.request.all_headers()
            res = await response.all_headers()
            line = len(f"GET {response.url.split('/', 3)[-1]} HTTP/1.1\r\n") + 1
            # the body as it crossed the wire (gzip), not as decoded
            body = 0 if response.status == 304 else (
                await response.request.sizes())["responseBodySize"]
            idle.append(head(req) + line + head(res) + len("HTTP/1.1 304 Not Modified\r\n")
                        + body)

        idle: list[int] = []
        page.on("response", lambda r: pending.append(asyncio.ensure_future(poll_size(r)))
                if "/api/view" in r.url else None)
        t = time.perf_counter()
        await page.click("button[type=submit]")
        await page.wait_for_load_state("load")
        out["load_ms"] = (time.perf_counter() - t) * 1000
        await asyncio.sleep(1)
        await asyncio.gather(*pending)
        out["page_bytes"] = sum(n for u, n in sizes if "/login" not in u)
        out["page_requests"] = [u.split("/", 3)[-1] for u, _ in sizes]
        # The backlog trend appears after a minute of polls: a real change once.
        await asyncio.sleep(warmup_s)
        await asyncio.gather(*pending)
        sizes.clear()
        idle.clear()
        await asyncio.sleep(idle_s)
        await asyncio.gather(*pending)
        polls = idle
        out["idle_polls"] = len(polls)
        out["idle_bytes_per_min"] = sum(polls) * 60.0 / idle_s
        await browser.close()
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cows", type=int, default=800)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("-n", type=int, default=200, help="requests per URL (default 200)")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle page (default 60)")
    ap.add_argument("--warmup", type=float, default=65.0,
                    help="seconds the page is open before the idle window (default 65)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--buffer", action="store_true",
                    help="read the sensors from a real SQLite buffer each request, as the "
                    "agent does (StoreReader.sensor_latest), instead of a prepared dict")
    args = ap.parse_args()
    status = farm_status(cows=args.cows, devices=args.devices, alerts=3)
    tmp = Path(tempfile.mkdtemp())
    provider = (_buffer_provider(status, tmp / "buffer.db") if args.buffer
                else lambda: copy.deepcopy(status))
    app = make_web_app(provider, access=WebAccess(users=user_store(tmp)), gateway="bench-gw")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar,
                                     headers={"Accept-Encoding": "gzip"}) as http:
        async with http.get(base + "/login") as r:
            token = csrf_of(await r.text())
        async with http.post(base + "/login", data={"csrf": token, "user": "tech",
                                                    "password": PASSWORDS["tech"]}) as r:
            assert r.status == 200, r.status
        print(f"{len(status['sensors'])} sensors ({args.cows} cows x 2 + "
              f"{len(status['sensors']) - 2 * args.cows} others), {args.n} requests each")
        for path in ("/", "/api/view", "/api/status"):
            times, size, code = await _timed(http, base + path, args.n)
            print(f"  GET {path:<12} {code}  p50 {_pct(times, 50):6.1f} ms  "
                  f"p95 {_pct(times, 95):6.1f} ms  body {size / 1024:6.1f} kB (gzip)")
        async with http.get(base + "/api/view") as r:
            etag = r.headers["ETag"]
        times, size, code = await _timed(http, base + "/api/view", args.n,
                                         {"If-None-Match": etag})
        print(f"  GET /api/view (unchanged) {code}  p50 {_pct(times, 50):6.1f} ms  "
              f"p95 {_pct(times, 95):6.1f} ms  body {size} B")
    if not args.no_browser and Path("/usr/bin/chromium").exists():
        res = await _browser(base, args.idle, args.warmup)
        print(f"  Chromium: page {res['page_bytes'] / 1024:.1f} kB on the wire in "
              f"{len(res['page_requests'])} requests, loaded in {res['load_ms']:.0f} ms; "
              f"idle {args.idle:.0f} s: {res['idle_polls']} polls, "
              f"{res['idle_bytes_per_min'] / 1024:.2f} kB/min")
    await server.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
