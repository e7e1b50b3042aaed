"""JSON Schemas of event types: checked when written, compiled once, and applied to published payloads.

The dialect is JSON Schema 2020-12 (`$schema` may be left out or name it). `format` is an annotation,
as 2020-12 has it by default: it is not asserted. References resolve within the schema (`#/$defs/x`,
`$id`s it declares) and to the published meta-schemas; nothing is ever fetched from the network, so a
schema cannot make the server call out. What would fail every publish is refused when the schema is
written instead: a `$ref` that cannot be resolved, a `pattern` (or `patternProperties` key) that does not
compile, and `$ref`s that loop without going into the payload (`{"$ref": "#"}`). A schema stored before
those checks that still cannot be applied makes `mismatches` raise Unevaluable, not a bare error. What
checking a schema costs is bounded first: at most SCHEMA_MAX_SUBSCHEMAS subschemas, SCHEMA_MAX_PATTERNS
regexes and SCHEMA_MAX_PATTERN_CHARS characters of them, counted before anything is checked.

Regexes run on the `regex` module under a time budget per validation (domain/schema_keywords.py): a
catastrophic pattern costs a publish at most REGEX_BUDGET_SECONDS, then Unevaluable. Everything else a
validation does is metered in steps, at most `schema_keywords.step_budget` of the payload's size (a base
plus some per KiB of its JSON, capped: at most about 0.3 s of CPU), then TooCostly: the schema can be
applied, but not to this payload within the bound.

Mismatches are reported one per problem, each at its JSON pointer (RFC 6901) in the payload:
`/amount: -5 is less than the minimum of 0`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import regex
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing import Registry, Resource
from referencing.exceptions import PointerToNowhere, Unresolvable
from referencing.jsonschema import DRAFT202012

from webhookd.domain import json_text, schema_keywords
from webhookd.domain.errors import FieldViolation, Invalid

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Enough to fix a payload in one round trip; a payload wrong in a thousand ways needs no thousand lines.
MAX_MISMATCHES = 20
ROOT = "(root)"
# What checking a schema costs when written is bounded by what real ones need: the meta-schema costs about
# 0.3 ms of CPU per subschema, and a regex 10-20 us per character to parse and compile (64 KiB of either
# took seconds). GitHub's largest event payloads bundled into one schema hold 200-340 subschemas and no
# regex; at these limits a check costs at most about 150 ms and 60 ms.
SCHEMA_MAX_SUBSCHEMAS = 500
SCHEMA_MAX_PATTERNS = 100
SCHEMA_MAX_PATTERN_CHARS = 4_000
# The 2020-12 keywords whose value is a schema, a list of schemas, or schemas by name: the ones the
# meta-schema checks, and validation applies. Any other keyword's value is data (`default`, `enum`, ...).
_IN_VALUE = frozenset(
    {"additionalProperties", "contains", "contentSchema", "else", "if", "items", "not", "propertyNames"}
    | {"then", "unevaluatedItems", "unevaluatedProperties"}
)
_IN_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_IN_MAP = frozenset({"$defs", "definitions", "dependencies", "dependentSchemas", "patternProperties", "properties"})
# Values of every JSON type: a `$ref` loop that consumes no part of the payload recurses on all of them.
_PROBES: tuple[Any, ...] = (None, True, 0, "", [], {})


class Unevaluable(Exception):
    """A schema that cannot be applied to a payload (it recurses forever, or a regex does not compile)."""


class TooCostly(Exception):
    """Checking this payload against the schema takes more steps than its size allows (schema_keywords.step_budget)."""


@dataclass(frozen=True)
class CompiledSchema:
    """A checked schema, ready to validate payloads (compiled once, used by every publish of its type)."""

    validator: Draft202012Validator

    def mismatches(self, payload: Any, payload_bytes: int | None = None) -> list[str]:
        """`<JSON pointer>: <what is wrong>` for the first mismatches found (at most MAX_MISMATCHES), sorted by pointer;
        [] when the payload matches. Unevaluable when the schema cannot be applied, TooCostly when it
        cannot be within the step budget, which grows with `payload_bytes`: the size of the JSON text the
        payload was sent as (what the payload limit measures), else of json.dumps's."""
        if payload_bytes is None:
            payload_bytes = len(json.dumps(payload, ensure_ascii=False).encode())
        try:
            with schema_keywords.validation_budget(payload_bytes):
                # The first MAX_MISMATCHES are all a caller is told: finding the rest would only spend steps.
                found = list(itertools.islice(self.validator.iter_errors(payload), MAX_MISMATCHES))
        except RecursionError:
            raise Unevaluable("its $refs loop back without going into any part of the payload") from None
        except regex.error as error:
            raise Unevaluable(f"the regular expression {error.pattern!r} does not compile: {error}") from None
        except schema_keywords.RegexBudgetSpent as error:
            raise Unevaluable(f"{error} on this payload ({schema_keywords.REGEX_BUDGET_SECONDS * 1000:g} ms)") from None
        except schema_keywords.StepBudgetSpent as error:
            raise TooCostly(
                f"{error} (a step is a keyword evaluated or an error made, in every anyOf/oneOf/allOf branch)"
            ) from None
        errors = sorted(found, key=lambda error: [str(p) for p in error.absolute_path])
        return [f"{pointer(error.absolute_path)}: {error.message}" for error in errors]


