"""domain/event_schemas.py: which JSON Schemas an event type may carry, and how a payload's mismatches read."""

from __future__ import annotations

from typing import Any

import pytest

from webhookd.domain import event_schemas
from webhookd.domain.event_schemas import (
    DIALECT,
    ROOT,
    SCHEMA_MAX_PATTERN_CHARS,
    SCHEMA_MAX_PATTERNS,
    SCHEMA_MAX_SUBSCHEMAS,
    Unevaluable,
    compile_schema,
    pointer,
    schema_violations,
)
from webhookd.domain.schema_keywords import PATTERN_MAX_ITEMS

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


# -- schemas that could never be applied are refused when written ---------------------------------------

TREE = {"$defs": {"node": {"type": "object", "properties": {"children": {"items": {"$ref": "#/$defs/node"}}}}}}


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"$defs": {"a": {"type": "object", "allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
        {"anyOf": [{"type": "string"}, {"$ref": "#"}]},  # only values other than strings go round
    ],
)
def test_refs_that_loop_without_going_into_the_payload_are_refused(schema: Any) -> None:
    [violation] = schema_violations(schema, "event_type.schema")

    assert violation.field == "event_type.schema"
    assert "loop back without going into any part of the payload" in violation.description


def test_schemas_that_recurse_through_the_payload_are_accepted_and_applied() -> None:
    tree = TREE | {"$ref": "#/$defs/node"}
    linked = {"properties": {"next": {"$ref": "#"}, "value": {"type": "integer"}}}
    deep: dict[str, Any] = {"value": 1}
    for _ in range(90):
        deep = {"next": deep, "value": 1}

    assert schema_violations(tree, "schema") == [] and schema_violations(linked, "schema") == []
    assert compile_schema(tree).mismatches({"children": [{"children": [1]}]}) == [
        "/children/0/children/0: 1 is not of type 'object'"
    ]
    assert compile_schema(linked).mismatches(deep) == []


@pytest.mark.parametrize(
    ("schema", "looping"),
    [
        ({"if": {"const": 42}, "then": {"$ref": "#"}}, 42),
        ({"properties": {"x": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}}, {"x": 1}),
    ],
)
def test_a_loop_no_probe_reaches_is_unevaluable_when_applied_not_a_recursion_error(schema: Any, looping: Any) -> None:
    """Loops only some payloads lead into pass the probes (as do loops stored before they were checked)."""
    compiled = compile_schema(schema)

    assert schema_violations(schema, "schema") == []
    assert compiled.mismatches({"y": 42}) == []
    with pytest.raises(Unevaluable, match="loop back"):
        compiled.mismatches(looping)


@pytest.mark.parametrize(
    ("schema", "where", "regex"),
    [
        ({"properties": {"s": {"type": "string", "pattern": "("}}}, "/properties/s/pattern", "'('"),
        ({"items": {"pattern": "["}}, "/items/pattern", "'['"),
        ({"$defs": {"k": {"patternProperties": {"a": {}, "b[": {}}}}}, "/$defs/k/patternProperties", "'b['"),
        ({"propertyNames": {"pattern": "a{2,1}"}}, "/propertyNames/pattern", "'a{2,1}'"),
    ],
)
def test_patterns_that_do_not_compile_are_refused_at_their_pointer(schema: Any, where: str, regex: str) -> None:
    [violation] = schema_violations(schema, "event_type.schema")

    assert violation.field == "event_type.schema"
    assert violation.description.startswith(f"{where}: {regex} is not a regular expression the server can run: ")


def test_a_pattern_inside_data_is_data_not_a_regex() -> None:
    assert schema_violations({"const": {"pattern": "("}, "examples": [{"patternProperties": {"[": 1}}]}, "schema") == []


def test_a_pattern_stored_before_it_was_refused_is_unevaluable_not_a_regex_error() -> None:
    schema = compile_schema({"properties": {"s": {"pattern": "("}}})

    with pytest.raises(Unevaluable, match="'\\(' does not compile"):
        schema.mismatches({"s": "x"})


