"""`dairy-edge doctor`: the checks a technician runs first on a gateway.

Each check says OK, warning or failure, and with a warning or a failure what to
do. Nothing is written: the broker sees a separate client (``<client id>-doctor``,
clean session, so the agent's own session is untouched), central a request it
refuses after checking the key (see ``_central_key``), the buffer is opened
read-only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import json
import shutil
import socket
import sqlite3
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.clock import SystemClock
from agent.config.loader import load_config
from agent.config.model import CameraConfig, Config
from agent.config.secrets import read_secret
from agent.errors import ConfigError
from agent.records.protocol import (
    HEADER_AUTH,
    HEADER_BODY_SHA256,
    HEADER_GATEWAY,
    HEADER_KEY_ID,
    sign_auth,
)
from agent.runtime.preflight import Finding, check_config

TIMEOUT_S = 5.0
# Below this much free space the buffer cannot take an outage of any length.
MIN_FREE_BYTES = 64 * 1024 * 1024
# A wall clock further than this from central's is worth a look.
CLOCK_WARN_S = 30.0


def run_checks(config_path: Path | None) -> list[Finding]:
    """Every check, in the order a technician would go through them."""
    try:
        config = load_config(config_path)
    except ConfigError as err:
        return [Finding("config", "failure", str(err),
                        "correct the file (`dairy-edge config check FILE` shows the same)")]
    source = str(config_path) if config_path else "defaults (no --config)"
    out = [Finding("config", "ok", f"{source} is valid")]
    out += check_config(config)
    out += check_broker(config)
    out += check_central(config)
    out.append(check_clock())
    out.append(check_disk(config))
    out += check_buffer(config)
    out += check_cameras(config)
    return out


# -- broker ----------------------------------------------------------------------

def check_broker(config: Config, timeout: float = TIMEOUT_S) -> list[Finding]:
    """Reachable (TCP, TLS), authenticated (CONNACK), every subscription granted."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    mq = config.mqtt
    where = f"{mq.host}:{mq.port}"
    try:
        with socket.create_connection((mq.host, mq.port), timeout=timeout):
            pass
    except OSError as err:
        return [Finding("broker reachable", "failure", f"{where}: {err}",
                        "start the broker (systemctl status mosquitto) or correct mqtt.host "
                        "and mqtt.port; check the network between gateway and broker")]
    out = [Finding("broker reachable", "ok", f"{where} accepts connections")]
    version = paho.MQTTv311 if mq.protocol == "3.1.1" else paho.MQTTv5
    client = paho.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"{config.mqtt_client_id}-doctor"[:64], protocol=version,
                         clean_session=True if version == paho.MQTTv311 else None)
    password = read_secret("mqtt_password")
    if mq.username:
        client.username_pw_set(mq.username, password)
    connack: dict[str, Any] = {}
    subacks: dict[int, list[Any]] = {}
    done = threading.Event()
    acked = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        connack["rc"] = rc
        done.set()

    def on_subscribe(_c: Any, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        subacks[mid] = list(codes)
        if len(subacks) >= len(mq.topics):
            acked.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        if mq.tls.enabled:
            client.tls_set(ca_certs=str(mq.tls.ca_file) if mq.tls.ca_file else None,
                           certfile=str(mq.tls.cert_file) if mq.tls.cert_file else None,
                           keyfile=str(mq.tls.key_file) if mq.tls.key_file else None,
                           keyfile_password="")
            client.tls_insecure_set(mq.tls.insecure)
        client.connect(mq.host, mq.port, keepalive=30)
    except (OSError, ValueError) as err:  # ssl errors are OSErrors
        out.append(Finding("broker TLS" if mq.tls.enabled else "broker login", "failure",
                           f"{where}: {err}",
                           "check mqtt.tls (the broker's certificate must match mqtt.host and "
                           "the CA in mqtt.tls.ca_file)" if mq.tls.enabled else
                           "check the broker's listener settings"))
        return out
    client.loop_start()
    try:
        if not done.wait(timeout):
            out.append(Finding("broker login", "failure", f"{where}: no CONNACK in {timeout:g} s",
                               "is it an MQTT broker? With TLS, is mqtt.tls.enabled right?"))
            return out
        rc = connack["rc"]
        if getattr(rc, "is_failure", False):
            who = f"user {mq.username!r}" if mq.username else "anonymous"
            hint = ("set the password (DAIRY_EDGE_MQTT_PASSWORD or the mqtt_password "
                    "credential) to the one in the broker's password file"
                    if mq.username else "set mqtt.username and its password: the broker "
                    "refuses anonymous clients")
            out.append(Finding("broker login", "failure", f"{where} refused {who}: {rc}", hint))
            return out
        who = f"as {mq.username!r}" if mq.username else "anonymously"
        if mq.tls.enabled:
            out.append(Finding("broker TLS", "ok", "certificate verified"))
        out.append(Finding("broker login", "ok", f"accepted {who}"))
        mids: dict[int, str] = {}
        for topic in mq.topics:
            mid = client.subscribe(topic, qos=1)[1]
            if mid is not None:
                mids[mid] = topic
        if not acked.wait(timeout):
            out.append(Finding("broker subscriptions", "failure",
                               f"no SUBACK in {timeout:g} s", "check the broker's log"))
            return out
        refused = []
        for mid, topic in mids.items():
            for code in subacks.get(mid, []):
                value = getattr(code, "value", code)
                if getattr(code, "is_failure", False) or value in (0x80, 128):
                    refused.append(f"{topic} ({code})")
        if refused:
            out.append(Finding("broker subscriptions", "failure",
                               "refused: " + ", ".join(refused),
                               f"allow these topics for {who} in the broker's ACL file "
                               "(topic read ...), or correct mqtt.topics"))
        else:
            out.append(Finding("broker subscriptions", "ok",
                               "granted: " + ", ".join(mq.topics) + " (by SUBACK; Mosquitto "
                               "2.0 grants even what its acl_file does not let the user read, "
                               "then delivers nothing: if no readings arrive, check the ACL)"))
        return out
    finally:
        client.disconnect()
        client.loop_stop()


# -- central ---------------------------------------------------------------------

def _central_base(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _ssl_context(config: Config) -> ssl.SSLContext:
    ca = config.sync.ca_file
    return ssl.create_default_context(cafile=str(ca) if ca else None)


def check_central(config: Config, timeout: float = TIMEOUT_S,
                  key: bytes | None = None) -> list[Finding]:
    """Reachable (and TLS verified) through GET /healthz; the key through a signed
    probe that central refuses only after it accepted the key."""
    if not config.sync.enabled:
        return [Finding("central", "ok", "sync is off (sync.enabled: false): not checked")]
    base = _central_base(config.sync.url)
    context = _ssl_context(config) if base.startswith("https") else None
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=timeout,
                                    context=context) as response:
            body = json.loads(response.read() or b"{}")
            date = response.headers.get("Date")
    except urllib.error.HTTPError as err:
        detail = err.read()[:200].decode(errors="replace")
        return [Finding("central reachable", "failure",
                        f"{base}/healthz answered {err.code}: {detail}",
                        "central runs but its database is down: see its log "
                        "(journalctl -u dairy-edge-central)" if err.code == 503 else
                        "is sync.url the central receiver's batch URL?")]
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        tls = isinstance(reason, ssl.SSLError)
        return [Finding("central TLS" if tls else "central reachable", "failure",
                        f"{base}: {reason}",
                        "set sync.ca_file to the CA that signed central's certificate, and "
                        "check the clock (a wrong date fails every certificate)" if tls else
                        "check sync.url, the uplink (LTE/Wi-Fi) and central's firewall")]
    out = [Finding("central reachable", "ok",
                   f"{base}/healthz: {body.get('status', '?')}"
                   + (" over verified TLS" if context is not None else " (plain HTTP)"))]
    if date:
        out.append(_clock_offset(date))
    out.append(_central_key(config, base, context, timeout, key))
    return out


def _clock_offset(date_header: str) -> Finding:
    try:
        theirs = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Finding("clock vs central", "warning", f"unreadable Date {date_header!r}")
    offset = time.time() - theirs
    if abs(offset) > CLOCK_WARN_S:
        return Finding("clock vs central", "warning",
                       f"this gateway's clock is {offset:+.0f} s from central's",
                       "enable time synchronisation (timedatectl set-ntp true); records are "
                       "corrected once the clock is synced")
    return Finding("clock vs central", "ok", f"within {CLOCK_WARN_S:g} s of central's "
                   f"({offset:+.0f} s, 1 s resolution)")


def _central_key(config: Config, base: str, context: ssl.SSLContext | None,
                 timeout: float, key: bytes | None) -> Finding:
    """Central checks a batch's signed header (gateway, key id, length, body hash)
    before it reads the body; the probe signs a header for a body it does not send
    (same length, another hash). With the key accepted, central refuses the body
    (bad_body_digest) and stores nothing; with it refused, it answers
    unknown_key, wrong_gateway or bad_signature."""
    secret = key or (read_secret("hmac_key") or "").encode()
    if not secret:
        return Finding("central key", "failure", "no HMAC key to sign with",
                       "set DAIRY_EDGE_HMAC_KEY or the hmac_key credential")
    sent = b"{}"
    signed = hashlib.sha256(b"[]").hexdigest()  # same length, another hash
    gateway, key_id = config.gateway.id, config.sync.key_id
    request = urllib.request.Request(
        config.sync.url, data=sent, method="POST",
        headers={"Content-Type": "application/json", HEADER_GATEWAY: gateway,
                 HEADER_KEY_ID: key_id, HEADER_BODY_SHA256: signed,
                 HEADER_AUTH: sign_auth(secret, gateway, key_id, len(sent), "identity",
                                        signed)})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, body = response.status, response.read()[:500]
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()[:500]
    except (urllib.error.URLError, OSError) as err:
        return Finding("central key", "failure", f"the signed probe failed: {err}",
                       "check the uplink and central")
    try:
        error = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        error = ""
    if error == "bad_body_digest":
        return Finding("central key", "ok",
                       f"central accepted key {key_id!r} for gateway {gateway!r} "
                       "(signed probe; nothing stored)")
    if error in ("unknown_key", "bad_signature", "wrong_gateway", "auth_required"):
        return Finding("central key", "failure",
                       f"central refused key {key_id!r} for gateway {gateway!r}: {error}",
                       "register this gateway's key at central (`dairy-edge central keys "
                       "add`), or set sync.key_id and the hmac_key credential to the ones "
                       "central has for gateway.id")
    if status in (429, 503):
        return Finding("central key", "warning", f"central is busy ({status} {error}); "
                       "the key was not checked", "run the doctor again in a minute")
    return Finding("central key", "warning",
                   f"unexpected answer to the signed probe: {status} {error or body[:100]!r}; "
                   "the key was not checked",
                   "is central the same version as this gateway? Reachability was checked")


# -- clock, disk, buffer -----------------------------------------------------------

def check_clock() -> Finding:
    if SystemClock().synced():
        return Finding("clock", "ok", "the wall clock is synchronised")
    return Finding("clock", "warning",
                   "the wall clock is not synchronised (no NTP answer yet this boot); the "
                   "agent runs and corrects record times once it is",
                   "enable time sync (timedatectl set-ntp true) and allow NTP (UDP 123) "
                   "out of the barn network")


def _cannot_look(check: str, path: Path, err: OSError) -> Finding:
    """A folder this user may not enter (the data folder is 0750 dairy-edge)."""
    return Finding(check, "failure", f"cannot look at {path}: {err.strerror or err}",
                   "run the doctor as root (sudo) or as the service user (sudo -u "
                   "dairy-edge dairy-edge doctor ...), or fix the folder's owner")


def check_disk(config: Config) -> Finding:
    folder = config.store_path.parent
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        usage = shutil.disk_usage(folder)
        used = config.store_path.stat().st_size if config.store_path.exists() else 0
    except OSError as err:
        return _cannot_look("disk space", config.store_path, err)
    want = config.store.max_buffer_bytes - used
    text = (f"{usage.free / 2**20:,.0f} MiB free on {folder} ({usage.free / usage.total:.0%}); "
            f"the buffer uses {used / 2**20:,.1f} MiB of its {config.store.max_buffer_bytes / 2**20:,.0f} MiB cap")
    if usage.free < MIN_FREE_BYTES:
        return Finding("disk space", "failure", text,
                       "free space on the card (old logs: journalctl --vacuum-size=50M) "
                       "or lower store.max_buffer_bytes")
    if usage.free < want:
        return Finding("disk space", "warning", text + ": the buffer cannot reach its cap",
                       "free space or lower store.max_buffer_bytes to fit the card")
    return Finding("disk space", "ok", text)


def check_buffer(config: Config) -> list[Finding]:
    path = config.store_path
    try:
        exists = path.exists()
    except OSError as err:
        return [_cannot_look("buffer", path, err)]
    if not exists:
        return [Finding("buffer", "ok", f"{path} does not exist yet (made at the first run)")]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as err:
        return [Finding("buffer", "failure", f"{path}: {err}",
                        "check its owner (the service user) and the card")]
    try:
        with contextlib.closing(conn):
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                return [Finding("buffer", "failure", f"{path}: quick_check says {result}",
                                "stop the agent and keep a copy of the file; the agent moves a "
                                "damaged buffer aside and starts a new one (docs/reliability.md)")]
            from agent.store.reader import StoreReader

            counts = StoreReader(path).counts()
    except sqlite3.Error as err:
        return [Finding("buffer", "failure", f"{path}: {err}",
                        "is the agent's schema newer than this dairy-edge? Check the card")]
    backlog, dead = counts.get("backlog", 0), counts.get("dead_letter", 0)
    out = [Finding("buffer", "ok", f"{path}: intact; {backlog} records wait for sync, "
                   f"{counts.get('quarantine', 0)} quarantined")]
    if dead:
        out.append(Finding("buffer dead letters", "warning",
                           f"{dead} records central refused for good",
                           "see them on the status page (dead letters) and in central's log"))
    return out


# -- cameras and models -------------------------------------------------------------

def check_cameras(config: Config) -> list[Finding]:
    if not config.cameras or not config.vision.enabled:
        return []
    out = [_models(config)]
    for cam in config.cameras:
        out.append(_camera(cam))
    return out


def _models(config: Config) -> Finding:
    from agent.models.registry import ModelRegistry

    registry = ModelRegistry(config.vision.models)
    status = registry.load_all()
    try:
        if registry.manifest_error:
            return Finding("models", "failure", str(registry.manifest_error),
                           "reinstall the package or correct vision.models.dir")
        bad = {n: s for n, s in status.items() if s["state"] != "active"}
        if bad:
            return Finding("models", "failure",
                           "; ".join(f"{n}: {s['state']} ({s.get('error')})"
                                     for n, s in bad.items()),
                           "`dairy-edge models verify` for details; reinstall or roll back")
        return Finding("models", "ok", f"{len(status)} loaded and self-tested")
    finally:
        registry.close()


def _camera(cam: CameraConfig) -> Finding:
    name = f"camera {cam.id}"
    uri = cam.uri
    if cam.source == "opencv":
        if uri.isdigit() or uri.startswith("/dev/"):
            device = Path(uri if uri.startswith("/dev/") else f"/dev/video{uri}")
            if not device.exists():
                return Finding(name, "failure", f"{device} does not exist",
                               "plug the camera in (v4l2-ctl --list-devices) or correct uri")
            try:
                with device.open("rb"):
                    pass
            except OSError as err:
                return Finding(name, "failure", f"{device}: {err.strerror}",
                               "the service needs the camera drop-in "
                               "(systemd/dairy-edge-cameras.conf) and the video group")
            return Finding(name, "ok", f"{device} opens")
        parts = urlsplit(uri)
        if parts.hostname:
            port = parts.port or {"rtsp": 554, "https": 443}.get(parts.scheme, 80)
            try:
                with socket.create_connection((parts.hostname, port), timeout=TIMEOUT_S):
                    pass
            except OSError as err:
                return Finding(name, "failure", f"{parts.hostname}:{port}: {err}",
                               "check the camera's power and address, and the network")
            return Finding(name, "ok", f"{parts.hostname}:{port} accepts connections")
    if cam.source == "replay":
        if not Path(uri).exists():
            return Finding(name, "failure", f"{uri} does not exist", "correct uri")
        return Finding(name, "ok", f"{uri} exists")
    if cam.source == "picamera2":
        try:
            import picamera2  # noqa: F401
        except ImportError:
            return Finding(name, "failure", "picamera2 is not importable",
                           "sudo apt install python3-picamera2, and a venv made with "
                           "--system-site-packages (scripts/install_gateway.sh does)")
        return Finding(name, "ok", "picamera2 available")
    return Finding(name, "ok", f"{cam.source} source: nothing to check here")


def report_json(findings: list[Finding]) -> str:
    return json.dumps({
        "ok": not any(f.level == "failure" for f in findings),
        "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "checks": [{"check": f.check, "level": f.level, "detail": f.detail, "fix": f.fix}
                   for f in findings],
    }, indent=2)
