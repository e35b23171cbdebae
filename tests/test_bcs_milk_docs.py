"""docs/openapi.yaml and docs/sync-protocol.md name every record kind the receiver
takes, and the body condition and milk check schemas match the validation models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.central.validate import KINDS, BodyConditionIn, MilkCheckIn, _Common
from agent.records import MILK_CLASSES, QUARTERS, RecordKind

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    spec = yaml.safe_load((DOCS / "openapi.yaml").read_text(encoding="utf-8"))
    return dict(spec["components"]["schemas"])


def test_every_kind_is_documented(schemas: dict[str, Any]) -> None:
    assert set(schemas["Record"]["properties"]["kind"]["enum"]) == {str(k) for k in RecordKind}
    assert set(KINDS) == {str(k) for k in RecordKind}
    text = (DOCS / "sync-protocol.md").read_text(encoding="utf-8")
    schema = text[text.index("## 7. Central schema"):text.index("## 8.")]
    for kind, spec in KINDS.items():
        assert f"| `{kind}` |" in text, kind  # the kind-specific fields
        assert f"`{spec.table}`" in schema, spec.table


@pytest.mark.parametrize(("name", "model"), [("BodyCondition", BodyConditionIn),
                                             ("MilkCheck", MilkCheckIn)])
def test_schema_fields_match_the_model(
    schemas: dict[str, Any], name: str, model: type[_Common]
) -> None:
    own = schemas[name]["allOf"][1]
    common = set(_Common.model_fields)
    fields = {n: f for n, f in model.model_fields.items() if n not in common}
    assert set(own["properties"]) - {"kind"} == set(fields)
    assert set(own["required"]) == {n for n, f in fields.items() if f.is_required()}


def test_milk_classes_and_quarters_match(schemas: dict[str, Any]) -> None:
    assert schemas["MilkClass"]["enum"] == list(MILK_CLASSES)
    quarter = schemas["MilkCheck"]["allOf"][1]["properties"]["quarter"]["enum"]
    assert quarter == [*QUARTERS, None]
