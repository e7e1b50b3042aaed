"""domain/schema_keywords.py: regexes a tenant's schema brings run on `regex` within a budget, and the
replaced keywords judge payloads as jsonschema's own do."""

from __future__ import annotations

import json
from typing import Any

import jsonschema._utils
import pytest
from jsonschema import Draft202012Validator

from webhookd.config import Settings
from webhookd.domain import schema_keywords
from webhookd.domain.event_schemas import TooCostly, Unevaluable, compile_schema, schema_violations

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
    with schema_keywords.validation_budget(seconds=0.0), pytest.raises(schema_keywords.RegexBudgetSpent):
        schema_keywords.search("a", "a")
    with schema_keywords.validation_budget(seconds=1.0):
        assert schema_keywords.search("a", "ba") and not schema_keywords.search("^a", "ba")


class _Preempted:
    """Clocks of a thread that waits 10 ms for a CPU around every match and matches in 1 us."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def monotonic(self) -> float:
        self.wall += 0.010
        return self.wall

    def thread_time(self) -> float:
        self.cpu += 0.000_001
        return self.cpu


def test_time_waiting_for_a_cpu_is_not_charged_to_the_regex_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy machine a validation of thousands of short matches was refused as unevaluable: the
    budget was charged by the wall clock, preemption included."""
    monkeypatch.setattr(schema_keywords, "time", _Preempted())
    with schema_keywords.validation_budget(seconds=0.05):
        assert all(schema_keywords.search("^[A-Z]+-[0-9]+$", f"ABC-{n}") for n in range(100))


def nested(depth: int, innermost: Any) -> Any:
    for _ in range(depth):
        innermost = [innermost]
    return innermost


BRANCH = {"type": "array", "items": {"$ref": "#/$defs/nested"}}
TWO_DESCENDING_BRANCHES = {"$defs": {"nested": {"anyOf": [BRANCH, BRANCH]}}, "$ref": "#/$defs/nested"}


def test_alternatives_that_each_descend_run_out_of_steps_instead_of_stalling() -> None:
    """Both branches fail only at the innermost value: 2^depth evaluations (depth 12: ~0.7 s before)."""
    schema = compile_schema(TWO_DESCENDING_BRANCHES)

    with pytest.raises(TooCostly, match="steps, the limit of one validation"):
        schema.mismatches(nested(12, "x"))


def test_a_subschema_naming_the_dialect_is_checked_by_the_same_metered_validator() -> None:
    """jsonschema picks the validator for a subschema by its `$schema`, and for 2020-12's picked its stock
    one: `re` and no meter, so this pattern held the GIL for 1.5 s (seconds more per `a`)."""
    named = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    schema = {
        **TWO_DESCENDING_BRANCHES,
        "$ref": "#/$defs/named",
        "properties": {"s": {**named, "pattern": HOSTILE}},
    }
    schema["$defs"] = {**schema["$defs"], "named": {**named, "items": {"$ref": "#/$defs/nested"}}}
    assert schema_violations(schema, "schema") == []

    with pytest.raises(Unevaluable, match="ran out of the regex budget"):
        compile_schema(schema).mismatches({"s": VICTIM})
    with pytest.raises(TooCostly):
        compile_schema(schema).mismatches(nested(13, "x"))


# Ninety alternatives that fail before the one that matches, on every item.
NINETY_FAILING_BRANCHES = {"items": {"anyOf": [{"type": "string"}] * 90 + [{"type": "integer"}]}}


def test_ninety_alternatives_failing_on_every_item_run_out_of_steps() -> None:
    """Before, the budget grew by 100 steps a value: 21,000 integers (a 63 KB example) were 17 s."""
    schema = compile_schema(NINETY_FAILING_BRANCHES)

    assert schema.mismatches(list(range(20))) == []
    with pytest.raises(TooCostly):
        schema.mismatches(list(range(3_000)))


def test_an_error_costs_steps_by_the_length_of_its_message() -> None:
    """A message quotes the value it is about: before, twenty failing branches on each level of a nested
    200 KB string held 700 steps and took a second (a message per branch per level, each 200 KB long)."""
    schema = compile_schema({"anyOf": [{"type": "integer"}] * 20 + [{"items": {"$ref": "#"}}]})

    assert schema.mismatches(nested(30, "x" * 100)) == []
    with pytest.raises(TooCostly):
        schema.mismatches(nested(30, "x" * 200_000))


def test_a_keyword_costs_steps_by_the_members_of_its_value() -> None:
    """`enum` compares the value with each member: 2,000 members on each of 1,000 items before were 1,000 steps."""
    names = [f"name-{n}" for n in range(2_000)]
    schema = compile_schema({"items": {"enum": names}})

    assert schema.mismatches(names[-10:]) == []
    with pytest.raises(TooCostly):
        schema.mismatches(names[-1_000:])


