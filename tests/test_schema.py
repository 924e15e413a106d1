"""Tool schemas: compiled once, checked without fetching, agreeing with the reference validator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhall_mcp._schema import SchemaValidator, check_schema

WORKERS = Path(__file__).resolve().parent.parent / "workers"


def _demo_schemas() -> list[dict[str, Any]]:
    schemas = []
    for path in sorted(WORKERS.glob("*/worker.yaml")):
        tool = yaml.safe_load(path.read_text())["tool"]
        schemas += [s for s in (tool.get("input_schema"), tool.get("output_schema")) if s]
    return schemas


DEMO_SCHEMAS = _demo_schemas()
STRICT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True},
        "mode": {"const": "fast"},
    },
    "required": ["name"],
    "additionalProperties": False,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 20) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
candidates = st.dictionaries(
    st.sampled_from(["name", "count", "tags", "mode", "text", "path", "extra"]),
    json_values | st.sampled_from(["ab", "abcdef", "Ab", 3, ["a", "b"], ["a", "a"], "fast"]),
    max_size=5,
)


def test_the_demo_workers_have_schemas_to_check() -> None:
    assert len(DEMO_SCHEMAS) >= 5


@pytest.mark.parametrize("schema", [STRICT, *DEMO_SCHEMAS], ids=lambda s: str(sorted(s)))
@settings(max_examples=150, deadline=None)
@given(instance=candidates)
def test_validity_agrees_with_the_reference_validator(
    schema: dict[str, Any], instance: dict[str, Any]
) -> None:
    ours = SchemaValidator(schema)
    reference = jsonschema.Draft202012Validator(schema).is_valid(instance)
    assert ours.is_valid(instance) is reference
    assert bool(ours.errors(instance, limit=5)) is not reference


def test_errors_name_the_path_and_stop_at_the_limit() -> None:
    validator = SchemaValidator(STRICT)
    found = validator.errors({"name": 5, "count": 42, "extra": 1}, limit=5)
    assert any(e.startswith("name: ") for e in found)
    assert any(e.startswith("count: ") for e in found)
    assert any(e.startswith("(arguments): ") and "extra" in e for e in found)
    assert len(validator.errors({"name": 5, "count": 42, "extra": 1}, limit=1)) == 1
    assert validator.errors({"name": "ok"}, limit=5) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
        {
            "type": "object",
            "$defs": {"n": {"type": "string"}},
            "properties": {"a": {"$ref": "#/$defs/n"}},
        },
    ],
)
def test_standard_drafts_and_local_references_are_accepted(schema: dict[str, Any]) -> None:
    check_schema(schema)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"$schema": "https://example.com/meta", "type": "object"}, "not a standard draft"),
        ({"$schema": 7, "type": "object"}, "not a standard draft"),
        ({"type": "object", "properties": {"a": {"$ref": "https://example.com/a"}}}, "example.com"),
        ({"type": "objekt"}, "objekt"),
    ],
)
def test_unusable_schemas_are_refused_with_a_reason(schema: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_schema(schema)
