"""domain/event_schemas.py: which JSON Schemas an event type may carry, and how a payload's mismatches read."""

from __future__ import annotations

from typing import Any

import pytest

from webhookd.domain.event_schemas import DIALECT, ROOT, compile_schema, pointer, schema_violations

ORDER = {
    "type": "object",
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
        "a/b~c": {"type": "string"},
    },
    "required": ["amount"],
    "$defs": {"line": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}},
}


def test_a_2020_12_schema_with_local_references_is_accepted() -> None:
    assert schema_violations(ORDER, "schema") == []
    assert schema_violations(ORDER | {"$schema": DIALECT}, "schema") == []


def test_each_mismatch_is_named_by_its_json_pointer() -> None:
    mismatches = compile_schema(ORDER).mismatches({"amount": -5, "lines": [{"sku": "x"}, {}], "a/b~c": 1})

    assert mismatches == [
        "/a~1b~0c: 1 is not of type 'string'",
        "/amount: -5 is less than the minimum of 0",
        "/lines/1: 'sku' is a required property",
    ]


def test_a_missing_property_is_reported_at_its_parent_and_a_match_reports_nothing() -> None:
    schema = compile_schema(ORDER)

    assert schema.mismatches({}) == [f"{ROOT}: 'amount' is a required property"]
    assert schema.mismatches({"amount": 3, "lines": []}) == []


def test_pointers_escape_slash_and_tilde_as_rfc_6901_says() -> None:
    assert pointer(["a/b", "~", 0]) == "/a~1b/~0/0"
    assert pointer([]) == ROOT


@pytest.mark.parametrize(
    ("schema", "field", "words"),
    [
        ([{"type": "object"}], "schema", "must be a JSON Schema object"),
        ({"type": "objekt"}, "schema", "/type"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "schema.$schema", "2020-12"),
        ({"$ref": "#/$defs/missing"}, "schema", "points at nothing"),
        ({"$ref": "https://schemas.example/order.json"}, "schema", "never fetched"),
    ],
)
def test_schemas_that_cannot_be_applied_are_refused_saying_why(schema: Any, field: str, words: str) -> None:
    [violation] = schema_violations(schema, "schema")

    assert violation.field == field
    assert words in violation.description


def test_references_to_ids_the_schema_declares_and_to_the_meta_schema_resolve() -> None:
    declared = {
        "$id": "https://schemas.example/order",
        "$defs": {"sku": {"$id": "sku.json", "type": "string"}},
        "properties": {"sku": {"$ref": "sku.json"}, "meta": {"$ref": DIALECT}},
    }

    assert schema_violations(declared, "schema") == []


def test_a_ref_inside_data_is_data_not_a_reference() -> None:
    assert schema_violations({"const": {"$ref": "nowhere"}}, "schema") == []


def test_format_is_an_annotation_not_an_assertion() -> None:
    schema = compile_schema({"properties": {"at": {"type": "string", "format": "date-time"}}})

    assert schema.mismatches({"at": "not a date"}) == []
