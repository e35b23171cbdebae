"""Lighthouse 12 (npm) on the status page, logged in, mobile preset, Debian's
Chromium: the four category scores and the first render, for docs/web.md.

    npm install --prefix build/lighthouse lighthouse@12
    .venv/bin/python scripts/lighthouse_web.py --lighthouse build/lighthouse/node_modules/.bin/lighthouse

Lighthouse gets the session cookie as an extra header; the page is served with
a farm of --cows cows (a collar and a milk meter each) plus --devices devices.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_web import PASSWORDS, csrf_of, farm_status, user_store

from agent.web import WebAccess, make_web_app


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lighthouse", default="lighthouse", help="the lighthouse command")
    ap.add_argument("--cows", type=int, default=800)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("build/lighthouse/report.json"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    status = farm_status(cows=args.cows, devices=args.devices, alerts=3)
    app = make_web_app(lambda: copy.deepcopy(status),
                       access=WebAccess(users=user_store(Path(tempfile.mkdtemp()))),
                       gateway="barn-gw-1")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base + "/login") as r:
            token = csrf_of(await r.text())
        async with http.post(base + "/login", data={"csrf": token, "user": "tech",
                                                    "password": PASSWORDS["tech"]}) as r:
            assert r.status == 200
        cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        args.lighthouse, base + "/", "--quiet", "--output=json", f"--output-path={args.out}",
        "--chrome-flags=--headless=new --no-sandbox",
        f"--extra-headers={json.dumps({'Cookie': cookie})}",
        env={**os.environ, "CHROME_PATH": args.chromium})
    code = await proc.wait()
    await server.close()
    if code != 0:
        print(f"lighthouse exited {code}", file=sys.stderr)
        return code
    report = json.loads(args.out.read_text())
    scores = {k: round(v["score"] * 100) for k, v in report["categories"].items()}
    audits = report["audits"]
    print(f"Lighthouse {report['lighthouseVersion']} ({report['configSettings']['formFactor']}), "
          f"{args.cows} cows + {args.devices} devices:")
    print("  " + ", ".join(f"{k} {v}" for k, v in scores.items()))
    for key in ("first-contentful-paint", "largest-contentful-paint", "total-blocking-time",
                "cumulative-layout-shift", "total-byte-weight"):
        print(f"  {audits[key]['title']}: {audits[key]['displayValue']}")
    failed = [a["id"] for a in audits.values()
              if a.get("score") is not None and a["score"] < 0.9
              and a.get("scoreDisplayMode") in ("binary", "numeric")]
    if failed:
        print("  below 0.9: " + ", ".join(sorted(failed)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
