"""The commented example config, rendered from the typed tree itself.

Every key of ``Config`` appears with its description as a comment and its
default as the value, so the example cannot drift from the code:
``scripts/gen_example_config.py`` writes ``examples/dairy-edge.yaml`` and a
test fails when the file differs from what this renders.

A few values are examples rather than defaults (a farm's central, its
cameras); their comment says so and gives the default. Folders whose default
is the data shipped inside the package are left commented out: the path
differs on every machine.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from agent.config.model import BUNDLED, CameraConfig, Config

WIDTH = 92

HEADER = """\
# dairy-edge configuration: every key, its default and its description.
# Generated from the config schema by scripts/gen_example_config.py; do not edit
# by hand (tests/test_install_example_config.py checks it is in step).
#
# Every key is optional: leave out what you keep at its default. Values marked
# "example" are not defaults; their comment gives the default. Check a file with
#     dairy-edge config check FILE
# and print the JSON Schema (for editors) with `dairy-edge config schema`.
# `dairy-edge init DIR` writes a starting config for a farm.
#
# Secrets are never written here. They come from the environment or from
# systemd credentials ($CREDENTIALS_DIRECTORY/<name>):
#     DAIRY_EDGE_MQTT_PASSWORD   broker password          (credential: mqtt_password)
#     DAIRY_EDGE_HMAC_KEY        batch signing key         (credential: hmac_key)
#     DAIRY_EDGE_DB_PASSWORD     central database password (credential: db_password)
"""

# dotted key -> an example value shown instead of the default
EXAMPLES: dict[str, Any] = {
    "sync.url": "https://central.example.org/api/v1/batches",
    "central.database_url": "postgresql://dairy@127.0.0.1/dairy",
    "central.redis_url": "redis://127.0.0.1:6379/0",
}

# Cameras have no default (none); these show the three roles. The first lists
# every key; the others only what differs.
EXAMPLE_CAMERAS: list[dict[str, Any]] = [
    {"id": "lane1", "role": "eartag", "source": "opencv",
     "uri": "rtsp://viewer@192.168.1.40:554/stream2", "station": "lane1",
     "width": 1280, "height": 720, "roi": [0.0, 0.2, 1.0, 0.6]},
    {"id": "exit1", "role": "bcs", "source": "opencv",
     "uri": "rtsp://viewer@192.168.1.41:554/stream1", "station": "exit1", "fps_cap": 4.0},
    {"id": "cup1", "role": "milk", "source": "opencv", "uri": "2", "station": "stall1",
     "roi": [0.2, 0.2, 0.6, 0.6]},
]

# Runtime profiles are off by default (none); these are shown commented out after
# the empty default: a copied example must not start switching a farm's modes.
EXAMPLE_PROFILES: dict[str, Any] = {
    "milking": {
        "description": "milking: the lane and cup cameras sample faster",
        "cameras": {"lane1": {"infer_fps": 4.0}, "cup1": {"infer_fps": 4.0}},
    },
    "washing": {
        "description": "tank wash: hot water is a wash, and a cooling alert needs an hour",
        "rules": {"cooling": {"wash_detect_c": 30.0, "alerts": {"min_duration_s": 3600}}},
    },
    "night": {
        "description": "night: no cows at the lanes, their cameras rest",
        "cameras": {"lane1": {"enabled": False}, "exit1": {"enabled": False}},
    },
    "heat_wave": {
        "description": "heat wave: heat stress from THI 68, critical after 40 THI-hours",
        "rules": {"heat_stress": {"profile": "high_yield",
                                  "profiles": {"high_yield": {"load_critical_thi_h": 40.0}}}},
    },
}
EXAMPLE_SCHEDULE: list[dict[str, str]] = [
    {"at": "05:00", "profile": "milking"}, {"at": "07:30", "profile": "normal"},
    {"at": "16:00", "profile": "milking"}, {"at": "18:30", "profile": "normal"},
    {"at": "22:00", "profile": "night"},
]
COMMENTED: dict[str, Any] = {"profiles": EXAMPLE_PROFILES,
                             "profile_schedule": EXAMPLE_SCHEDULE}


def render_example(examples: dict[str, Any] | None = None,
                   cameras: list[dict[str, Any]] | None = None,
                   header: str = HEADER) -> str:
    """The whole example file. ``examples`` and ``cameras`` replace the defaults'
    examples (``dairy-edge init`` passes a farm's folders)."""
    lines = [header.rstrip("\n")]
    _model(Config(), "", 0, lines, EXAMPLES if examples is None else examples,
           EXAMPLE_CAMERAS if cameras is None else cameras)
    return "\n".join(lines).rstrip("\n") + "\n"


def _comment(text: str | None, indent: int, lines: list[str]) -> None:
    if not text:
        return
    pad = " " * indent
    for line in textwrap.wrap(" ".join(text.split()), WIDTH - indent - 2):
        lines.append(f"{pad}# {line}")


def _scalar(value: Any) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False,
                            allow_unicode=True)
    return dumped.removesuffix("\n...\n").strip()


