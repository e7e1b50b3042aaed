"""domain/schema_keywords.py: regexes a tenant's schema brings run on `regex` within a budget, and the
replaced keywords judge payloads as jsonschema's own do."""

from __future__ import annotations

from typing import Any

import jsonschema._utils
import pytest
from jsonschema import Draft202012Validator

from webhookd.domain import schema_keywords
from webhookd.domain.event_schemas import Unevaluable, compile_schema, schema_violations

HOSTILE = "^(a|a)*$"  # exponential on backtracking engines, `re` and `regex` alike
VICTIM = "a" * 26 + "!"  # before the budget: about 6 s of `re`, with the GIL held


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        ({"properties": {"s": {"type": "string", "pattern": HOSTILE}}}, {"s": VICTIM}),
        ({"patternProperties": {HOSTILE: {}}}, {VICTIM: 1}),
        ({"patternProperties": {HOSTILE: {}}, "additionalProperties": False}, {VICTIM: 1}),
        ({"patternProperties": {HOSTILE: {}}, "unevaluatedProperties": False}, {VICTIM: 1}),
        ({"propertyNames": {"pattern": HOSTILE}}, {VICTIM: 1}),
    ],
)
def test_a_catastrophic_regex_runs_out_of_its_budget_instead_of_stalling(schema: Any, payload: Any) -> None:
    assert schema_violations(schema, "schema") == []  # nothing about the pattern itself gives it away

    with pytest.raises(Unevaluable, match=r"matching '\^\(a\|a\)\*\$' ran out of the regex budget"):
        compile_schema(schema).mismatches(payload)


def test_one_validation_draws_on_one_budget() -> None:
    with schema_keywords.validation_budget(None, 0.0), pytest.raises(schema_keywords.RegexBudgetSpent):
        schema_keywords.search("a", "a")
    with schema_keywords.validation_budget(None, 1.0):
        assert schema_keywords.search("a", "ba") and not schema_keywords.search("^a", "ba")


def nested(depth: int, innermost: Any) -> Any:
    for _ in range(depth):
        innermost = [innermost]
    return innermost


BRANCH = {"type": "array", "items": {"$ref": "#/$defs/nested"}}
TWO_DESCENDING_BRANCHES = {"$defs": {"nested": {"anyOf": [BRANCH, BRANCH]}}, "$ref": "#/$defs/nested"}


def test_alternatives_that_each_descend_run_out_of_steps_instead_of_stalling() -> None:
    """Both branches fail only at the innermost value: 2^depth evaluations (depth 12: ~0.7 s before)."""
    schema = compile_schema(TWO_DESCENDING_BRANCHES)

    with pytest.raises(Unevaluable, match="evaluated more times than this payload's budget allows"):
        schema.mismatches(nested(12, "x"))


def test_the_step_budget_grows_with_the_payload() -> None:
    """Real schemas take a step or two a value: thousands of values, one wrong, are judged as before."""
    item = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer", "minimum": 0}}}
    alternatives = {"oneOf": [item, {"type": "string"}]}
    schema = compile_schema({"type": "array", "items": alternatives})
    payload: list[Any] = [{"a": n} for n in range(5_000)] + ["x", {"a": -1}]

    assert schema.mismatches(payload) == [f"/{5_001}: {{'a': -1}} is not valid under any of the given schemas"]
    assert schema_keywords.count_values(payload) == 1 + 5_000 * 2 + 2 + 1


def test_patterns_read_unicode_properties_as_ecma_262_does() -> None:
    schema = {"properties": {"name": {"type": "string", "pattern": "^\\p{L}+$"}}}

    assert schema_violations(schema, "schema") == []
    assert compile_schema(schema).mismatches({"name": "Zoë"}) == []
    assert compile_schema(schema).mismatches({"name": "Zoë1"}) == ["/name: 'Zoë1' does not match '^\\\\p{L}+$'"]


OBJECTS = [{}, {"id": 1}, {"x_a": 1}, {"x_a": "s", "y": 2}, {"id": "1", "x_b": 2, "z": None}]


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"id": {"type": "integer"}}, "patternProperties": {"^x_": {"type": "integer"}}},
        {"properties": {"id": {}}, "patternProperties": {"^x_": {}}, "additionalProperties": False},
        {"patternProperties": {"^x_": {}, "^y": {}}, "additionalProperties": {"type": "integer"}},
        {"properties": {"id": {}}, "additionalProperties": False},
        {"allOf": [{"properties": {"id": {}}}, {"patternProperties": {"^x_": {}}}], "unevaluatedProperties": False},
        {
            "$defs": {"x": {"patternProperties": {"^x_": {"type": "integer"}}}},
            "$ref": "#/$defs/x",
            "if": {"required": ["id"]},
            "then": {"properties": {"z": {}}},
            "unevaluatedProperties": {"type": "integer"},
        },
        {"anyOf": [{"patternProperties": {"^y": {}}}, {"properties": {"id": {}}}], "unevaluatedProperties": False},
    ],
)
def test_the_replaced_keywords_find_what_jsonschemas_own_find(schema: dict[str, Any]) -> None:
    stock = Draft202012Validator(schema)
    ours = compile_schema(schema)

    for payload in OBJECTS:
        expected = sorted(f"{list(e.absolute_path)}: {e.message}" for e in stock.iter_errors(payload))
        assert sorted(f"{list(e.absolute_path)}: {e.message}" for e in ours.validator.iter_errors(payload)) == expected


# -- uniqueItems -----------------------------------------------------------------------------------------

UNIQUE = compile_schema({"properties": {"l": {"type": "array", "uniqueItems": True}}})


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),  # one number, however written
        ([True, 1], True),  # a boolean is not a number
        ([False, 0, None, "", [], {}], True),
        ([{"a": 1, "b": [1, 2]}, {"b": [1, 2.0], "a": 1}], False),  # key order does not matter
        ([[1, 2], [2, 1]], True),  # item order does
        ([{"a": True}, {"a": 1}], True),
        ([[{"a": [1]}], [{"a": [1.0]}]], False),
        (["1", 1], True),
    ],
)
def test_unique_items_uses_json_schema_equality(items: list[Any], unique: bool) -> None:
    mismatches = UNIQUE.mismatches({"l": items})

    assert mismatches == ([] if unique else ["/l: items 0 and 1 are equal; the array's items must be unique"])
    assert Draft202012Validator({"uniqueItems": True}).is_valid(items) is unique  # as jsonschema's own judges


def test_a_long_array_of_objects_is_checked_without_comparing_every_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """jsonschema's own uniqueItems compares every pair of objects: 200 million for these 20,000."""
    items = [{"a": i, "b": [i, str(i)]} for i in range(20_000)]
    comparisons = 0
    stock_equal = jsonschema._utils.equal

    def counted(one: Any, two: Any) -> bool:
        nonlocal comparisons
        comparisons += 1
        assert comparisons < len(items), "items are compared pair by pair"
        return bool(stock_equal(one, two))

    monkeypatch.setattr(jsonschema._utils, "equal", counted)

    assert UNIQUE.mismatches({"l": items}) == []
    assert UNIQUE.mismatches({"l": [*items, {"b": [7, "7"], "a": 7.0}]}) == [
        "/l: items 7 and 20000 are equal; the array's items must be unique"
    ]
