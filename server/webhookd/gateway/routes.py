"""HTTP bindings read from `google.api.http` options, and the path templates they match.

Template grammar (google/api/http.proto):
    Template = "/" Segments [ Verb ] ;  Segment = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;  Verb = ":" LITERAL ;
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor


class TemplateError(ValueError):
    """A google.api.http path template this gateway cannot parse."""


@dataclass(frozen=True)
class Variable:
    field_path: str  # e.g. "webhook.id"
    segments: tuple[str, ...]  # the sub-template, ("*",) when written as {id}

    @property
    def multi_segment(self) -> bool:
        return len(self.segments) != 1 or self.segments[0] == "**"


@dataclass(frozen=True)
class PathTemplate:
    text: str
    segments: tuple[str | Variable, ...]
    verb: str | None
    _regex: re.Pattern[str] = field(compare=False, repr=False)
    _groups: tuple[Variable, ...] = field(compare=False, repr=False)

    @property
    def variables(self) -> tuple[Variable, ...]:
        return self._groups

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if isinstance(s, str) and s not in ("*", "**"))

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Match a raw (still percent-encoded) request path; values come back decoded.

        A literal ':' in the last segment starts the custom verb, so `/webhooks/{id}` does not
        match `/webhooks/x:undelete`; an id that contains ':' is sent as %3A.
        """
        path, verb = _split_verb(raw_path)
        if verb != self.verb:
            return None
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        return {
            variable.field_path: _decode(found.group(f"v{i}"), variable.multi_segment)
            for i, variable in enumerate(self._groups)
        }

    def openapi_path(self) -> str:
        """The template with each variable as `{field.path}` (OpenAPI path templating)."""
        parts = [f"{{{s.field_path}}}" if isinstance(s, Variable) else s for s in self.segments]
        return "/" + "/".join(parts) + (f":{self.verb}" if self.verb else "")

    @property
    def shape(self) -> str:
        """The template with its variables unnamed: `/webhooks/{id}` and `/webhooks/{webhook.id}` are
        one shape, since they match the same paths."""
        parts = ["{" + "/".join(s.segments) + "}" if isinstance(s, Variable) else s for s in self.segments]
        return "/" + "/".join(parts) + (f":{self.verb}" if self.verb else "")


@dataclass(frozen=True)
class Binding:
    """One HTTP rule of one RPC: `GET /api/v1/integration/webhooks/{id}` → GetWebhook."""

    method: MethodDescriptor
    http_method: str  # upper case: GET, POST, PATCH, ...
    template: PathTemplate
    body: str  # "" (no body), "*" (whole request) or a top-level request field name
    response_body: str  # "" (whole response) or a top-level response field name
    index: int = 0  # 0 for the rule itself, 1.. for its additional_bindings

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(v.field_path for v in self.template.variables)


def parse_template(text: str) -> PathTemplate:
    if not text.startswith("/"):
        raise TemplateError(f"path template must start with '/': {text!r}")
    body, verb = _split_template_verb(text[1:])
    segments = tuple(_parse_segment(s, text) for s in _split_top_level(body, "/"))
    if not segments or any(s == "" for s in segments):
        raise TemplateError(f"empty segment in path template {text!r}")
    groups = tuple(s for s in segments if isinstance(s, Variable))
    pattern = "/" + "/".join(_segment_regex(s, groups) for s in segments)
    return PathTemplate(text, segments, verb, re.compile(pattern), groups)


def bindings_for_method(method: MethodDescriptor) -> list[Binding]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    rules = [rule, *rule.additional_bindings]
    return [_binding(method, r, i) for i, r in enumerate(rules) if r.WhichOneof("pattern") is not None]


def bindings_for_services(services: Iterable[ServiceDescriptor]) -> list[Binding]:
    return [b for service in services for method in service.methods for b in bindings_for_method(method)]


