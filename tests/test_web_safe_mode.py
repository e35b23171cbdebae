"""Safe mode serves the page as the broken file's ``web`` section configures it:
the same address, host names, certificate and users (issue 11 item 7), never
with the login off or /metrics open."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from helpers_web import csrf_of

from agent.runtime.safe_mode import run_safe_mode, safe_web
from agent.web.users import UserStore

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broken_config(tmp_path: Path, port: int) -> Path:
    cert, key = tmp_path / "page.crt", tmp_path / "page.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=barn.example", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "detect": {"no_such_key": 1},  # the broken part
        "web": {"host": "127.0.0.1", "port": port, "allowed_hosts": ["barn.example"],
                "users_file": str(tmp_path / "staff.json"), "tls_cert": str(cert),
                "tls_key": str(key), "session_hours": 2, "login": False,
                "metrics_open": True},
    }))
    return path


def test_safe_web_keeps_hosts_tls_and_users_not_the_openings(tmp_path: Path) -> None:
    path = _broken_config(tmp_path, 8443)
    web = safe_web(path)
    assert (web.host, web.port, web.allowed_hosts) == ("127.0.0.1", 8443, ["barn.example"])
    assert web.users_file == tmp_path / "staff.json"
    assert web.tls_cert == tmp_path / "page.crt" and web.tls_key == tmp_path / "page.key"
    assert web.session_hours == 2
    assert web.login and not web.metrics_open  # nothing in a broken file opens anything


async def test_safe_mode_serves_https_to_its_users_under_its_names(tmp_path: Path) -> None:
    port = _free_port()
    path = _broken_config(tmp_path, port)
    UserStore(tmp_path / "staff.json").add("anna", "technician", "anna-pass-1")
    stop = asyncio.Event()
    task = asyncio.create_task(run_safe_mode("config invalid\n  detect.no_such_key: extra",
                                             path, stop))
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    base = f"https://127.0.0.1:{port}"
    named = {"Host": f"barn.example:{port}"}
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            for _ in range(100):
                try:
                    async with http.get(base + "/healthz", ssl=insecure, headers=named) as r:
                        health = r.status, await r.json()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("safe mode never answered on HTTPS")
            assert health[0] == 503  # the name from allowed_hosts: not 421
            assert "detect.no_such_key" in " ".join(health[1]["reasons"])
            async with http.get(base + "/metrics", ssl=insecure, headers=named) as r:
                assert r.status == 401  # metrics_open is not carried over
            async with http.get(base + "/login", ssl=insecure, headers=named) as r:
                token = csrf_of(await r.text())
                assert r.headers["Strict-Transport-Security"].startswith("max-age=")
            async with http.post(base + "/login", ssl=insecure, allow_redirects=False,
                                 headers=named, data={"csrf": token, "user": "anna",
                                                      "password": "anna-pass-1"}) as r:
                assert r.status == 303, await r.text()  # a user of web.users_file
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