@pytest.mark.parametrize(
    ("schema", "where", "regex"),
    [
        ({"properties": {"s": {"pattern": "(a{1000}){1000}"}}}, "/properties/s/pattern", "'(a{1000}){1000}'"),
        ({"patternProperties": {"^(?:[a-z]{2}){501}$": {}}}, "/patternProperties", "'^(?:[a-z]{2}){501}$'"),
        ({"propertyNames": {"pattern": f"x{{{PATTERN_MAX_ITEMS + 1}}}"}}, "/propertyNames/pattern", "'x{1001}'"),
    ],
)
def test_patterns_whose_counted_repeats_unroll_past_the_limit_are_refused_uncompiled(
    schema: Any, where: str, regex: str
) -> None:
    """`regex` compiles x{n} as n copies of x, so nested counts multiply: (a{1000}){1000} took 276 MB and
    0.7 s to compile, and a few more digits took all the memory there was."""
    [violation] = schema_violations(schema, "event_type.schema")

    assert violation.field == "event_type.schema"
    assert violation.description.startswith(f"{where}: {regex} is not a regular expression the server can run: ")
    assert f"more than {PATTERN_MAX_ITEMS} items" in violation.description


@pytest.mark.parametrize(
    "pattern",
    [
        f"x{{{PATTERN_MAX_ITEMS}}}",
        "^[a-f0-9]{64}$",
        "^[a-z]{1,255}$",
        "^.{0,100000}$",
        "^\\p{Lu}{2}(?<rest>-\\d{4})?$",
        "(?:a{0,1000}){0,1000}",
    ],
)
def test_patterns_within_the_limit_are_accepted(pattern: str) -> None:
    assert schema_violations({"properties": {"s": {"pattern": pattern}}}, "schema") == []


def test_a_pattern_stored_before_its_size_was_refused_is_unevaluable_and_never_compiled() -> None:
    schema = compile_schema({"properties": {"s": {"pattern": "(a{1000}){1000}"}}})

    with pytest.raises(Unevaluable, match=f"more than {PATTERN_MAX_ITEMS} items"):
        schema.mismatches({"s": "x"})


def _properties(count: int, subschema: Any) -> dict[str, Any]:
    """An object schema with `count` properties, each `subschema`: count + 1 subschemas in all."""
    return {"type": "object", "properties": {f"p{i}": subschema for i in range(count)}}


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (_properties(SCHEMA_MAX_SUBSCHEMAS, {}), f"holds {SCHEMA_MAX_SUBSCHEMAS + 1} subschemas"),
        ({"allOf": [True] * SCHEMA_MAX_SUBSCHEMAS}, f"holds {SCHEMA_MAX_SUBSCHEMAS + 1} subschemas"),
        (_properties(SCHEMA_MAX_PATTERNS + 1, {"pattern": "^a$"}), f"holds {SCHEMA_MAX_PATTERNS + 1} regexes"),
        ({"patternProperties": {f"^p{i}$": {} for i in range(SCHEMA_MAX_PATTERNS + 1)}}, "regexes"),
        ({"properties": {"s": {"pattern": "a" * (SCHEMA_MAX_PATTERN_CHARS + 1)}}}, "regexes total"),
    ],
)
def test_a_schema_too_large_to_check_cheaply_is_refused_before_it_is_checked(
    schema: Any, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a schema costs about 0.3 ms of CPU per subschema and up to tens of microseconds per
    regex character: 64 KiB of them took seconds. Counted first, refused without the costly checks."""

    class Unreachable:
        def iter_errors(self, schema: Any) -> Any:
            raise AssertionError("the meta-schema was consulted for a schema over the limits")

    monkeypatch.setattr(event_schemas, "_META_VALIDATOR", Unreachable())

    [violation] = schema_violations(schema, "event_type.schema")

    assert violation.field == "event_type.schema"
    assert words in violation.description
    assert "the limit is" in violation.description


def test_a_schema_at_the_limits_is_accepted() -> None:
    each = SCHEMA_MAX_PATTERN_CHARS // SCHEMA_MAX_PATTERNS
    regexes = {f"p{i}": {"pattern": "a" * each} for i in range(SCHEMA_MAX_PATTERNS)}
    fill = {f"f{i}": {} for i in range(SCHEMA_MAX_SUBSCHEMAS - SCHEMA_MAX_PATTERNS - 1)}
    schema = {"properties": regexes | fill}

    assert schema_violations(schema, "schema") == []


def test_schemas_outside_the_subschema_keywords_are_not_counted() -> None:
    """`default`, `examples`, `enum` and unknown keywords hold data, which the meta-schema does not check."""
    data = [{"type": "object"}] * (SCHEMA_MAX_SUBSCHEMAS + 1)
    schema = {"type": "array", "default": data, "examples": [data], "x-catalog": {"all": data}}

    assert schema_violations(schema, "schema") == []