def group_by_template(bindings: Iterable[Binding]) -> list[tuple[PathTemplate, dict[str, Binding]]]:
    """One entry per path shape (templates matching the same paths, whatever their variables are
    called), HTTP method → binding; literal-heavy templates first so `/webhooks/stats` would win
    over `/webhooks/{id}`. The group's template is its first binding's."""
    groups: dict[str, tuple[PathTemplate, dict[str, Binding]]] = {}
    for binding in bindings:
        key = binding.template.shape
        _, by_method = groups.setdefault(key, (binding.template, {}))
        if binding.http_method in by_method:
            other = by_method[binding.http_method].method.full_name
            raise TemplateError(f"{binding.http_method} {key} is bound twice: {other}, {binding.method.full_name}")
        by_method[binding.http_method] = binding
    return sorted(groups.values(), key=lambda g: -g[0].literal_count)


def _binding(method: MethodDescriptor, rule: Any, index: int) -> Binding:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        http_method, path = str(kind).upper(), getattr(rule, str(kind))
    # A path variable may sit inside the body field (`{webhook.id}` with body "webhook"): the
    # URL's value wins, as transcoding applies the path last.
    return Binding(method, http_method, parse_template(path), rule.body, rule.response_body, index)


def _split_verb(raw_path: str) -> tuple[str, str | None]:
    head, _, last = raw_path.rpartition("/")
    if ":" not in last:
        return raw_path, None
    segment, _, verb = last.rpartition(":")
    return f"{head}/{segment}", unquote(verb)


def _split_template_verb(text: str) -> tuple[str, str | None]:
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        char = text[i]
        if char == "}":
            depth += 1
        elif char == "{":
            depth -= 1
        elif depth == 0 and char == "/":
            break
        elif depth == 0 and char == ":":
            return text[:i], text[i + 1 :]
    return text, None


def _split_top_level(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += char == "{"
        depth -= char == "}"
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _parse_segment(segment: str, template: str) -> str | Variable:
    if not (segment.startswith("{") and segment.endswith("}")):
        if "{" in segment or "}" in segment:
            raise TemplateError(f"malformed variable in {template!r}: {segment!r}")
        return segment
    inner = segment[1:-1]
    field_path, _, sub = inner.partition("=")
    if not _FIELD_PATH.fullmatch(field_path):
        raise TemplateError(f"bad field path in {template!r}: {field_path!r}")
    sub_segments = tuple(sub.split("/")) if sub else ("*",)
    if any(("{" in s or "}" in s or s == "") for s in sub_segments):
        raise TemplateError(f"nested or empty variable in {template!r}")
    return Variable(field_path, sub_segments)


def _segment_regex(segment: str | Variable, groups: tuple[Variable, ...]) -> str:
    if isinstance(segment, Variable):
        inner = "/".join(_segment_regex(s, groups) for s in segment.segments)
        return f"(?P<v{groups.index(segment)}>{inner})"
    if segment == "*":
        return "[^/]+"
    if segment == "**":
        return ".+"
    return re.escape(segment)


_ENCODED_SLASH = re.compile("%2F", re.IGNORECASE)


def _decode(value: str, multi_segment: bool) -> str:
    if not multi_segment:
        return unquote(value)
    # Multi-segment captures keep %2F encoded so a decoded '/' always means a segment boundary.
    return "%2F".join(unquote(part) for part in _ENCODED_SLASH.split(value))


def binding_for(by_method: Mapping[str, Binding], http_method: str) -> Binding | None:
    """The binding that answers `http_method`. HEAD is GET without the body (RFC 9110 §9.3.2), for
    unary GETs only: a stream's headers come before messages that may never end."""
    binding = by_method.get(http_method)
    if binding is None and http_method == "HEAD":
        get = by_method.get("GET")
        return get if get is not None and not get.server_streaming else None
    return binding


def allowed_methods(by_method: Mapping[str, Binding]) -> list[str]:
    heads = ["HEAD"] if binding_for(by_method, "HEAD") is not None and "HEAD" not in by_method else []
    return sorted([*by_method, *heads])
