"""examples/dairy-edge.yaml is generated from the config schema and stays in step:
every key of the tree is in it, with its default unless marked as an example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from agent.config.example import EXAMPLES, render_example
from agent.config.loader import load_config
from agent.config.model import CameraConfig, Config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dairy-edge.yaml"
FIX = "run scripts/gen_example_config.py after changing the config schema"


def _model_paths(obj: BaseModel, prefix: str = "") -> set[str]:
    paths = set()
    for name in type(obj).model_fields:
        value = getattr(obj, name)
        key = prefix + name
        if isinstance(value, BaseModel):
            paths |= _model_paths(value, key + ".")
        elif isinstance(value, dict) and value and all(
                isinstance(v, BaseModel) for v in value.values()):
            for entry, sub in value.items():
                paths |= _model_paths(sub, f"{key}.{entry}.")
        elif key == "cameras":
            paths |= {f"cameras.*.{f}" for f in CameraConfig.model_fields}
        else:
            paths.add(key)
    return paths


def _yaml_paths(data: Any, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        path = prefix + str(key)
        if isinstance(value, dict) and path != "detect.rules.mapping.conductivity_keys" and (
                value and all(isinstance(v, dict) for v in value.values())
                or _is_section(path)):
            paths |= _yaml_paths(value, path + ".")
        elif path == "cameras":
            for camera in value:
                paths |= _yaml_paths(camera, "cameras.*.")
        else:
            paths.add(path)
    return paths


def _is_section(path: str) -> bool:
    node: Any = Config()
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return isinstance(node, BaseModel)


def _uncommented() -> dict[str, Any]:
    """The example with its commented-out keys (package folders) switched on."""
    text = re.sub(r"^(\s*)# (\w+: /etc/dairy-edge/\S+)$", r"\1\2", EXAMPLE.read_text(),
                  flags=re.MULTILINE)
    return dict(yaml.safe_load(text))


def test_the_example_is_what_the_generator_writes() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render_example(), FIX
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_example_config.py"),
                            "--check"], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_every_key_of_the_schema_is_in_the_example() -> None:
    want = _model_paths(Config())
    have = _yaml_paths(_uncommented())
    assert want - have == set(), f"missing from the example: {sorted(want - have)}; {FIX}"
    assert have - want == set(), f"not config keys: {sorted(have - want)}"
    # the example is a valid config as it stands
    load_config(EXAMPLE)


def test_values_not_marked_as_examples_are_the_defaults() -> None:
    data = _uncommented()
    for dotted in EXAMPLES:
        section, key = dotted.split(".")
        del data[section][key]
    del data["cameras"]
    for key in ("firmware_dir", "calibration_dir"):
        del data["gateway"][key]
    del data["vision"]["models"]["dir"]
    assert Config.model_validate(data).model_dump() == Config().model_dump()
    for dotted, value in EXAMPLES.items():
        section, key = dotted.split(".")
        assert f"{key}: {value}" in EXAMPLE.read_text() and "(Example; default:" in (
            EXAMPLE.read_text())


def test_every_key_carries_its_description() -> None:
    text = EXAMPLE.read_text()
    assert "# Longest a message waits for its group commit" in text
    assert "# Run the dairy rules." in text  # the detect.rules tree is there
    assert "<unicode string>" not in text and "../shared" not in text
