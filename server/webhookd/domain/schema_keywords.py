"""The JSON Schema keywords jsonschema evaluates in ways a tenant's schema could turn against the server.

- Regexes (`pattern`, `patternProperties`, and the `additionalProperties` / `unevaluatedProperties`
  that consult `patternProperties`) run on the `regex` module instead of `re`: it releases the GIL while
  matching, reads `\\p{L}` as ECMA-262 does, and stops at a timeout. All of one validation's matching
  shares REGEX_BUDGET_SECONDS of the thread's CPU time (see `validation_budget`), so a catastrophic
  pattern such as `^(a|a)*$` costs at most that, then RegexBudgetSpent.
- `regex` compiles a counted repeat `x{n}` as n copies of x, so nested counts multiply: `(a{1000}){1000}`
  took 276 MB and 0.7 s to compile, a few more digits all the memory there was. `check_size` measures
  a pattern on its parse, which unrolls nothing, and refuses one past PATTERN_MAX_ITEMS before it is
  compiled, when a schema is written and again before each match (for schemas stored earlier).
- `uniqueItems` hashes each item once instead of comparing every pair (jsonschema's fallback for
  objects and arrays is quadratic: 1,500 objects took seconds).
- One validation may take at most `step_budget(payload_bytes)` steps: BASE_STEPS plus STEPS_PER_KIB per
  KiB of the payload's JSON up to BUDGET_MAX_KIB (see `validation_budget`), then StepBudgetSpent. Every
  keyword evaluated is a step, inside `anyOf` / `oneOf` / `allOf` branches too, plus one per
  MEMBERS_PER_STEP members of its value (`enum` compares the value with each), plus, for `const` and
  `enum`, one per VALUES_COMPARED_PER_STEP values the comparison goes into; so is every subschema
  applied to a value, `true` and `{}` too (see `metered_validator`); every error a keyword or a `false`
  subschema makes is two more, plus one per MESSAGE_CHARS_PER_STEP characters of its message (which
  quotes the value it is about), and one at each keyword it passes on its way up. A budget of 100
  steps a value of the payload was no bound: alternatives that all descend (`anyOf` branches each
  holding `items: {"$ref": ...}`) are exponential in its depth (two branches over 18 levels of arrays
  took 90 s), and ninety that fail before the one that matches, on each of 21,000 integers, took 17 s.
  A fixed 12,000 refused ordinary payloads described in full well within the size limit (a push event's
  commits, field by field, fit to about 120 KB). A KiB of JSON earns far fewer steps than its values
  did, and the cap bounds the costliest validation whatever the payload limit.

The replacements keep jsonschema's semantics and messages (but uniqueItems', which quoted the whole
array), so a payload's mismatches read as before. `const` and `enum` are replaced only to count what their
comparisons go into: a nested value (`[[0, 0, ...]]`) was one member, however large.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import attrs
import regex
from jsonschema import ValidationError, validators
from jsonschema._utils import Unset, extras_msg, unbool
from regex import _regex_core

from webhookd.domain.json_text import json_identity

# The most items (characters, classes, anchors...) a pattern may hold once `regex` unrolls its counted
# repeats: real patterns hold tens (`^[a-f0-9]{64}$`); this compiles in well under a millisecond.
PATTERN_MAX_ITEMS = 1_000
# Matching a real payload's strings takes microseconds each: this is thousands of matches' worth.
REGEX_BUDGET_SECONDS = 0.05
# A step costs up to 4-5 us of CPU (most of it jsonschema going into a value), an ordinary one about 3.
# Typical payloads take hundreds; a schema that describes every field takes about 100 a KiB of a
# GitHub-like push event (long strings), 250-280 of short fields (order lines, metric points). So a
# validation gets BASE_STEPS and STEPS_PER_KIB a KiB of its payload's JSON, up to BUDGET_MAX_KIB (the
# default WEBHOOKD_MAX_PAYLOAD_BYTES): an ordinary payload within that limit fits, and the costliest
# validation holds the GIL for MAX_STEPS steps, about 0.3 s, even where an operator allows larger payloads.
BASE_STEPS = 12_000
STEPS_PER_KIB = 256
BUDGET_MAX_KIB = 256
MAX_STEPS = BASE_STEPS + STEPS_PER_KIB * BUDGET_MAX_KIB
# `enum` compares the value with each member (~0.3 us), a fraction of a step each.
MEMBERS_PER_STEP = 16
# `const` and `enum` go into nested values to compare them, 0.3-0.9 us a value (an object's, a list's).
VALUES_COMPARED_PER_STEP = 8
# Quoting a value in a message costs 1-45 ns a character (a string, objects, lists of lists): 100 is a step.
MESSAGE_CHARS_PER_STEP = 100


class RegexBudgetSpent(Exception):
    """One validation's regex matching ran past REGEX_BUDGET_SECONDS."""


