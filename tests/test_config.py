"""The typed config tree: defaults, errors that name file and key, secrets, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.cli.main import main
from agent.config import load_config, read_secret, schema
from agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_valid_and_derive_paths() -> None:
    config = load_config()
    assert config.store_path == config.gateway.data_dir / "buffer.db"
    assert config.mqtt_client_id == f"dairy-edge-{config.gateway.id}"


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "examples" / "dairy-edge.yaml")
    assert config.central.database_url.startswith("postgresql://")


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("mqtt:\n  hots: broker.local\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "mqtt.hots: unknown key" in str(err.value)


def test_bad_type_and_bounds_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("mqtt:\n  port: abc\nstore:\n  commit_interval_ms: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "2 problem(s)" in message
    assert "mqtt.port" in message and "store.commit_interval_ms" in message


def test_secret_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("mqtt:\n  password: hunter2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "DAIRY_EDGE_MQTT_PASSWORD" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_unsafe_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("gateway:\n  id: '../etc'\n")
    with pytest.raises(ConfigError, match="gateway.id"):
        load_config(path)


@pytest.mark.parametrize("text", ["- a list\n", "mqtt: [unclosed\n"])
def test_not_a_mapping_or_not_yaml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_secrets_from_env_then_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAIRY_EDGE_HMAC_KEY", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("hmac_key") is None
    (tmp_path / "hmac_key").write_text("from-credential\n")
    assert read_secret("hmac_key") == "from-credential"
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "from-env")
    assert read_secret("hmac_key") == "from-env"


def test_every_field_in_the_schema_has_a_description_or_is_a_section() -> None:
    defs: dict[str, Any] = schema()["$defs"]
    missing = [
        f"{name}.{field}"
        for name, model in defs.items()
        for field, spec in model.get("properties", {}).items()
        if "description" not in spec and "$ref" not in spec and "allOf" not in spec
    ]
    assert not missing, f"fields without a description: {missing}"


def test_cli_config_check_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAIRY_EDGE_HMAC_KEY", "k" * 32)  # config check wants the secrets too
    good = tmp_path / "good.yaml"
    good.write_text(f"gateway:\n  id: barn-7\n  data_dir: {tmp_path / 'data'}\n")
    assert main(["config", "check", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("sync:\n  max_attempts: -1\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "sync.max_attempts" in capsys.readouterr().err
