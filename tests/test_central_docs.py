"""The protocol docs stay in step with the code (docs/openapi.yaml, docs/sync-protocol.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.central.app import HEALTH_PATH, STATS_PATH
from agent.records import protocol
from agent.records.protocol import BATCH_PATH, Batch, RecordResult, RecordStatus

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    data = yaml.safe_load((DOCS / "openapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_openapi_parses_and_names_the_endpoint(spec: dict[str, Any]) -> None:
    assert str(spec["openapi"]).startswith("3.1")
    post = spec["paths"][BATCH_PATH]["post"]
    assert set(post["responses"]) >= {"200", "400", "401", "409", "413", "503"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    header_names = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert {protocol.HEADER_KEY_ID, protocol.HEADER_SIGNATURE,
            protocol.HEADER_BATCH_ID} <= header_names
    ok_headers = set(post["responses"]["200"]["headers"])
    assert {protocol.HEADER_SERVER_TIME, protocol.HEADER_BATCH_OUTCOME} <= ok_headers
    assert {HEALTH_PATH, STATS_PATH} <= set(spec["paths"])


def test_openapi_names_every_record_status(spec: dict[str, Any]) -> None:
    enum = spec["components"]["schemas"]["RecordStatus"]["enum"]
    assert sorted(enum) == sorted(status.value for status in RecordStatus)


def test_openapi_schemas_match_the_protocol_models(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert set(schemas["Batch"]["properties"]) == set(Batch.model_fields)
    required = {name for name, field in Batch.model_fields.items() if field.is_required()}
    assert set(schemas["Batch"]["required"]) == required
    assert set(schemas["RecordResult"]["properties"]) == set(RecordResult.model_fields)
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_protocol_doc_covers_statuses_headers_and_rules() -> None:
    text = (DOCS / "sync-protocol.md").read_text(encoding="utf-8")
    for status in RecordStatus:
        assert f"`{status.value}`" in text, status
    for header in (protocol.HEADER_KEY_ID, protocol.HEADER_SIGNATURE, protocol.HEADER_BATCH_ID,
                   "Retry-After", "Content-Encoding"):
        assert header in text, header
    for code in ("401", "409", "413", "503"):
        assert code in text
    assert BATCH_PATH in text
