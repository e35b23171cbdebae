"""Load the YAML file into the typed tree, with errors that name file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent.config.model import Config
from agent.errors import ConfigError


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The config in ``path`` (defaults when None), with ``overrides`` merged on top."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{source}: cannot read config file: {err.strerror}") from err
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(yaml_problem(source, err)) from err
        if loaded is None:
            raise ConfigError(
                f"{source}: the file is empty (or only comments); an empty config runs "
                "nothing the farm set up. Write at least one section: `dairy-edge init DIR` "
                "writes a starting config, examples/dairy-edge.yaml lists every key"
            )
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
        data = loaded
    if overrides:
        data = _merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(source, err)) from err


def yaml_problem(source: str, err: yaml.YAMLError) -> str:
    """A YAML error as `FILE:LINE:COLUMN: problem`, naming the file (PyYAML,
    reading a string, would say ``<unicode string>``)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    text = f"{where}: not valid YAML: {problem}"
    if context:
        text += f" ({context})"
    if mark is not None:
        snippet = mark.get_snippet()
        if snippet:
            text += "\n" + snippet
    return text


def schema() -> dict[str, Any]:
    """JSON Schema of the whole tree, for editors and `dairy-edge config schema`."""
    return Config.model_json_schema()


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_SECRET_HINTS = {
    "password": "DAIRY_EDGE_MQTT_PASSWORD (or DAIRY_EDGE_DB_PASSWORD)",
    "hmac_key": "DAIRY_EDGE_HMAC_KEY",
    "key": "DAIRY_EDGE_HMAC_KEY",
    "secret": "DAIRY_EDGE_HMAC_KEY",
    "db_password": "DAIRY_EDGE_DB_PASSWORD",
}


def _describe(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the configuration:"]
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "<top>"
        leaf = str(problem["loc"][-1]) if problem["loc"] else ""
        if problem["type"] == "extra_forbidden" and leaf in _SECRET_HINTS:
            lines.append(
                f"  {key}: secrets are never read from the config file; "
                f"set {_SECRET_HINTS[leaf]} or use a systemd credential"
            )
        elif problem["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see `dairy-edge config schema`)")
        else:
            lines.append(f"  {key}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)
