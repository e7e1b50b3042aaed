"""JSON text from callers, checked before anything is built from it.

Three rules, besides RFC 8259's grammar:
- nesting is at most MAX_DEPTH levels: deeper text is refused before it is parsed, so it can never
  exhaust the parser's recursion (a RecursionError would be a 500, or a dropped connection);
- every number is one a double can hold in magnitude: `NaN` and `Infinity` (which Python's json
  accepts) are not JSON, and `1e400` reads as infinity in every receiver that parses numbers as
  doubles. Precision is not limited: `9007199254740993` and `0.1` are fine, and kept as written by
  callers that keep the text (an event's payload is spliced into its body as sent);
- no object repeats a key (as I-JSON, RFC 7493, requires): parsers disagree on which value wins, so
  a payload checked against its schema with one value could reach a receiver that reads the other.

`loads` parses to check and to read; violations name the field and the path inside it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Iterator
from typing import Any

from webhookd.domain.errors import FieldViolation, Invalid

# Deep enough for any real document (the seed's retry_policy is two levels), shallow enough that the
# parser's recursion (about 1,000 frames) is never at risk, whoever calls.
MAX_DEPTH = 100
# An integer literal this long may be past a double's range (~1.8e308); shorter ones never are.
_LONGEST_SAFE_INTEGER = 308

# Tokens that matter for depth: strings (skipped, with a `:` after a key), and brackets.
_DEPTH_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{}]')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# json.loads reads a `\udXXX` escape without its pair as that lone code point.
_SURROGATE = re.compile("[\ud800-\udfff]")


class _OutOfRange:
    """Stands in for a number a double cannot hold, until its path is known."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def loads(text: str, *, field: str = "", max_depth: int = MAX_DEPTH) -> Any:
    """The parsed value. Raises json.JSONDecodeError for text that is not JSON at all (the caller
    words that), and Invalid, naming `field` and the path inside it, for the rules above (nesting
    at most `max_depth`, at most MAX_DEPTH, for a document held to less)."""
    max_depth = min(max_depth, MAX_DEPTH)
    deep = _too_deep(text, max_depth)
    if deep is not None:
        raise Invalid.field(_join(field, deep), f"nests deeper than {max_depth} levels")
    out_of_range: list[_OutOfRange] = []

    def number(literal: str) -> Any:
        value = float(literal)
        if math.isinf(value):
            out_of_range.append(_OutOfRange(literal))
            return out_of_range[-1]
        return value

    def integer(literal: str) -> Any:
        if len(literal.lstrip("-")) > _LONGEST_SAFE_INTEGER:
            return number(literal)
        return int(literal)

    def constant(literal: str) -> Any:
        out_of_range.append(_OutOfRange(literal))
        return out_of_range[-1]

    repeating: list[tuple[dict[str, Any], str]] = []

    def unique_keys(members: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(members)
        if len(value) != len(members):
            repeating.append((value, _repeated(members)))  # its path is known once the whole is read
        return value

    value = json.loads(
        text, parse_float=number, parse_int=integer, parse_constant=constant, object_pairs_hook=unique_keys
    )
    if repeating:
        holder, key = repeating[0]
        message = f"repeats the key {key!r} in one object: receivers would read either value"
        raise Invalid.field(_join(field, _path_to(value, holder, "")), message)
    if out_of_range:
        raise Invalid(
            [
                FieldViolation(_join(field, path), f"{marker.literal} is not a finite JSON number a double can hold")
                for path, marker in _markers(value, "")
            ]
        )
    return value


def nests_within(text: str, levels: int) -> bool:
    """Whether JSON text nests at most `levels` deep (its brackets counted, strings skipped)."""
    return _too_deep(text, levels) is None


def member_texts(text: str) -> dict[str, str]:
    """The exact text of each member's value in a JSON object, for a caller that keeps a value as
    written. `text` must have passed `loads` (so no key repeats); anything but an object gives {}."""
    decoder = json.JSONDecoder()
    at = _skip_whitespace(text, 0)
    members: dict[str, str] = {}
    if text[at : at + 1] != "{":
        return members
    at = _skip_whitespace(text, at + 1)
    while (key_token := _STRING.match(text, at)) is not None:
        key, at = json.loads(key_token.group()), key_token.end()
        start = _skip_whitespace(text, _skip_whitespace(text, at) + 1)  # past the ':'
        _, end = decoder.raw_decode(text, start)
        members[key] = text[start:end]
        at = _skip_whitespace(text, end)
        if text[at : at + 1] == ",":
            at = _skip_whitespace(text, at + 1)
    return members


def _path_to(value: Any, target: object, path: str) -> str:
    """The path of `target` (an object, found by identity) inside `value`."""
    if value is target:
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _path_to(item, target, _join(path, key) if isinstance(key, str) else f"{path}[{key}]")
        if found or item is target:
            return found
    return ""


def _repeated(members: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in members:
        if key in seen:
            return key
        seen.add(key)
    return ""


def _skip_whitespace(text: str, at: int) -> int:
    found = _WHITESPACE.match(text, at)
    return found.end() if found is not None else at


def _too_deep(text: str, max_depth: int) -> str | None:
    """None when the text nests at most `max_depth` levels; else the top-level key it nests too deep
    under ("" when that is not inside a top-level object)."""
    if text.count("[") + text.count("{") <= max_depth:
        return None  # cannot be deeper, whatever the strings hold: the common case, at C speed
    depth, key = 0, ""
    for token in _DEPTH_TOKENS.finditer(text):
        lexeme = token.group()
        if lexeme[0] == '"':
            if depth == 1 and lexeme.endswith(":"):
                key = json.loads(lexeme[:-1])
        elif lexeme in "[{":
            depth += 1
            if depth > max_depth:
                return key
        else:
            depth -= 1
    return None


def unpaired_surrogates(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, what) for each string or key in a parsed value that holds an unpaired surrogate: JSON
    may spell one (`"\\ud800"`), but no UTF-8 text holds it, so neither a protobuf string nor a
    Struct can carry the value."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            yield path, "holds an unpaired surrogate, which UTF-8 cannot carry"
    elif isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                yield path, "has a key holding an unpaired surrogate, which UTF-8 cannot carry"
            else:
                yield from unpaired_surrogates(item, _join(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unpaired_surrogates(item, f"{path}[{index}]")


def _markers(value: Any, path: str) -> Iterator[tuple[str, _OutOfRange]]:
    if isinstance(value, _OutOfRange):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _markers(item, _join(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _markers(item, f"{path}[{index}]")


def _join(path: str, key: str) -> str:
    if not path or not key:
        return path or key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def json_identity(value: Any) -> Hashable:
    """A hashable value equal for JSON values JSON Schema calls equal: 1 and 1.0 alike, true and 1 not,
    objects whatever their keys' order, arrays item by item in order."""
    if isinstance(value, dict):
        return ("object", frozenset((key, json_identity(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(json_identity(item) for item in value))
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int | float):
        return ("number", value)  # Python's 1 == 1.0 and hash(1) == hash(1.0), as JSON's numbers are
    return (type(value).__name__, value)
