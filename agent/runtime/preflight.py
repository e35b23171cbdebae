"""What a config needs beyond its own keys: folders, firmware and calibration
files, TLS files, secrets. One list of checks for `dairy-edge config check`,
`dairy-edge doctor` and the agent's start (``Agent`` refuses on any failure), so
that a config the check calls OK is one `run --strict-config` accepts.

A failure is what the agent cannot run with; a warning is what it runs with,
but not as the farm may expect (a camera without its herd register, a
calibration overdue, a broker user without a password).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.clock import SystemClock
from agent.config.model import Config
from agent.config.secrets import read_secret
from agent.errors import ConfigError
from agent.ingest.calibration import CalibrationTable, load_calibration_dir
from agent.ingest.firmware import load_firmware_dir
from agent.ingest.pipeline import Ingestor

Level = Literal["ok", "warning", "failure"]


@dataclass(frozen=True)
class Finding:
    """One check's outcome: what was checked, how it went, and what to do."""

    check: str
    level: Level
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "OK  ", "warning": "WARN", "failure": "FAIL"}[self.level]
        text = f"{mark} {self.check}: {self.detail}"
        return text + (f"\n     fix: {self.fix}" if self.fix else "")


def failures(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "failure"]


def raise_for_failures(findings: Iterable[Finding]) -> None:
    """ConfigError listing every failure with its fix; nothing when none failed."""
    bad = failures(findings)
    if bad:
        raise ConfigError("\n".join(f"{f.check}: {f.detail}" + (f" ({f.fix})" if f.fix else "")
                                    for f in bad))


def check_config(
    config: Config,
    *,
    hmac_key: bytes | None = None,
    mqtt_password: str | None = None,
    now_wall: float | None = None,
) -> list[Finding]:
    """Every check of ``config`` against this machine; nothing is written.

    :param hmac_key: the key the caller already has (the demo's); else the
        secret is looked up like the agent does (environment, credentials).
    :param mqtt_password: likewise for the broker password.
    """
    out: list[Finding] = []
    out += _secrets(config, hmac_key, mqtt_password)
    out.append(_data_dir(config.gateway.data_dir))
    out += _ingest(config, now_wall if now_wall is not None else time.time())
    out += _tls(config)
    out += _vision(config)
    return out


# -- secrets -------------------------------------------------------------------

def _secrets(config: Config, hmac_key: bytes | None, mqtt_password: str | None) -> list[Finding]:
    out = []
    if config.sync.enabled:
        if hmac_key or read_secret("hmac_key"):
            out.append(Finding("secret hmac_key", "ok", "present"))
        else:
            out.append(Finding(
                "secret hmac_key", "failure",
                "sync is enabled but no HMAC key was given",
                "set DAIRY_EDGE_HMAC_KEY or put hmac_key in $CREDENTIALS_DIRECTORY "
                "(/etc/dairy-edge/credentials/hmac_key under systemd), or set "
                "sync.enabled: false"))
    if config.mqtt.username:
        if mqtt_password or read_secret("mqtt_password"):
            out.append(Finding("secret mqtt_password", "ok", "present"))
        else:
            out.append(Finding(
                "secret mqtt_password", "warning",
                f"mqtt.username is {config.mqtt.username!r} but no password was given; "
                "the agent connects without one",
                "set DAIRY_EDGE_MQTT_PASSWORD or put mqtt_password in $CREDENTIALS_DIRECTORY "
                "(/etc/dairy-edge/credentials/mqtt_password under systemd)"))
    return out


# -- folders ---------------------------------------------------------------------

