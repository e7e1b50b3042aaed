"""domain/json_text.py: callers' JSON is bounded in depth and in number range, checked without
recursion trouble, and values can be cut out exactly as written."""

from __future__ import annotations

import json

import pytest

from webhookd.domain import json_text
from webhookd.domain.errors import Invalid
from webhookd.domain.json_text import MAX_DEPTH


def violations(text: str, field: str = "") -> dict[str, str]:
    with pytest.raises(Invalid) as raised:
        json_text.loads(text, field=field)
    return {violation.field: violation.description for violation in raised.value.violations}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_numbers_of_any_precision_are_read_and_kept_in_range() -> None:
    value = json_text.loads('{"id": 9007199254740993, "amount": 0.1, "big": 1e308, "long": 123456789012345678901234}')
    assert value == {"id": 9007199254740993, "amount": 0.1, "big": 1e308, "long": 123456789012345678901234}


def test_a_hundred_levels_are_fine_and_one_more_is_refused_under_its_top_level_key() -> None:
    assert json_text.loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    assert violations('{"a": 1, "payload": ' + nested(MAX_DEPTH) + "}") == {
        "payload": f"nests deeper than {MAX_DEPTH} levels"
    }


def test_nesting_a_hundred_thousand_deep_is_refused_not_a_recursion_error() -> None:
    deep = '{"event_type": "a.b", "payload": {"x": ' + nested(100_000) + "}}"
    assert violations(deep, "body") == {"body.payload": f"nests deeper than {MAX_DEPTH} levels"}
    assert violations(nested(100_000)) == {"": f"nests deeper than {MAX_DEPTH} levels"}


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps({"text": "[" * 500 + '\\"{' * 50})
    assert json_text.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "path", "literal"),
    [
        ('{"a": NaN}', "payload.a", "NaN"),
        ('{"a": {"b": [1, Infinity]}}', "payload.a.b[1]", "Infinity"),
        ('{"a": -Infinity}', "payload.a", "-Infinity"),
        ('{"a": 1e400}', "payload.a", "1e400"),
        ('{"a": -1.5E+309}', "payload.a", "-1.5E+309"),
        ('{"a": ' + "9" * 400 + "}", "payload.a", "9" * 400),
    ],
)
def test_numbers_a_double_cannot_hold_are_refused_naming_their_path(text: str, path: str, literal: str) -> None:
    assert violations(text, "payload") == {path: f"{literal} is not a finite JSON number a double can hold"}


def test_every_out_of_range_number_is_named() -> None:
    assert set(violations('[NaN, {"x": Infinity}]', "p")) == {"p[0]", "p[1].x"}


def test_text_that_is_not_json_is_a_decode_error_for_the_caller_to_word() -> None:
    with pytest.raises(json.JSONDecodeError):
        json_text.loads('{"a": ')


def test_a_key_repeated_in_one_object_is_refused() -> None:
    """Parsers disagree on which value wins: the schema would check one, a receiver might read the other."""
    assert violations('{"amount": -5, "amount": 5}', "payload_json") == {
        "payload_json": "repeats the key 'amount' in one object: receivers would read either value"
    }
    assert list(violations('{"a": [{"b": 1}, {"b": 1, "c": 2, "b": 3}]}', "payload_json")) == ["payload_json.a[1]"]
    assert json_text.loads('{"a": {"b": 1}, "b": {"a": 2}}') == {"a": {"b": 1}, "b": {"a": 2}}  # per object


def test_member_texts_are_the_values_exactly_as_written() -> None:
    text = ' { "event_type" : "a.b",\n "payload": {"n": 9007199254740993, "x": 0.10, "s": "\\u00e9 ]}"} , "z":[ 1 ] } '
    assert json_text.member_texts(text) == {
        "event_type": '"a.b"',
        "payload": '{"n": 9007199254740993, "x": 0.10, "s": "\\u00e9 ]}"}',
        "z": "[ 1 ]",
    }


def test_member_texts_of_anything_but_an_object_are_empty() -> None:
    assert json_text.member_texts("[1, 2]") == {} and json_text.member_texts("{}") == {}