def test_a_false_subschema_costs_steps_by_the_length_of_its_message() -> None:
    """`false` makes an error quoting the whole value it is applied to, in no keyword: before, 480 `false`
    branches over a 230 KB payload cost 31 steps and took 2.4 s (a 230 KB repr per branch)."""
    schema = compile_schema({"anyOf": [False] * 400 + [True]})

    assert schema.mismatches({"s": "x" * 100}) == []
    with pytest.raises(TooCostly):
        schema.mismatches({"s": "x" * 200_000})


@pytest.mark.parametrize(
    "subschema",
    [
        {"if": False},  # each applied with is_valid, not descend
        {"not": False},
        {"contains": False, "minContains": 0},
    ],
)
def test_a_false_subschema_applied_to_test_a_value_costs_steps_by_its_message_too(subschema: Any) -> None:
    schema = compile_schema({"allOf": [subschema] * 240})

    assert schema.mismatches(["x" * 100]) == []
    with pytest.raises(TooCostly):
        schema.mismatches(["x" * 200_000])


@pytest.mark.parametrize("subschema", [True, {}, {"description": "no keyword that checks anything"}])
def test_a_subschema_that_checks_nothing_still_costs_a_step_each_time_it_is_applied(subschema: Any) -> None:
    """Going into a value costs jsonschema a few us whatever the subschema holds: before, 240 `items: {}`
    over 85,000 items cost 240 steps and took 66 s (`items: true`, 3 s)."""
    schema = compile_schema({"allOf": [{"items": subschema}] * 10})

    assert schema.mismatches(list(range(100))) == []
    with pytest.raises(TooCostly):
        schema.mismatches(list(range(20_000)))


@pytest.mark.parametrize(("length", "costly"), [(20, False), (20_000, True)])
def test_comparing_with_a_nested_const_costs_steps_by_the_values_compared(length: int, costly: bool) -> None:
    """A const's list one level down was a step however long: 400 `$ref`s to a 20,000-zero one over four
    items that match it took 2.2 s within 3,000 steps."""
    value = [[0] * length]
    schema = compile_schema({"$defs": {"x": {"const": value}}, "items": {"allOf": [{"$ref": "#/$defs/x"}] * 400}})

    if costly:
        with pytest.raises(TooCostly):
            schema.mismatches([json.loads(json.dumps(value)) for _ in range(4)])
    else:
        assert schema.mismatches([json.loads(json.dumps(value)) for _ in range(4)]) == []


def test_comparing_with_nested_enum_members_costs_steps_by_the_values_compared() -> None:
    """Twenty members, each a 1,000-zero list one level down that differs from the value only at its end:
    before, 80 such values cost about 250 steps."""
    members = [[[0] * 999 + [n]] for n in range(20)]
    schema = compile_schema({"items": {"enum": members}})

    assert schema.mismatches([[[0] * 999 + [19]]]) == []
    with pytest.raises(TooCostly):
        schema.mismatches([[[0] * 999 + [19]] for _ in range(80)])


def test_a_large_value_compared_with_a_small_const_costs_what_the_smaller_holds() -> None:
    """Equality stops where the two first differ (their lengths, here), so that is all it is charged for."""
    schema = compile_schema({"anyOf": [{"const": [1, 2]}] * 400 + [True]})

    assert schema.mismatches(list(range(30_000))) == []


@pytest.mark.parametrize("keyword", ["const", "enum"])
def test_a_comparison_stops_once_the_budget_is_spent(keyword: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A comparison was charged once it was done, so the one that found the budget spent went on to its end
    first: 100,000 values (12,500 steps' worth) compared with 10 steps left. It is charged as it goes now."""
    compared = 0
    stock_unbool = schema_keywords.unbool

    def counted(value: Any) -> Any:
        nonlocal compared
        compared += 1
        return stock_unbool(value)

    monkeypatch.setattr(schema_keywords, "unbool", counted)  # once for each side of each value compared
    value = [[[0.0] * 100] * 1_000]  # one member: the keyword itself costs a step
    schema = compile_schema({keyword: value if keyword == "const" else [value]})
    left = 10

    with schema_keywords.validation_budget(0), pytest.raises(schema_keywords.StepBudgetSpent):
        schema_keywords.spend(schema_keywords.BASE_STEPS - left - 2)  # the keyword and its subschema take 2
        list(schema.validator.iter_errors([[[0] * 100] * 1_000]))

    assert compared // 2 <= (left + 1) * schema_keywords.VALUES_COMPARED_PER_STEP


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (1, 1.0),
        (True, 1),
        (False, 0),
        ([True], [1]),
        ("1", 1),
        ({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"b": 1}),
        ({}, []),
    ],
)
def test_const_and_enum_judge_and_report_as_jsonschemas_own(one: Any, two: Any) -> None:
    for schema in ({"const": one}, {"enum": [one, "other"]}):
        stock = [error.message for error in Draft202012Validator(schema).iter_errors(two)]
        assert [error.message for error in compile_schema(schema).validator.iter_errors(two)] == stock