def _data_dir(path: Path) -> Finding:
    name = "gateway.data_dir"
    if path.is_dir():
        if os.access(path, os.W_OK | os.X_OK):
            return Finding(name, "ok", f"{path} is writable")
        return Finding(name, "failure", f"{path} is not writable by this user",
                       "run as the service user (sudo -u dairy-edge ...), or fix its owner "
                       "(systemd's StateDirectory= does this), or set gateway.data_dir")
    if path.exists():
        return Finding(name, "failure", f"{path} is not a folder", "set gateway.data_dir")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return Finding(name, "ok", f"{path} will be created")
    return Finding(name, "failure", f"{path} does not exist and this user cannot create it",
                   f"create it for the service user (mkdir -p {path}; systemd's "
                   "StateDirectory= does this), or set gateway.data_dir")


def _ingest(config: Config, now_wall: float) -> list[Finding]:
    gw = config.gateway
    out = []
    firmware_ok = False
    try:
        specs = load_firmware_dir(gw.firmware_dir)
    except ConfigError as err:
        out.append(Finding("firmware", "failure", str(err),
                           "point gateway.firmware_dir at a folder of firmware *.yaml files "
                           "(`dairy-edge init DIR` writes a copy of the shipped ones)"))
    else:
        firmware_ok = True
        out.append(Finding("firmware", "ok",
                           f"{len(specs)} formats in {gw.firmware_dir}"))
    table: CalibrationTable | None = None
    if not gw.calibration_dir.is_dir() and "calibration_dir" not in gw.model_fields_set:
        out.append(Finding("calibration", "ok",
                           f"none ({gw.calibration_dir}, the default folder, is absent)"))
    elif not gw.calibration_dir.is_dir():
        out.append(Finding("calibration", "failure",
                           f"{gw.calibration_dir}: calibration folder does not exist",
                           "create it (it may be empty: no corrections) or point "
                           "gateway.calibration_dir at the farm's calibration files"))
    else:
        try:
            table = load_calibration_dir(gw.calibration_dir)
        except ConfigError as err:
            out.append(Finding("calibration", "failure", str(err),
                               "correct the file; `dairy-edge init DIR` writes an example"))
    if firmware_ok and table is not None:
        try:  # the cross-checks: calibrations name known firmware and fields
            Ingestor(gw.firmware_dir, gw.calibration_dir, config.ingest, SystemClock(), "check")
        except ConfigError as err:
            out.append(Finding("calibration", "failure", str(err),
                               "correct the calibration file"))
        else:
            entries = table.entries()
            out.append(Finding("calibration", "ok",
                               f"{len(entries)} devices in {gw.calibration_dir}"))
            late = table.overdue(now_wall)
            if late:
                names = ", ".join(
                    f"{c.sensor_id} (due {_date(c.due_ts)})" for c in late)
                out.append(Finding("calibration due", "warning",
                                   f"overdue: {names}",
                                   "recalibrate and update calibrated_on and due in "
                                   f"{gw.calibration_dir}"))
    return out


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


# -- TLS ---------------------------------------------------------------------------

def _tls(config: Config) -> list[Finding]:
    out = []
    tls = config.mqtt.tls
    if tls.enabled:
        name = "mqtt.tls"
        try:
            if tls.key_file and not tls.cert_file:
                raise ValueError("key_file is set but cert_file is not")
            context = ssl.create_default_context(
                cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file:
                context.load_cert_chain(str(tls.cert_file),
                                        str(tls.key_file) if tls.key_file else None,
                                        password="")
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            out.append(Finding(name, "failure", f"cannot load certificates or key: {err}",
                               "check mqtt.tls.ca_file, cert_file and key_file (readable by "
                               "the service user; the key unencrypted and matching the "
                               "certificate)"))
        else:
            files = [str(p) for p in (tls.ca_file, tls.cert_file, tls.key_file) if p]
            out.append(Finding(name, "ok", "loaded " + (", ".join(files) or "the system CAs")))
    elif tls.ca_file or tls.cert_file or tls.key_file:
        out.append(Finding("mqtt.tls", "warning",
                           "TLS files are set but mqtt.tls.enabled is false: they are ignored",
                           "set mqtt.tls.enabled: true (and mqtt.port: 8883) or remove them"))
    if config.sync.enabled and config.sync.ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(config.sync.ca_file))
        except (OSError, ValueError) as err:
            out.append(Finding("sync.ca_file", "failure", f"cannot load {config.sync.ca_file}: "
                               f"{err}", "point sync.ca_file at the central's CA bundle (PEM)"))
        else:
            out.append(Finding("sync.ca_file", "ok", f"loaded {config.sync.ca_file}"))
    if config.sync.enabled and config.sync.url.startswith("http://") and not _local(
            config.sync.url):
        out.append(Finding("sync.url", "warning",
                           f"{config.sync.url} is plain HTTP: batches are signed but readable "
                           "on the way", "use https:// for a central outside this network"))
    out += _web(config)
    return out


