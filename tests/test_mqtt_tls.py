"""MqttSource against a real Mosquitto over TLS with a password file.

Each test starts a private broker with a TLS listener and certificates made by
the openssl CLI, so the TLS and auth setup in ``agent.sources.mqtt`` is checked
end to end: verified server certificate, password auth, refusal handling
(retry, never raise) and mutual TLS.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import SystemClock
from agent.config.model import MqttConfig, TlsConfig
from agent.errors import ConfigError
from agent.sources.mqtt import MqttSource
from tests.helpers_mqtt import HOST, PrivateMosquitto, Recorder, unique, wait_for

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("mosquitto_passwd")),
    reason="needs the openssl and mosquitto_passwd CLIs",
)

USER = "gateway"
PASSWORD = "s3cret-pass"
_run = functools.partial(subprocess.run, check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing the broker uses


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    return cert, key


def _make_leaf(folder: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    extfile = folder / f"{name}.ext"
    extfile.write_text(ext + "\n")
    _run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={name}",
        ]
    )
    _run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca[0]),
            "-CAkey",
            str(ca[1]),
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-out",
            str(cert),
            "-extfile",
            str(extfile),
        ]
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = _make_ca(folder, "test-ca")
    other = _make_ca(folder, "other-ca")
    server = _make_leaf(
        folder, "server", ca, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    client = _make_leaf(folder, "client", ca, "extendedKeyUsage=clientAuth")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other[0])


def _tls_broker(folder: Path, pki: Pki, *, require_certificate: bool) -> Iterator[PrivateMosquitto]:
    folder.mkdir()
    passwd = folder / "passwd"
    _run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD])
    log = folder / "mosquitto.log"
    # PrivateMosquitto writes "listener PORT 127.0.0.1" first; these lines
    # apply to that listener. per_listener_settings is off (the default), so
    # allow_anonymous/password_file are global.
    extra = (
        f"cafile {pki.ca}",
        f"certfile {pki.server_cert}",
        f"keyfile {pki.server_key}",
        f"require_certificate {'true' if require_certificate else 'false'}",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"log_dest file {log}",
        "log_type all",
    )
    broker = PrivateMosquitto(folder, extra=extra)
    # The base config says "allow_anonymous true" and "log_dest none"; drop
    # them so ours are the only ones (mosquitto takes the last, but be plain).
    lines = [
        line
        for line in broker.conf.read_text().splitlines()
        if line not in ("allow_anonymous true", "log_dest none")
    ]
    broker.conf.write_text("\n".join(lines) + "\n")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[PrivateMosquitto]:
    yield from _tls_broker(tmp_path / "broker", pki, require_certificate=False)


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki) -> Iterator[PrivateMosquitto]:
    yield from _tls_broker(tmp_path / "mtls", pki, require_certificate=True)


def _broker_log(broker: PrivateMosquitto) -> str:
    path = broker.conf.parent / "mosquitto.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _connection_attempts(broker: PrivateMosquitto) -> int:
    return len(re.findall(r"New connection from 127\.0\.0\.1", _broker_log(broker)))


def _source(
    port: int,
    handler: Recorder,
    topic_root: str,
    tls: TlsConfig,
    *,
    username: str | None = USER,
    password: str | None = PASSWORD,
    protocol: str = "auto",
    host: str = HOST,
) -> MqttSource:
    config = MqttConfig(
        host=host,
        port=port,
        username=username,
        topics=[f"{topic_root}/#"],
        protocol=protocol,  # type: ignore[arg-type]
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
        keepalive_s=5,
        session_expiry_s=300,
        status_prefix=unique("st"),
        tls=tls,
    )
    return MqttSource(config, unique("src"), "gw-tls", handler, SystemClock(), password)


class TlsPeer:
    """A plain paho publisher over TLS (3.1.1), authenticated like the gateway."""

    def __init__(self, port: int, pki: Pki, *, client_cert: bool = False) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=unique("peer"), protocol=paho.MQTTv311
        )
        self.client.username_pw_set(USER, PASSWORD)
        self.client.tls_set(
            ca_certs=str(pki.ca),
            certfile=str(pki.client_cert) if client_cert else None,
            keyfile=str(pki.client_key) if client_cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        self.client.connect(HOST, port)
        self.client.loop_start()
        assert wait_for(self.client.is_connected, timeout=10), "TLS peer did not connect"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _receives_over_tls(source: MqttSource, recorder: Recorder, peer: TlsPeer, root: str) -> None:
    source.start()
    try:
        assert wait_for(lambda: source.connected, timeout=10), "source did not connect over TLS"
        assert wait_for(lambda: source.subscriptions() == [f"{root}/#"], timeout=10)
        peer.publish(f"{root}/barn1/temp", b'{"t": 21.5}')
        assert wait_for(lambda: recorder.payloads() == [b'{"t": 21.5}'], timeout=10)
        assert recorder.messages[0][0] == f"{root}/barn1/temp"
        assert wait_for(lambda: source.stats.acks == 1, timeout=5)
    finally:
        source.stop()


@pytest.mark.timeout(60)
def test_tls_with_password_connects_subscribes_and_receives_qos1(
    broker: PrivateMosquitto, pki: Pki
) -> None:
    recorder = Recorder()
    root = unique("tls")
    source = _source(broker.port, recorder, root, TlsConfig(enabled=True, ca_file=pki.ca))
    peer = TlsPeer(broker.port, pki)
    try:
        _receives_over_tls(source, recorder, peer, root)
    finally:
        peer.close()
    assert source.stats.connects == 1
    assert source.stats.protocol == "5"
    assert not source.connected


@pytest.mark.timeout(60)
def test_tls_listener_refuses_plain_mqtt(broker: PrivateMosquitto, pki: Pki) -> None:
    # The same source without TLS never gets a CONNACK from a TLS-only port.
    source = _source(
        broker.port, Recorder(), unique("plain"), TlsConfig(enabled=False), protocol="5"
    )
    source.start()
    try:
        # The broker saw us knock (how often depends on timeouts and load)...
        assert wait_for(lambda: _connection_attempts(broker) >= 1, timeout=30)
        # ...and the source never got a session out of it.
        assert not wait_for(lambda: source.connected, timeout=3)
        assert source.stats.connects == 0
    finally:
        source.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_wrong_password_is_refused_and_retried_without_raising(
    broker: PrivateMosquitto, pki: Pki, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.sources.mqtt")
    source = _source(
        broker.port,
        Recorder(),
        unique("badpw"),
        TlsConfig(enabled=True, ca_file=pki.ca),
        password="wrong",
        protocol=protocol,
    )
    source.start()  # must not raise
    try:

        def refusals() -> int:
            return sum("refused the connection" in r.getMessage() for r in caplog.records)

        # Several CONNACK refusals in a row: the source keeps trying.
        assert wait_for(lambda: refusals() >= 3, timeout=15), caplog.text
        assert not source.connected
        assert source.stats.connects == 0
        # A refused password is not an old broker: no fall back to 3.1.1.
        assert "retrying as MQTT 3.1.1" not in caplog.text
        assert "not authorised" in _broker_log(broker)
    finally:
        source.stop()
    assert not source.connected


@pytest.mark.timeout(60)
def test_missing_password_is_refused(broker: PrivateMosquitto, pki: Pki) -> None:
    # No secret provided: the username alone must not get in.
    source = _source(
        broker.port,
        Recorder(),
        unique("nopw"),
        TlsConfig(enabled=True, ca_file=pki.ca),
        password=None,
    )
    source.start()
    try:
        assert wait_for(lambda: _broker_log(broker).count("not authorised") >= 2, timeout=15)
        assert not source.connected
        assert source.stats.connects == 0
    finally:
        source.stop()


@pytest.mark.timeout(60)
def test_untrusted_ca_fails_verification_and_keeps_retrying(
    broker: PrivateMosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.sources.mqtt")
    source = _source(
        broker.port, Recorder(), unique("badca"), TlsConfig(enabled=True, ca_file=pki.other_ca)
    )
    source.start()
    try:
        # The client aborts each handshake; the broker sees every new attempt.
        assert wait_for(lambda: _connection_attempts(broker) >= 3, timeout=15)
        assert not source.connected
        assert source.stats.connects == 0
        assert "certificate verify failed" in caplog.text
        # Logged once per distinct reason, not once per attempt.
        assert caplog.text.count("certificate verify failed") == 1
    finally:
        source.stop()


@pytest.mark.timeout(60)
def test_hostname_mismatch_fails_unless_insecure(broker: PrivateMosquitto, pki: Pki) -> None:
    # The server certificate names IP 127.0.0.1 only; "localhost" does not match.
    recorder = Recorder()
    strict = _source(
        broker.port,
        recorder,
        unique("host"),
        TlsConfig(enabled=True, ca_file=pki.ca),
        host="localhost",
    )
    strict.start()
    try:
        assert wait_for(lambda: _connection_attempts(broker) >= 2, timeout=15)
        assert not strict.connected
    finally:
        strict.stop()

    root = unique("insecure")
    loose = _source(
        broker.port,
        recorder,
        root,
        TlsConfig(enabled=True, ca_file=pki.ca, insecure=True),
        host="localhost",
    )
    loose.start()
    try:
        assert wait_for(lambda: loose.connected, timeout=10), "insecure should skip the name"
    finally:
        loose.stop()


@pytest.mark.timeout(60)
def test_mutual_tls_with_client_certificate(mtls_broker: PrivateMosquitto, pki: Pki) -> None:
    recorder = Recorder()
    root = unique("mtls")
    tls = TlsConfig(
        enabled=True, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
    )
    source = _source(mtls_broker.port, recorder, root, tls)
    peer = TlsPeer(mtls_broker.port, pki, client_cert=True)
    try:
        _receives_over_tls(source, recorder, peer, root)
    finally:
        peer.close()
    assert source.stats.connects == 1


@pytest.mark.timeout(60)
def test_mutual_tls_without_client_certificate_is_refused(
    mtls_broker: PrivateMosquitto, pki: Pki
) -> None:
    # protocol "5": under "auto" the broker's silent close (no CONNACK) reads
    # as an old broker and the source falls back to 3.1.1 (known, reported).
    source = _source(
        mtls_broker.port,
        Recorder(),
        unique("nocert"),
        TlsConfig(enabled=True, ca_file=pki.ca),
        protocol="5",
    )
    source.start()
    try:
        assert wait_for(lambda: _connection_attempts(mtls_broker) >= 3, timeout=15)
        assert not source.connected
        assert source.stats.connects == 0
    finally:
        source.stop()


@pytest.mark.parametrize(
    "field",
    ["ca_file", "cert_file"],
)
def test_missing_tls_file_is_a_config_error(tmp_path: Path, pki: Pki, field: str) -> None:
    files = {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
    files[field] = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="mqtt.tls"):
        _source(1883, Recorder(), unique("cfg"), TlsConfig(enabled=True, **files))


def test_key_without_certificate_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="mqtt.tls"):
        _source(
            1883,
            Recorder(),
            unique("cfg"),
            TlsConfig(enabled=True, ca_file=pki.ca, key_file=pki.client_key),
        )


def test_mismatched_client_key_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="mqtt.tls"):
        _source(
            1883,
            Recorder(),
            unique("cfg"),
            TlsConfig(
                enabled=True, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.server_key
            ),
        )


def test_encrypted_client_key_fails_fast_instead_of_prompting(tmp_path: Path, pki: Pki) -> None:
    key = tmp_path / "encrypted.key"
    _run(
        [
            "openssl",
            "pkey",
            "-in",
            str(pki.client_key),
            "-out",
            str(key),
            "-aes256",
            "-passout",
            "pass:abcd",
        ]
    )
    with pytest.raises(ConfigError, match="mqtt.tls"):
        _source(
            1883,
            Recorder(),
            unique("cfg"),
            TlsConfig(enabled=True, ca_file=pki.ca, cert_file=pki.client_cert, key_file=key),
        )
