"""Home Assistant MQTT discovery: the gateway's health, sync backlog, open
alerts, bulk tank temperatures and barn climate appear in a farm's Home
Assistant with no configuration there (off by default: ``homeassistant.enabled``).

Messages, all retained, QoS 1:

    <discovery>/binary_sensor/dairy_edge_<gw>/health/config      device class "problem"
    <discovery>/sensor/dairy_edge_<gw>/<entity>/config           one per entity
    <status_prefix>/<gw>/homeassistant                           one JSON state for all

Every entity reads its value from the one state message with a template over
a key this module makes safe (``[a-z0-9_]``); ids from the wire go only into
JSON strings (names, attributes), never into topics or templates unsanitised.
The agent's availability topic (``online``, or ``offline`` as its last will)
makes every entity unavailable when the agent is gone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from agent.web.display import GROUPS
from agent.web.view import open_alerts

_UNSAFE = re.compile(r"[^a-z0-9_]+")
# firmware group -> (field, name, device class, unit)
_MEASURED = {
    "tank": (("milk_temp_c", "milk temperature", "temperature", "°C"),),
    "climate": (("temperature_c", "temperature", "temperature", "°C"),
                ("humidity_pct", "humidity", "humidity", "%")),
}
MAX_ALERTS = 20


def slug(text: str) -> str:
    """A safe topic level and template key for any id (a short hash keeps two
    ids that differ only in unsafe characters apart)."""
    clean = _UNSAFE.sub("_", text.lower()).strip("_")[:40] or "x"
    if clean != text:
        clean += "_" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return clean


class Discovery:
    """Builds discovery configs (each entity once per broker connection) and states."""

    def __init__(self, gateway_id: str, version: str, discovery_prefix: str,
                 state_topic: str, availability_topic: str) -> None:
        self.node = f"dairy_edge_{slug(gateway_id)}"
        self.prefix = discovery_prefix
        self.state_topic = state_topic
        self.device = {"identifiers": [self.node], "name": f"dairy-edge {gateway_id}",
                       "manufacturer": "dairy-edge", "model": "gateway",
                       "sw_version": version}
        self.availability = availability_topic
        self.announced: set[str] = set()

    def forget(self) -> None:
        """Announce everything again (a new broker connection: it may have lost them)."""
        self.announced.clear()

    def _config(self, component: str, key: str, name: str, template: str,
                **extra: Any) -> tuple[str, bytes]:
        payload = {
            "name": name, "unique_id": f"{self.node}_{key}", "object_id": f"{self.node}_{key}",
            "state_topic": self.state_topic, "value_template": template,
            "availability_topic": self.availability, "payload_available": "online",
            "payload_not_available": "offline", "device": self.device, **extra,
        }
        topic = f"{self.prefix}/{component}/{self.node}/{key}/config"
        return topic, json.dumps(payload, ensure_ascii=False).encode()

    def messages(self, status: Mapping[str, Any], reasons: list[str]
                 ) -> list[tuple[str, bytes]]:
        """New discovery configs, then the state; publish each retained."""
        configs = [
            self._config("binary_sensor", "health", "health", "{{ value_json.problem }}",
                         device_class="problem", payload_on="ON", payload_off="OFF",
                         json_attributes_topic=self.state_topic,
                         json_attributes_template="{{ {'reasons': value_json.reasons}"
                                                  " | tojson }}"),
            self._config("sensor", "backlog", "sync backlog", "{{ value_json.backlog }}",
                         unit_of_measurement="records", state_class="measurement",
                         icon="mdi:cloud-upload"),
            self._config("sensor", "open_alerts", "open alerts", "{{ value_json.open_alerts }}",
                         state_class="measurement", icon="mdi:cow",
                         json_attributes_topic=self.state_topic,
                         json_attributes_template="{{ {'alerts': value_json.alerts}"
                                                  " | tojson }}"),
        ]
        values: dict[str, float] = {}
        for sensor in status.get("sensors") or []:
            group = GROUPS.get(str(sensor.get("firmware") or ""))
            sid = str(sensor.get("sensor_id") or "")
            for field, what, device_class, unit in _MEASURED.get(group or "", ()):
                value = (sensor.get("values") or {}).get(field)
                if not isinstance(value, int | float) or not sid:
                    continue
                key = f"{slug(sid)}_{field}"
                values[key] = round(float(value), 2)
                configs.append(self._config(
                    "sensor", key, f"{sid} {what}", f"{{{{ value_json['values']['{key}'] }}}}",
                    device_class=device_class, unit_of_measurement=unit,
                    state_class="measurement"))
        out = [(topic, body) for topic, body in configs if topic not in self.announced]
        self.announced.update(topic for topic, _ in out)
        alerts = _open(status)
        state = {
            "problem": "ON" if reasons else "OFF", "reasons": reasons[:10],
            "backlog": status.get("backlog", 0), "open_alerts": len(alerts),
            "alerts": alerts[:MAX_ALERTS], "values": values,
        }
        out.append((self.state_topic, json.dumps(state, ensure_ascii=False).encode()))
        return out


def _open(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"rule": a["rule"], "severity": a["severity"], "subject": a["subject"],
             "message": a["message"], "acknowledged": a["acknowledged"]}
            for a in open_alerts(status)]