def pointer(path: Iterable[str | int]) -> str:
    """The JSON pointer of a path inside the payload; ROOT for the payload itself."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts) if parts else ROOT


def parse_json(text: str, field: str, *, max_depth: int = json_text.MAX_DEPTH) -> Any:
    """The value of JSON text a caller sent (json_text's rules, nesting at most `max_depth`); Invalid
    naming `field` otherwise."""
    try:
        return json_text.loads(text, field=field, max_depth=max_depth)
    except json.JSONDecodeError as error:
        raise Invalid.field(field, f"is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


def schema_violations(schema: Any, field: str) -> list[FieldViolation]:
    """What is wrong with `schema` as an event type's JSON Schema; [] when it can be compiled. Its size
    is checked first: past the limits nothing else is (that is what they bound)."""
    if not isinstance(schema, dict):
        return [FieldViolation(field, 'must be a JSON Schema object, e.g. {"type": "object"}')]
    dialect = schema.get("$schema", DIALECT)
    if dialect not in (DIALECT, DIALECT + "#"):
        return [FieldViolation(f"{field}.$schema", f"must be {DIALECT} (JSON Schema 2020-12) or left out")]
    found = _size_violations(schema, field)
    if found:
        return found
    found = [FieldViolation(field, _meta_mismatch(error)) for error in _META_VALIDATOR.iter_errors(schema)]
    if found:
        return found[:MAX_MISMATCHES]
    found = [FieldViolation(field, f"$ref {ref!r} cannot be resolved: {why}") for ref, why in _unresolvable(schema)]
    if found:
        return found
    # A loop of $refs is only seen by following them: try the schema on a value of each type.
    compiled = compile_schema(schema)
    for probe in _PROBES:
        try:
            compiled.mismatches(probe)
        except Unevaluable as error:
            return [FieldViolation(field, f"cannot be applied: {error}")]
        except TooCostly as error:
            return [FieldViolation(field, f"cannot be applied even to {json.dumps(probe)}: {error}")]
    return []


def _size_violations(schema: dict[str, Any], field: str) -> list[FieldViolation]:
    """What makes `schema` too large to check (SCHEMA_MAX_*), counted on a walk that checks nothing."""
    subschemas, patterns, chars = 0, 0, 0
    pending: list[Any] = [schema]
    while pending:
        subschema = pending.pop()
        subschemas += isinstance(subschema, dict | bool)
        if not isinstance(subschema, dict):
            continue
        regexes = [subschema.get("pattern")]
        for keyword, value in subschema.items():
            if keyword in _IN_VALUE:
                pending.append(value)
            elif keyword in _IN_LIST and isinstance(value, list):
                pending.extend(value)
            elif keyword in _IN_MAP and isinstance(value, dict):
                pending.extend(value.values())
                if keyword == "patternProperties":
                    regexes.extend(value)
        texts = [text for text in regexes if isinstance(text, str)]
        patterns += len(texts)
        chars += sum(len(text) for text in texts)
    found = []
    if subschemas > SCHEMA_MAX_SUBSCHEMAS:
        where = "under properties, items, allOf, $defs..."
        found.append(f"holds {subschemas} subschemas ({where}); the limit is {SCHEMA_MAX_SUBSCHEMAS}")
    if patterns > SCHEMA_MAX_PATTERNS:
        found.append(f"holds {patterns} regexes (pattern, patternProperties keys); the limit is {SCHEMA_MAX_PATTERNS}")
    if chars > SCHEMA_MAX_PATTERN_CHARS:
        found.append(f"has regexes totalling {chars} characters; the limit is {SCHEMA_MAX_PATTERN_CHARS}")
    return [FieldViolation(field, problem) for problem in found]


def compile_schema(schema: dict[str, Any]) -> CompiledSchema:
    """A schema that passed `schema_violations`, compiled against the meta-schemas only (no retrieval)."""
    return CompiledSchema(_Validator(schema, registry=META_SCHEMAS))


def _meta_mismatch(error: Any) -> str:
    """What the meta-schema found wrong, at its JSON pointer in the schema."""
    where = pointer(error.absolute_path)
    if error.validator == "format":  # only `regex` is asserted: `pattern` and `patternProperties` keys
        return f"{where}: {error.instance!r} is not a regular expression the server can run: {error.cause}"
    return f"{where}: {error.message}"


def _unresolvable(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every `$ref` / `$dynamicRef` that resolves neither inside the schema nor to a meta-schema."""
    resource: Resource[Any] = DRAFT202012.create_resource(schema)
    registry: Registry[Any] = META_SCHEMAS.with_resource(resource.id() or "", resource).crawl()
    yield from _walk(registry.resolver(base_uri=resource.id() or ""), resource)


def _walk(resolver: Any, resource: Resource[Any]) -> Iterator[tuple[str, str]]:
    contents = resource.contents
    if isinstance(contents, dict):
        for keyword in ("$ref", "$dynamicRef"):
            ref = contents.get(keyword)
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except PointerToNowhere:
                    yield ref, "it points at nothing in this schema"
                except Unresolvable:
                    yield ref, "it names no schema declared here ($id), and references are never fetched"
    for subresource in resource.subresources():
        yield from _walk(resolver.in_subresource(subresource), subresource)


def _compiles(pattern: object) -> bool:
    """A regex check for the meta-schema's `format: regex` (on `pattern` and `patternProperties` keys),
    with the engine validation uses. Other types are the meta-schema's `type` to refuse."""
    if isinstance(pattern, str):
        schema_keywords.check_size(pattern)  # before compiling: compiling is what a huge one costs
        regex.compile(pattern)
    return True


_REGEXES = FormatChecker(formats=())
# A pattern nested thousands deep exhausts the compiler's recursion: refused like any other.
_REGEXES.checks("regex", raises=(regex.error, RecursionError))(_compiles)
# 2020-12 with the keywords a tenant's schema could turn against the server replaced, every one metered.
_Validator = schema_keywords.metered_validator(Draft202012Validator)
_META_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA, registry=META_SCHEMAS, format_checker=_REGEXES)
