#!/usr/bin/env python3
"""CI: the wheel on its own. Build it, install it into a fresh virtual environment
outside the source tree, and from an empty folder:

1. `dairy-edge demo` (its embedded broker: nothing but the package) until live
   readings are on the status page (logged in with the demo's one-time link) and
   at central, then Ctrl-C: it must stop within 2 s and remove its folder;
2. `dairy-edge central --config FILE` until /healthz says ok;
3. `dairy-edge run --config FILE` (from `dairy-edge init`) until it is subscribed.

Prints the virtual environment's size. Exit status 1 on any failure.

    scripts/ci_wheel_demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STOP_BUDGET_S = 2.0


def log(text: str) -> None:
    print(f"== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
            continue
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise SystemExit(f"FAILED: no line matching {pattern!r} within {timeout:g} s:\n"
                     + "".join(lines[-40:]))


def stop(proc: subprocess.Popen[str]) -> float:
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit("FAILED: did not stop within 30 s of SIGINT") from None
    return time.monotonic() - started


def demo(bin_dir: Path, empty: Path, env: dict[str, str]) -> None:
    log("dairy-edge demo (embedded broker) from an empty folder")
    proc = subprocess.Popen(
        [str(bin_dir / "dairy-edge"), "demo", "--web-port", "0", "--mqtt-port",
         str(free_port()), "--rate", "50"],
        cwd=empty, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = wait_line(proc, r"central has\s+[1-9]", 90)
        text = "".join(lines)
        link = re.search(r"status page:\s+(http://\S+)", text)
        folder = re.search(r"SQLite at (\S+)/central\.db", text)
        assert link and folder and "(embedded)" in text, text
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(link.group(1), timeout=10).read()  # the one-time login link
        base = re.match(r"http://[^/]+", link.group(1)).group(0)  # type: ignore[union-attr]
        status = json.loads(opener.open(base + "/api/status", timeout=10).read())
        assert status["sensors"], "no live readings on the page"
        log(f"page shows {len(status['sensors'])} sensors; "
            + re.findall(r"central has\s+\d+", text)[-1])
    except BaseException:
        proc.kill()
        raise
    took = stop(proc)
    rest = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0 or took > STOP_BUDGET_S:
        raise SystemExit(f"FAILED: demo stopped in {took:.2f} s, exit {proc.returncode}\n{rest}")
    if Path(folder.group(1)).exists():
        raise SystemExit(f"FAILED: the demo left {folder.group(1)} behind")
    log(f"demo stopped {took:.2f} s after SIGINT and removed its folder")


def central(bin_dir: Path, empty: Path, env: dict[str, str]) -> None:
    log("dairy-edge central --config FILE (SQLite)")
    port = free_port()
    config = empty / "central.yaml"
    config.write_text(f"central:\n  port: {port}\n  database_url: sqlite:///{empty}/c.db\n")
    proc = subprocess.Popen([str(bin_dir / "dairy-edge"), "central", "--config", str(config)],
                            cwd=empty, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("FAILED: central did not answer /healthz:\n"
                                     + (proc.stdout.read() if proc.stdout else "")) from None
                time.sleep(0.2)
        assert body["status"] == "ok", body
        log(f"central /healthz: {body}")
    finally:
        stop(proc)


def run(bin_dir: Path, empty: Path, env: dict[str, str]) -> None:
    log("dairy-edge init + dairy-edge run --config FILE")
    farm = empty / "farm"
    subprocess.run([str(bin_dir / "dairy-edge"), "init", str(farm), "--gateway-id", "ci-gw",
                    "--data-dir", str(empty / "data")], cwd=empty, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    config = farm / "dairy-edge.yaml"
    config.write_text(config.read_text().replace("port: 8080", "port: 0")
                      .replace('["barn/#"]', f'["ci{os.getpid()}/#"]'))
    proc = subprocess.Popen([str(bin_dir / "dairy-edge"), "run", "--strict-config", "--config",
                             str(config)], cwd=empty, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_line(proc, r"; ready", 60)
        log("the agent is subscribed and ready")
    finally:
        took = stop(proc)
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: run exited {proc.returncode}")
    log(f"the agent stopped {took:.2f} s after SIGINT")


# What the wheel is built from. A copy, so setuptools' build/ never lands in (or
# is cleaned out of) a shared checkout, where other tools keep files in build/.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "agent", "firmware_configs", "calibration",
                 "models", "examples")


def build_wheel(work: Path) -> Path:
    src = work / "src"
    for name in WHEEL_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(work / "dist"), str(src)], check=True)
    return next((work / "dist").glob("dairy_edge-*.whl"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it (default: a "
                        "temporary folder, removed)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dairy-edge-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log("building the wheel")
        wheel = build_wheel(work)
        log(f"fresh virtual environment for {wheel.name}")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True)
        size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True,
                              check=True).stdout.split()[0]
        log(f"installed: {size} MB on disk ({venv})")
        empty = work / "empty"
        empty.mkdir(exist_ok=True)
        # nothing from the checkout: no PYTHONPATH, the working folder is empty
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(DAIRY_EDGE_HMAC_KEY="ci-" + "k" * 32, PYTHONUNBUFFERED="1")
        demo(venv / "bin", empty, env)
        central(venv / "bin", empty, env)
        run(venv / "bin", empty, env)
        log("OK: the wheel works on its own")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