def _description(model: type[BaseModel], name: str) -> str | None:
    info = model.model_fields[name]
    if info.description:
        return info.description
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (annotation.__doc__ or "").strip() or None
    return None


def _model(obj: BaseModel, prefix: str, indent: int, lines: list[str],
           examples: dict[str, Any], cameras: list[dict[str, Any]]) -> None:
    pad = " " * indent
    fields = type(obj).model_fields
    dumped = obj.model_dump(mode="json")
    for name in fields:
        key = f"{prefix}{name}"
        value = getattr(obj, name)
        description = _description(type(obj), name)
        if indent == 0:
            lines.append("")
        if isinstance(value, BaseModel):
            _comment(description, indent, lines)
            lines.append(f"{pad}{name}:")
            _model(value, key + ".", indent + 2, lines, examples, cameras)
        elif key == "cameras":
            _comment(f"{description} Example: three cameras, one of each role; default [].",
                     indent, lines)
            lines.append(f"{pad}{name}:")
            for index, camera in enumerate(cameras):
                _camera(CameraConfig.model_validate(camera), camera, index == 0,
                        indent + 2, lines)
        elif isinstance(value, dict) and value and all(
                isinstance(v, BaseModel) for v in value.values()):
            _comment(description, indent, lines)
            lines.append(f"{pad}{name}:")
            for entry, sub in value.items():
                lines.append(f"{pad}  {_scalar(entry)}:")
                _model(sub, f"{key}.{entry}.", indent + 4, lines, examples, cameras)
        elif key in examples:
            default = _scalar(dumped[name])
            _comment(f"{description} (Example; default: {default}.)", indent, lines)
            lines.append(f"{pad}{name}: {_scalar(examples[key])}")
        elif isinstance(value, Path) and value.is_relative_to(BUNDLED):
            _comment(f"{description} Default: the {value.name} shipped inside the package "
                     f"(<package>/{value.relative_to(BUNDLED.parent)}).", indent, lines)
            lines.append(f"{pad}# {name}: /etc/dairy-edge/{value.name}")
        elif isinstance(value, Path) and key == "gateway.calibration_dir":
            # Left out, an absent folder is fine; written in, it must exist.
            _comment(description, indent, lines)
            lines.append(f"{pad}# {name}: {value}")
        else:
            _comment(description, indent, lines)
            lines.append(f"{pad}{name}: {_scalar(dumped[name])}")
            if key in COMMENTED:
                lines.append(f"{pad}# Example (uncomment to use):")
                text = yaml.safe_dump({name: COMMENTED[key]}, sort_keys=False, width=WIDTH)
                lines.extend(f"{pad}# {line}" for line in text.splitlines())


def _camera(camera: CameraConfig, given: dict[str, Any], every_key: bool, indent: int,
            lines: list[str]) -> None:
    pad = " " * indent
    dumped = camera.model_dump(mode="json")
    first = True
    for name in CameraConfig.model_fields:
        if not every_key and name not in given:
            continue
        lead = "- " if first else "  "
        if every_key:
            _comment(CameraConfig.model_fields[name].description, indent + (0 if first else 2),
                     lines)
        lines.append(f"{pad}{lead}{name}: {_scalar(dumped[name])}")
        first = False