class StepBudgetSpent(Exception):
    """One validation took more than the steps of its budget (`step_budget`)."""


@dataclass
class _Budget:
    left: float  # seconds of regex matching
    steps: int
    steps_left: int


_budget: ContextVar[_Budget | None] = ContextVar("regex_budget", default=None)


def step_budget(payload_bytes: int) -> int:
    """The steps one validation of a payload of `payload_bytes` bytes of JSON may take."""
    return BASE_STEPS + STEPS_PER_KIB * min(payload_bytes, BUDGET_MAX_KIB * 1024) // 1024


@contextmanager
def validation_budget(payload_bytes: int = 0, *, seconds: float = REGEX_BUDGET_SECONDS) -> Iterator[None]:
    """Every regex matched inside the block draws on one budget of `seconds`, and every keyword evaluated
    on one of `step_budget(payload_bytes)` steps. A context variable, so it follows the validation into the
    thread a large payload is checked in."""
    steps = step_budget(payload_bytes)
    token = _budget.set(_Budget(seconds, steps, steps))
    try:
        yield
    finally:
        _budget.reset(token)


def spend(steps: int) -> None:
    """Draw `steps` from the validation's budget; StepBudgetSpent once it is overdrawn."""
    budget = _budget.get()
    if budget is not None:
        budget.steps_left -= steps
        if budget.steps_left < 0:
            raise StepBudgetSpent(
                f"checking it takes more than {budget.steps:,} steps, the limit of one validation of a payload"
                f" this size ({BASE_STEPS:,} plus {STEPS_PER_KIB} per KiB of its JSON, up to {MAX_STEPS:,})"
            )


def metered(keywords: dict[str, Any]) -> dict[str, Any]:
    """`keywords` each drawing on the validation's budget: a step, plus one per MEMBERS_PER_STEP members of
    their value, before they are evaluated, and for each error they make or pass on."""
    return {name: _metered(keyword) for name, keyword in keywords.items()}


