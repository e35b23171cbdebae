"""One typed configuration tree, loaded from YAML, secrets from the environment."""

from agent.config.loader import load_config, schema
from agent.config.model import (
    CentralConfig,
    Config,
    DetectConfig,
    GatewayConfig,
    MqttConfig,
    StoreConfig,
    SyncConfig,
    WebConfig,
)
from agent.config.secrets import read_secret

__all__ = [
    "CentralConfig",
    "Config",
    "DetectConfig",
    "GatewayConfig",
    "MqttConfig",
    "StoreConfig",
    "SyncConfig",
    "WebConfig",
    "load_config",
    "read_secret",
    "schema",
]