PAYLOAD_LIMIT = Settings().max_payload_bytes


def test_a_github_like_push_event_at_the_size_limit_fully_described_is_checked_within_the_budget() -> None:
    """Every field of its 410 commits described (about 100 steps a KiB): before, only about 250 commits fit."""
    person = {
        "type": "object",
        "required": ["name", "email"],
        "properties": {"name": {"type": "string"}, "email": {"type": ["string", "null"]}, "date": {"type": "string"}},
        "additionalProperties": False,
    }
    files = {"type": "array", "items": {"type": "string"}}
    commit = {
        "type": "object",
        "required": ["id", "distinct", "message", "timestamp", "url", "author", "committer", "added", "modified"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
            "distinct": {"type": "boolean"},
            "message": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "url": {"type": "string", "format": "uri"},
            "author": {"$ref": "#/$defs/person"},
            "committer": {"$ref": "#/$defs/person"},
            "added": files,
            "removed": files,
            "modified": files,
        },
        "additionalProperties": False,
    }
    schema = {
        "$defs": {"person": person, "commit": commit},
        "type": "object",
        "required": ["ref", "before", "after", "commits"],
        "properties": {
            "ref": {"type": "string"},
            "before": {"type": "string"},
            "after": {"type": "string"},
            "commits": {"type": "array", "items": {"$ref": "#/$defs/commit"}},
            "head_commit": {"anyOf": [{"$ref": "#/$defs/commit"}, {"type": "null"}]},
        },
        "additionalProperties": False,
    }
    author = {"name": "Octo Cat", "email": "octocat@example.com", "date": "2024-01-01T00:00:00Z"}
    commits = [
        {
            "id": f"{n:040x}",
            "distinct": True,
            "message": "Fix the thing that broke\n\nA longer body explaining why it broke " * 2,
            "timestamp": "2024-01-01T00:00:00Z",
            "url": f"https://github.com/octo/repo/commit/{n:040x}",
            "author": author,
            "committer": author,
            "added": ["src/new.py"],
            "removed": [],
            "modified": ["src/old.py", "README.md"],
        }
        for n in range(410)
    ]
    payload = {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40, "commits": commits, "head_commit": None}
    assert PAYLOAD_LIMIT - 16 * 1024 < len(json.dumps(payload)) < PAYLOAD_LIMIT
    assert schema_violations(schema, "schema") == []

    assert compile_schema(schema).mismatches(payload) == []
    commits[-1]["distinct"] = "yes"
    assert compile_schema(schema).mismatches(payload) == ["/commits/409/distinct: 'yes' is not of type 'boolean'"]


def test_small_fields_at_the_size_limit_fully_described_are_checked_within_the_budget() -> None:
    """Order lines of four short fields each checked: about 250 steps a KiB, the densest ordinary payloads."""
    line = {
        "type": "object",
        "required": ["sku", "qty", "price", "currency"],
        "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]+-[0-9]+$"},
            "qty": {"type": "integer", "minimum": 1},
            "price": {"type": "number", "minimum": 0},
            "currency": {"enum": ["EUR", "USD", "GBP"]},
        },
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "required": ["id", "created_at", "lines"],
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "lines": {"type": "array", "items": line},
        },
    }
    lines = [{"sku": f"ABC-{n}", "qty": 2, "price": 9.99, "currency": "EUR"} for n in range(4_000)]
    payload = {"id": "ord_1", "created_at": "2024-01-01T00:00:00Z", "lines": lines}
    assert PAYLOAD_LIMIT - 8 * 1024 < len(json.dumps(payload)) < PAYLOAD_LIMIT

    assert compile_schema(schema).mismatches(payload) == []


def test_the_budget_grows_with_the_payload_up_to_the_default_size_limit() -> None:
    assert schema_keywords.step_budget(0) == schema_keywords.BASE_STEPS
    assert schema_keywords.step_budget(10 * 1024) == schema_keywords.BASE_STEPS + 10 * schema_keywords.STEPS_PER_KIB
    assert schema_keywords.step_budget(PAYLOAD_LIMIT) == schema_keywords.MAX_STEPS
    assert schema_keywords.step_budget(16 * 1024 * 1024) == schema_keywords.MAX_STEPS  # an operator's larger limit


def test_running_out_of_steps_names_the_budget_of_this_payload() -> None:
    schema = compile_schema(NINETY_FAILING_BRANCHES)
    payload = list(range(30_000))
    steps = schema_keywords.step_budget(len(json.dumps(payload)))

    with pytest.raises(TooCostly, match=f"more than {steps:,} steps"):
        schema.mismatches(payload)


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