def _web(config: Config) -> list[Finding]:
    """The status page's certificate and key (loaded at start: a missing file
    stops the agent) and its users file (unreadable: nobody can log in)."""
    web = config.web
    if not web.enabled:
        return []
    out = []
    if web.tls_cert is not None and web.tls_key is not None:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(web.tls_cert), str(web.tls_key), password="")
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            out.append(Finding("web.tls", "failure",
                               f"cannot load {web.tls_cert} and {web.tls_key}: {err}",
                               "check web.tls_cert and web.tls_key (readable by the service "
                               "user; the key unencrypted and matching the certificate), or "
                               "remove both to serve plain HTTP"))
        else:
            out.append(Finding("web.tls", "ok", f"loaded {web.tls_cert}, {web.tls_key}"))
    if web.login:
        users = web.users_file or config.gateway.data_dir / "web-users.json"
        try:
            json.loads(users.read_text(encoding="utf-8"))["users"].items()
        except FileNotFoundError:
            pass  # made at the first start, with the first user
        except OSError as err:  # a folder, or not this user's to read
            out.append(Finding("web.users_file", "failure",
                               f"cannot read {users}: {err.strerror or err}",
                               f"make it readable by the service user (chown dairy-edge "
                               f"{users}), or set web.users_file"))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            out.append(Finding("web.users_file", "warning",
                               f"{users} is damaged ({err!r}): nobody can log in to the "
                               "status page", "`dairy-edge web user add NAME --role "
                               "technician` rewrites it"))
        else:
            out.append(Finding("web.users_file", "ok", f"{users} is readable"))
    return out


def _local(url: str) -> bool:
    host = url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


# -- cameras -----------------------------------------------------------------------

def _vision(config: Config) -> list[Finding]:
    """The agent runs without these (cameras never stop ingest): warnings."""
    if not config.cameras or not config.vision.enabled:
        return []
    out = []
    manifest = config.vision.models.dir / "manifest.json"
    if manifest.is_file():
        out.append(Finding("models", "ok", f"{manifest}"))
    else:
        out.append(Finding("models", "warning",
                           f"{manifest} not found: the cameras run without models",
                           "point vision.models.dir at a folder with manifest.json (the shipped "
                           "models when the key is left out)"))
    register = config.vision.eartag.herd_register
    if any(c.role == "eartag" for c in config.cameras):
        if register is None:
            out.append(Finding("herd register", "warning",
                               "no vision.eartag.herd_register: tag numbers are not checked",
                               "set vision.eartag.herd_register to the herd CSV"))
        else:
            from agent.vision.eartag.register import HerdRegister

            try:
                herd = HerdRegister.load(register)
            except ConfigError as err:
                out.append(Finding("herd register", "warning",
                                   f"{err}; the agent runs without it",
                                   "correct the file"))
            else:
                out.append(Finding("herd register", "ok", f"{len(herd)} animals in {register}"))
    for cam in config.cameras:
        if cam.calibration is not None and not cam.calibration.is_file():
            out.append(Finding(f"camera {cam.id}", "warning",
                               f"lens calibration {cam.calibration} not found; frames are "
                               "used without undistortion",
                               f"run `dairy-edge calibrate camera --camera-id {cam.id}` or "
                               "remove the key"))
    return out
