"""HTTPS between gateway and central, with a real local certificate authority (openssl).

The gateway verifies central's certificate against `sync.ca_file`; a certificate
from another CA, or no CA file (the system store does not know ours), is a
transient failure and the data stays in the buffer. Central can also require a
client certificate from the same CA (mutual TLS).
"""

from __future__ import annotations

import gzip
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from helpers_central import KEY, KEY_ID, batch_doc, central_config, reading, unique_device
from helpers_store import reading as gateway_reading
from helpers_sync import KEY as RIG_KEY
from helpers_sync import Rig, unsynced

from agent.central import run_central
from agent.central.store import CentralStore
from agent.clock import SystemClock
from agent.errors import ConfigError, TransientError
from agent.sync import Uploader
from agent.sync.signing import headers_for

pytest_plugins = ("helpers_central_fixtures",)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{name}-ca.key", folder / f"{name}-ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "2", "-subj", f"/CN={name} test CA",
             "-addext", "basicConstraints=critical,CA:true",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(folder: Path, ca: tuple[Path, Path], name: str, *, server: bool) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ext = folder / f"{name}.ext"
    ext.write_text(
        "basicConstraints=CA:false\n"
        + ("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
           if server else "extendedKeyUsage=clientAuth\n")
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "dairy")
    rogue = make_ca(folder, "rogue")
    server = issue(folder, ca, "central", server=True)
    rogue_server = issue(folder, rogue, "impostor", server=True)
    client = issue(folder, ca, "gw-client", server=False)
    return {"ca": ca[0], "server_cert": server[0], "server_key": server[1],
            "rogue_cert": rogue_server[0], "rogue_key": rogue_server[1],
            "client_cert": client[0], "client_key": client[1]}


def _rig(tmp_path: Path, url: str, gw: str, buffer: str = "buf", **sync: object) -> Rig:
    rig = Rig(tmp_path / f"{gw}-{buffer}.db", url, key_id=f"{gw}-k", **sync)
    rig.up = Uploader(rig.config, gw, RIG_KEY, rig.writer, rig.db, rig.transport, SystemClock())
    return rig


async def test_gateway_syncs_over_https_verifying_central_against_the_local_ca(
    pki: dict[str, Path], store: CentralStore, database_url: str, tmp_path: Path
) -> None:
    config = central_config(database_url, tls_cert=str(pki["server_cert"]),
                            tls_key=str(pki["server_key"]))
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    gw = unique_device()
    await store.add_key(gw, f"{gw}-k", RIG_KEY.decode())
    try:
        assert handle.url.startswith("https://127.0.0.1:")
        # No CA file: the system store does not know our CA; the data stays.
        blind = _rig(tmp_path, handle.url, gw, "blind")
        try:
            blind.fill([gateway_reading(i) for i in range(10)])
            with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
                await blind.up.sync_once()
            assert unsynced(blind.db) == 10
        finally:
            await blind.close()
        # With sync.ca_file: verified, stored.
        rig = _rig(tmp_path, handle.url, gw, ca_file=str(pki["ca"]))
        try:
            rig.fill([gateway_reading(i) for i in range(10, 20)])
            result = await rig.up.sync_once()
            assert result.applied.synced == 10 and unsynced(rig.db) == 0
        finally:
            await rig.close()
        assert (await store.stats())["devices"][gw]["reading"] == 10
    finally:
        await handle.stop()


async def test_gateway_refuses_a_certificate_from_another_ca(
    pki: dict[str, Path], store: CentralStore, database_url: str, tmp_path: Path
) -> None:
    config = central_config(database_url, tls_cert=str(pki["rogue_cert"]),
                            tls_key=str(pki["rogue_key"]))
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    gw = unique_device()
    rig = _rig(tmp_path, handle.url, gw, ca_file=str(pki["ca"]))
    try:
        rig.fill([gateway_reading(i) for i in range(5)])
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            await rig.up.sync_once()
        assert unsynced(rig.db) == 5
        assert gw not in (await store.stats())["devices"]
    finally:
        await rig.close()
        await handle.stop()


async def test_central_can_require_a_client_certificate(
    pki: dict[str, Path], store: CentralStore, database_url: str
) -> None:
    config = central_config(database_url, tls_cert=str(pki["server_cert"]),
                            tls_key=str(pki["server_key"]), tls_client_ca=str(pki["ca"]))
    handle = await run_central(config, {KEY_ID: KEY}, store=store)
    gw = unique_device()
    doc = batch_doc(gw, 1, [reading(1)])
    body = gzip.compress(json.dumps(doc).encode())
    headers = headers_for(KEY_ID, KEY, doc["batch_id"], body, gw)
    try:
        anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.post(handle.url, data=body, headers=headers,
                                     ssl=anonymous) as resp:
                    await resp.read()
            with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
            with_cert.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
            async with http.post(handle.url, data=body, headers=headers,
                                 ssl=with_cert) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await handle.stop()


def test_tls_settings_are_checked(pki: dict[str, Path], tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="both tls_cert and tls_key"):
        central_config("sqlite:///x.db", tls_cert=str(pki["server_cert"]))
    with pytest.raises(ValidationError, match="tls_client_ca needs"):
        central_config("sqlite:///x.db", tls_client_ca=str(pki["ca"]))
    from agent.central.server import tls_context

    missing = central_config("sqlite:///x.db", tls_cert=str(tmp_path / "none.pem"),
                             tls_key=str(tmp_path / "none.key"))
    with pytest.raises(ConfigError, match="central TLS"):
        tls_context(missing)
