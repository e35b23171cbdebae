"""``dairy-edge init DIR``: a starting config and the farm's own copies of the
shipped firmware formats and a sample calibration, to edit.

    DIR/dairy-edge.yaml             the starting config (the keys a farm sets)
    DIR/dairy-edge.example.yaml     every key with its default and description
    DIR/firmware_configs/*.yaml     the shipped sensor formats (gateway.firmware_dir)
    DIR/calibration/                per-device corrections (gateway.calibration_dir):
        barn.yaml.sample            the shipped sample, dates relative to today; not
                                    loaded until renamed to *.yaml
        cameras/                    lens calibrations (dairy-edge calibrate camera)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from agent.config.loader import load_config
from agent.errors import ConfigError
from agent.runtime.sample_data import CALIBRATION, EXAMPLES, copy_calibration, copy_firmware

CONFIG_TEMPLATE = """\
# dairy-edge starting config for gateway {gateway_id}, written by `dairy-edge init`.
# Every key is optional; dairy-edge.example.yaml beside this file lists them all
# with their defaults. Check this file with `dairy-edge config check {config}`
# and the whole gateway with `dairy-edge doctor --config {config}`.
#
# Secrets never go here: the HMAC key and the broker password are systemd
# credentials (/etc/dairy-edge/credentials/hmac_key, .../mqtt_password) or the
# environment variables DAIRY_EDGE_HMAC_KEY and DAIRY_EDGE_MQTT_PASSWORD.

gateway:
  id: {gateway_id}
  data_dir: {data_dir}
  # This farm's copies: edit them, they are not replaced by an upgrade.
  firmware_dir: {firmware_dir}
  calibration_dir: {calibration_dir}

mqtt:
  host: {mqtt_host}
  port: {mqtt_port}
  username: {mqtt_username}
  topics: ["barn/#"]

sync:
  # The central receiver's batch URL, and the id of this gateway's key there
  # (`dairy-edge central keys add {gateway_id}` prints both ends).
  enabled: {sync_enabled}
  url: {central_url}
  key_id: {key_id}

web:
  host: 0.0.0.0
  port: 8080

# Cameras: see dairy-edge.example.yaml (cameras:) and docs/vision.md.
cameras: []
"""


def add_init_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = sub.add_parser(
        "init",
        help="write a starting config and the farm's copies of firmware and calibration files",
        description="Write DIR/dairy-edge.yaml (a starting config), DIR/dairy-edge.example.yaml "
        "(every key), DIR/firmware_configs/ (the shipped sensor formats) and DIR/calibration/ "
        "(a sample, not active until renamed to *.yaml) for a farm to edit. Existing files "
        "are kept unless --force. On a gateway DIR is /etc/dairy-edge.",
    )
    init.add_argument("dir", type=Path, help="the folder to write into (made if missing)")
    init.add_argument("--gateway-id", default="gw-01", help="this gateway's id (default gw-01)")
    init.add_argument("--data-dir", type=Path, default=Path("/var/lib/dairy-edge"),
                      help="where the buffer lives (default /var/lib/dairy-edge, the "
                      "service's StateDirectory)")
    init.add_argument("--mqtt-host", default="127.0.0.1",
                      help="the farm's broker (default 127.0.0.1)")
    init.add_argument("--mqtt-port", type=int, default=1883, help="broker port (default 1883)")
    init.add_argument("--mqtt-username", default=None,
                      help="broker user (its password is the mqtt_password credential)")
    init.add_argument("--central-url", default=None,
                      help="central's batch URL, e.g. https://central.example.org/api/v1/batches "
                      "(default: sync off until you set it)")
    init.add_argument("--key-id", default=None,
                      help="the id of this gateway's key at central (default: the gateway id)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    config = folder / "dairy-edge.yaml"
    example = folder / "dairy-edge.example.yaml"
    firmware = folder / "firmware_configs"
    calibration = folder / "calibration"
    targets = [config, firmware, calibration]
    existing = [p for p in targets if p.exists()]
    if existing and not args.force:
        print(f"dairy-edge init: {', '.join(map(str, existing))} already there; nothing "
              "written. Use --force to overwrite (your edits are lost).", file=sys.stderr)
        return 1
    values = {
        "gateway_id": args.gateway_id, "data_dir": args.data_dir,
        "firmware_dir": firmware, "calibration_dir": calibration,
        "mqtt_host": args.mqtt_host, "mqtt_port": args.mqtt_port,
        "mqtt_username": args.mqtt_username, "sync_enabled": bool(args.central_url),
        "central_url": args.central_url or "https://central.example.org/api/v1/batches",
        "key_id": args.key_id or args.gateway_id,
    }
    text = CONFIG_TEMPLATE.format(
        config=config, **{k: _yaml_value(v) for k, v in values.items()})
    _check_loads(text, config)  # before anything is written (a bad --gateway-id, say)
    made_folder = not folder.exists()
    had_example = example.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if args.force:
            for path in (firmware, calibration):
                shutil.rmtree(path, ignore_errors=True)
        written = copy_firmware(firmware)
        written += _sample_calibration(calibration)
        config.write_text(text, encoding="utf-8")
        shutil.copyfile(EXAMPLES / "dairy-edge.yaml", example)
        written += [config, example]
    except BaseException:
        # Half a farm folder is worse than none: take back what this run wrote.
        for path in (firmware, calibration):
            shutil.rmtree(path, ignore_errors=True)
        config.unlink(missing_ok=True)
        if not had_example:
            example.unlink(missing_ok=True)
        if made_folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for path in written:
        print(f"  wrote {path}")
    print(f"\nNext: edit {config}, put the secrets in place, then\n"
          f"  dairy-edge config check {config}\n"
          f"  dairy-edge doctor --config {config}")
    return 0


def _yaml_value(value: Any) -> str:
    """``value`` as a YAML scalar that reads back as itself: ``gw #1`` stays
    ``gw #1`` (unquoted, YAML reads ``gw`` and a comment)."""
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump({"v": value}, width=1 << 20, allow_unicode=True)
    if "\n" in text.rstrip("\n"):  # a multi-line value: one double-quoted line instead
        text = yaml.safe_dump({"v": value}, width=1 << 20, default_style='"')
        return text.split(": ", 1)[1].rstrip("\n")
    return text[len("v: "):].rstrip("\n")


def _check_loads(text: str, config: Path) -> None:
    """ConfigError, naming ``config``, when ``text`` is not a valid config."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / config.name
        probe.write_text(text, encoding="utf-8")
        try:
            load_config(probe)
        except ConfigError as err:
            raise ConfigError(str(err).replace(str(probe), str(config))
                              + "\n(check the options given to dairy-edge init; nothing "
                              "was written)") from err


def _sample_calibration(dest: Path) -> list[Path]:
    """The shipped calibration as ``*.yaml.sample``: a farm's sensors must not get
    the sample's corrections by accident; renaming a file to ``.yaml`` makes it active."""
    staged = copy_calibration(dest, source=CALIBRATION)
    out = []
    for path in staged:
        if path.suffix == ".yaml" and path.parent == dest:
            sample = path.with_name(path.name + ".sample")
            path.rename(sample)
            out.append(sample)
        else:
            out.append(path)
    return out