def _metered(keyword: Any) -> Any:
    def evaluate(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        spend(1 + (len(value) // MEMBERS_PER_STEP if isinstance(value, list | dict) else 0))
        errors = keyword(validator, value, instance, schema)
        return None if errors is None else _charged(errors)

    return evaluate


def _charged(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        # An error passes up through every keyword above it (a level of the payload costs a few): a step
        # at each. The keyword that made it, which iter_errors has not stamped yet, pays for making it too.
        made_here = isinstance(error.validator, Unset)
        spend(_making(error) if made_here else 1)
        yield error


def _making(error: ValidationError) -> int:
    """The steps making `error` cost: its message quotes the value it is about (`repr`, however large)."""
    return 2 + len(error.message) // MESSAGE_CHARS_PER_STEP


def metered_validator(base: Any) -> Any:
    """`base` with KEYWORDS in place of its own, every keyword metered, and every subschema it applies to a
    value (through `descend`, or `evolve(...).is_valid` as `if`, `not` and `contains` do) a step: going
    into a value costs jsonschema a few us even when the subschema holds nothing that checks (`true`,
    `{}`), and a `false` one makes an error quoting the whole value, in no keyword that could pay for it.
    Every subschema is checked by this class, whatever `$schema` it names: one dialect, all of it metered."""
    extended = validators.extend(base, metered({**base.VALIDATORS, **KEYWORDS}))
    descend, iter_errors = extended.descend, extended.iter_errors

    # The class is extend's new one, ours alone: replacing its methods touches no other validator.
    def metered_descend(self: Any, instance: Any, schema: Any, *args: Any, **kwargs: Any) -> Any:
        spend(1)
        errors = descend(self, instance, schema, *args, **kwargs)
        return _paid_for(errors) if schema is False else errors

    def metered_iter_errors(self: Any, instance: Any) -> Any:
        spend(1)
        errors = iter_errors(self, instance)
        return _paid_for(errors) if self.schema is False else errors

    def same_class_evolve(self: Any, **changes: Any) -> Any:
        # jsonschema's evolve picks the class by a subschema's `$schema`: the stock one for 2020-12's own,
        # which meters nothing and matches with `re`. Every subschema is checked by this class instead.
        changes.setdefault("schema", self.schema)
        for field in attrs.fields(type(self)):
            if field.init and field.alias not in changes:
                changes[field.alias] = getattr(self, field.name)
        return type(self)(**changes)

    extended.descend, extended.iter_errors = metered_descend, metered_iter_errors
    extended.evolve = same_class_evolve
    return extended


def _paid_for(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """The error a `false` subschema makes, charged for making it once its message is built (so at most one
    such message, one `repr` of the payload, is made past the budget)."""
    for error in errors:
        spend(_making(error))
        yield error


def check_size(pattern: str) -> None:
    """regex.error when `pattern`, its counted repeats unrolled, holds more than PATTERN_MAX_ITEMS items
    (or does not parse)."""
    if _unrolled_items(pattern) > PATTERN_MAX_ITEMS:
        raise regex.error(f"its counted repeats unroll to more than {PATTERN_MAX_ITEMS} items", pattern)


@functools.lru_cache(maxsize=256)
def _unrolled_items(pattern: str) -> int:
    return _items(_parsed(pattern))


def _parsed(pattern: str) -> Any:
    """The parse tree `regex.compile` builds before it unrolls anything (its own parser: re's would refuse
    ECMA-262's `\\p{L}` and `(?<name>...)`, which `regex` runs)."""
    flags = 0
    for _ in range(3):
        source = _regex_core.Source(pattern)
        info = _regex_core.Info(flags, source.char_type, {})
        info.guess_encoding = _regex_core.UNICODE
        try:
            return _regex_core._parse_pattern(source, info)
        except _regex_core._UnscopedFlagSet:
            flags = info.global_flags  # a flag set mid-pattern for all of it: parsed again with it, as regex does
    raise regex.error("its inline flags could not be settled", pattern)


def _items(node: Any) -> int:
    """The items `node` compiles to: a leaf is one, a repeat its body `min_count` times (the part
    `regex` unrolls; the optional rest is a loop), anything else the sum of its parts."""
    parts = [part for value in vars(node).values() for part in _nodes(value)]
    if not parts:
        return 1
    inner = sum(_items(part) for part in parts)
    count = getattr(node, "min_count", None)
    return inner * max(count, 1) if isinstance(count, int) else inner


def _nodes(value: Any) -> Iterator[Any]:
    if isinstance(value, _regex_core.RegexBase):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _nodes(item)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    """`pattern` compiled once it is known small enough (check_size). Kept: `regex.search` given the
    pattern's text looks it up in regex's own cache on every call, 9.6 us a short match against 3.3 for
    the compiled pattern's, and a payload may hold thousands of matches."""
    check_size(pattern)
    return regex.compile(pattern)


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text` (ECMA-262's test), within what is left of the budget.
    regex.error for a pattern that does not compile or is too large to (check_size); RegexBudgetSpent
    when the budget runs out."""
    compiled = _compiled(pattern)
    budget = _budget.get() or _Budget(REGEX_BUDGET_SECONDS, BASE_STEPS, BASE_STEPS)
    if budget.left <= 0:
        raise RegexBudgetSpent(f"matching {pattern!r} ran out of the regex budget")
    # Charged by the thread's CPU time: on a busy machine the wall clock also counts the waits for a
    # CPU, and a payload of thousands of short matches (50 ms of CPU at most) was refused as
    # unevaluable. `regex` runs the match in this thread, the GIL released. One match stays bounded
    # by the wall clock, which is all `regex` offers.
    started = time.thread_time()
    try:
        return compiled.search(text, timeout=budget.left) is not None
    except TimeoutError:
        raise RegexBudgetSpent(f"matching {pattern!r} ran out of the regex budget") from None
    finally:
        budget.left -= time.thread_time() - started


def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            if search(patrn, key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = [key for key in instance if key not in properties and not any(search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            names = ", ".join(repr(each) for each in sorted(patterns))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {names}")
        else:
            error = "Additional properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(extras, key=str)))


def unevaluated_properties(validator: Any, unevaluated: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    failed = [
        key
        for key in instance
        if key not in evaluated
        and _has_errors(validator.descend(instance[key], unevaluated, path=key, schema_path=key))
    ]
    if failed:
        if unevaluated is False:
            error = "Unevaluated properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(failed, key=str)))
        else:
            error = "Unevaluated properties are not valid under the given schema (%s %s unevaluated and invalid)"
            yield ValidationError(error % extras_msg(failed))


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """The keys some applicator in `schema` evaluated: jsonschema's find_evaluated_property_keys_by_schema,
    with its `patternProperties` matched by `search`."""
    if validator.is_type(schema, "boolean"):
        return set()
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(keyword)
        if ref is not None:
            resolved = validator._resolver.lookup(ref)
            inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            keys |= _evaluated_keys(inner, instance, resolved.contents)
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            keys |= {key for key, value in instance.items() if not _has_errors(validator.descend(value, subschema))}
    for patrn in schema.get("patternProperties", {}):
        keys |= {key for key in instance if search(patrn, key)}
    for key, subschema in schema.get("dependentSchemas", {}).items():
        if key in instance:
            keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if not _has_errors(validator.descend(instance, subschema)):
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys |= _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys |= _evaluated_keys(validator, instance, schema["else"])
    return keys


def _has_errors(errors: Iterator[Any]) -> bool:
    return next(errors, None) is not None


def const(validator: Any, const: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not equal(instance, const):
        yield ValidationError(f"{const!r} was expected")


def enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if all(not equal(each, instance) for each in enums):
        yield ValidationError(f"{instance!r} is not one of {enums!r}")


def equal(one: Any, two: Any) -> bool:
    """Whether two JSON values are equal as JSON Schema (and jsonschema's `equal`) has it: 1 == 1.0, true != 1,
    key order aside. A step per VALUES_COMPARED_PER_STEP values it goes into, charged as it goes: charged once
    it was done, the comparison that found the budget spent first went through all of a const's value. It
    stops where the two first differ, so it goes into the smaller at most."""
    return _Comparison().equal(one, two)


class _Comparison:
    """jsonschema's `equal`, drawing a step on the budget every VALUES_COMPARED_PER_STEP values it goes into."""

    until_step = VALUES_COMPARED_PER_STEP

    def equal(self, one: Any, two: Any) -> bool:
        self.until_step -= 1
        if not self.until_step:
            self.until_step = VALUES_COMPARED_PER_STEP
            spend(1)
        if one is two:
            return True
        if isinstance(one, str) or isinstance(two, str):
            return bool(one == two)
        # Loops, not all(...): its generator made each value three times as costly (1-1.5 us).
        if isinstance(one, list) and isinstance(two, list):
            if len(one) != len(two):
                return False
            for a, b in zip(one, two, strict=True):  # noqa: SIM110
                if not self.equal(a, b):
                    return False
            return True
        if isinstance(one, dict) and isinstance(two, dict):
            if len(one) != len(two):
                return False
            for key, value in one.items():  # noqa: SIM110
                if key not in two or not self.equal(value, two[key]):
                    return False
            return True
        return bool(unbool(one) == unbool(two))


def unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    spend(len(instance) // MEMBERS_PER_STEP)  # an identity of each item
    seen: dict[Hashable, int] = {}
    for index, item in enumerate(instance):
        first = seen.setdefault(json_identity(item), index)
        if first != index:
            yield ValidationError(f"items {first} and {index} are equal; the array's items must be unique")
            return


KEYWORDS = {
    "const": const,
    "enum": enum,
    "pattern": pattern,
    "patternProperties": pattern_properties,
    "additionalProperties": additional_properties,
    "unevaluatedProperties": unevaluated_properties,
    "uniqueItems": unique_items,
}
