"""HTTP request parts → the gRPC request message, following the binding's HttpRule.

Order: body, then query parameters, then path variables, so the URL wins where they overlap.
Query parameters are the ones `query.query_parameters` lists for the binding (nested as `a.b`,
repeated by repeating the key); any other key is a 400 rather than silently ignored, so a typo
like `?show_delted=true` is caught.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from webhookd.domain import json_text
from webhookd.domain.errors import FieldViolation
from webhookd.gateway.descriptors import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    WRAPPER_TYPES,
    descriptor_of,
    enum_of,
    field_by_json_or_proto_name,
    is_map,
    is_output_only,
    is_repeated,
    is_well_known,
    message_class,
    message_of,
    mutable_parent,
    raw_json_twin,
    resolve_field_path,
)
from webhookd.gateway.jsonshape import (
    INTEGER_TEXT,
    JsonInputError,
    enum_number,
    enum_words,
    field_mask_paths,
    json_to_message,
)
from webhookd.gateway.query import SECRET_HEADERS, QueryParameter, query_parameters
from webhookd.gateway.routes import Binding

UPDATE_MASK_FIELD = "update_mask"
# The optimistic-concurrency field: a guard on the write, never itself an update.
VERSION_FIELD = "version"


@dataclass(frozen=True)
class HttpInput:
    path_params: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    body: Any = None  # parsed JSON; None when the route takes no body or the body was empty
    body_text: str | None = None  # the body as received; None: as json.dumps writes `body`


def build_request(binding: Binding, http: HttpInput) -> Message:
    """Raises JsonInputError (→ 400 with field violations) when the input does not fit."""
    request = message_class(binding.method.input_type)()
    violations: list[FieldViolation] = []
    if binding.body:
        _apply_body(binding, request, _keep_raw_json(binding, request, http))
    mask_from_query = _apply_query(binding, request, http.query, violations)
    for field_path, text in http.path_params.items():
        _set_from_text(request, field_path, [text], violations)
    if violations:
        raise JsonInputError(violations)
    if not mask_from_query:
        _default_update_mask(binding, request, http.body)
    return request


# ----------------------------------------------------------------------------------------- body


def _apply_body(binding: Binding, request: Message, body: Any) -> None:
    if body is None:
        return
    if binding.body == "*":
        if isinstance(body, Mapping):
            # Path-bound fields come from the URL; a copy in the body is dropped, not an error,
            # since clients often send the resource back as they received it.
            top_level_path_fields = {p for p in binding.path_fields if "." not in p}
            descriptor = descriptor_of(request)
            body = {k: v for k, v in body.items() if _proto_name(descriptor, k) not in top_level_path_fields}
        json_to_message(body, request)
    else:
        json_to_message({binding.body: body}, request)


def _keep_raw_json(binding: Binding, request: Message, http: HttpInput) -> Any:
    """Hands each body member that has a raw-JSON twin (`payload` → `payload_json`) to the twin as
    the exact text the caller sent, so its numbers reach the service as written; returns the rest
    of the body for the usual transcoding."""
    body = http.body
    target = _body_message(binding, request)
    if target is None or not isinstance(body, Mapping):
        return body
    pairs: dict[str, tuple[FieldDescriptor, FieldDescriptor]] = {}
    for key in body:
        field = field_by_json_or_proto_name(descriptor_of(target), str(key))
        twin = raw_json_twin(field) if field is not None else None
        if field is not None and twin is not None:
            pairs[str(key)] = (field, twin)
    if not pairs:
        return body
    texts = json_text.member_texts(http.body_text if http.body_text is not None else json.dumps(body))
    prefix = "" if binding.body == "*" else f"{binding.body}."
    violations: list[FieldViolation] = []
    for key, (field, twin) in pairs.items():
        if body[key] is None:
            continue  # null: the field is not set
        shape = _JSON_SHAPES.get(message_of(field).full_name)
        if shape is not None and not isinstance(body[key], shape[0]):
            violations.append(FieldViolation(f"{prefix}{key}", f"expected {shape[1]}"))
        setattr(target, twin.name, texts[key])
    if violations:
        raise JsonInputError(violations)
    return {key: value for key, value in body.items() if key not in pairs}


# What the JSON of a raw-JSON field must be, as its well-known type says (Value takes anything).
_JSON_SHAPES: dict[str, tuple[type, str]] = {
    "google.protobuf.Struct": (Mapping, "a JSON object"),
    "google.protobuf.ListValue": (list, "a JSON array"),
}


def _body_message(binding: Binding, request: Message) -> Message | None:
    """The message the JSON body's members are fields of, when it is one."""
    if binding.body == "*":
        return request
    field = descriptor_of(request).fields_by_name[binding.body]
    if field.message_type is None or is_well_known(field.message_type) or is_repeated(field):
        return None
    body_message: Message = getattr(request, binding.body)
    return body_message


def _proto_name(descriptor: Descriptor, key: str) -> str:
    field = field_by_json_or_proto_name(descriptor, key)
    return field.name if field is not None else key


# ---------------------------------------------------------------------------------------- query


def _apply_query(
    binding: Binding, request: Message, query: Sequence[tuple[str, str]], out: list[FieldViolation]
) -> bool:
    """Returns True when the query set update_mask (then no default mask is derived)."""
    by_key: dict[str, list[str]] = {}
    for key, value in query:
        by_key.setdefault(key, []).append(value)
    # By field, not by key: `page_size` and `pageSize` are one field, so two values, not the last kept.
    by_field: dict[str, tuple[QueryParameter, list[str]]] = {}
    for key, values in by_key.items():
        parameter = _query_parameter(binding, key, out)
        if parameter is not None:
            by_field.setdefault(parameter.name, (parameter, []))[1].extend(values)
    for parameter, values in by_field.values():
        _set_values(request, parameter.path, values, out)
    return UPDATE_MASK_FIELD in by_field


def _query_parameter(binding: Binding, key: str, out: list[FieldViolation]) -> QueryParameter | None:
    """The parameter a key names (either spelling of each field), or None and a violation."""
    if binding.body == "*":
        out.append(FieldViolation(key, "query parameters are not accepted here: send every field in the body"))
        return None
    fields = resolve_field_path(binding.method.input_type, key)
    if fields is None:
        out.append(FieldViolation(key, f"unknown query parameter {key!r}"))
        return None
    name = ".".join(f.name for f in fields)
    parameter = query_parameters(binding).get(name)
    if parameter is None:
        out.append(FieldViolation(name, _why_not_a_query_parameter(binding, name)))
    return parameter


def _why_not_a_query_parameter(binding: Binding, name: str) -> str:
    """Explains a refusal that query_parameters has already decided."""
    if name.split(".")[0] == binding.body:
        return "this field is sent in the request body"
    if name in binding.path_fields:
        return "this field is set by the URL path"
    if name in SECRET_HEADERS:
        return f"a secret never travels in the URL: send it in the {SECRET_HEADERS[name]} header"
    sub_fields = [other for other in query_parameters(binding) if other.startswith(f"{name}.")]
    if sub_fields:
        return f"cannot be set from text: name one of its sub-fields ({', '.join(sub_fields)})"
    return "is not a query parameter of this method"


def _set_from_text(request: Message, field_path: str, texts: list[str], out: list[FieldViolation]) -> None:
    fields = resolve_field_path(descriptor_of(request), field_path)
    if fields is None:
        out.append(FieldViolation(field_path, "names no field of the request"))
        return
    field = fields[-1]
    if is_map(field) or (field.message_type is not None and not is_well_known(field.message_type)):
        canonical = ".".join(f.name for f in fields)
        out.append(FieldViolation(canonical, "cannot be set from text: name one of its sub-fields (a.b)"))
        return
    _set_values(request, fields, texts, out)


def _set_values(
    request: Message, fields: Sequence[FieldDescriptor], texts: list[str], out: list[FieldViolation]
) -> None:
    field = fields[-1]
    canonical = ".".join(f.name for f in fields)
    if not is_repeated(field) and len(texts) > 1:
        out.append(FieldViolation(canonical, "given more than once but takes one value"))
        return
    try:
        values = [scalar_from_text(field, text) for text in texts]
        parent = mutable_parent(request, fields)
        if is_repeated(field):
            target = getattr(parent, field.name)
            for value in values:
                if isinstance(value, Message):
                    target.add().CopyFrom(value)
                else:
                    target.append(value)
        elif isinstance(values[0], Message):
            getattr(parent, field.name).CopyFrom(values[0])
        else:
            setattr(parent, field.name, values[0])
    except (ValueError, TypeError) as error:
        out.append(FieldViolation(canonical, str(error)))


# A uint64's digits: longer text is out of range whatever the field (and int() refuses 4,300 and more).
_INTEGER_DIGITS_MAX = 20
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def scalar_from_text(field: FieldDescriptor, text: str) -> Any:
    """A path or query string as the field's value; ValueError with a user-facing reason."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_ENUM:
        number = enum_number(enum_of(field), text)
        if number is None:
            raise ValueError(f"{text!r} is not one of: {', '.join(enum_words(enum_of(field)))}")
        return number
    if kind == FieldDescriptor.TYPE_BOOL:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (true or false)")
    if kind in INTEGER_TYPES:
        if INTEGER_TEXT.fullmatch(text) is None:
            raise ValueError(f"{text!r} is not an integer")
        if len(text.lstrip("-")) > _INTEGER_DIGITS_MAX:
            raise ValueError(f"is out of range: more than {_INTEGER_DIGITS_MAX} digits")
        return int(text)
    if kind in FLOAT_TYPES:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("is not base64") from None
    if field.message_type is not None:
        return _well_known_from_text(field.message_type, text)
    return text


def _well_known_from_text(descriptor: Descriptor, text: str) -> Message:
    name = descriptor.full_name
    if name == "google.protobuf.Timestamp":
        timestamp = timestamp_pb2.Timestamp()
        try:
            timestamp.FromJsonString(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an RFC 3339 timestamp") from None
        return timestamp
    if name == "google.protobuf.Duration":
        duration = duration_pb2.Duration()
        try:
            duration.FromJsonString(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a duration like '3.5s'") from None
        return duration
    if name == "google.protobuf.FieldMask":
        return field_mask_pb2.FieldMask(paths=field_mask_paths(text))
    if name in WRAPPER_TYPES:
        wrapper = message_class(descriptor)()
        value_field = descriptor.fields_by_name["value"]
        setattr(wrapper, value_field.name, scalar_from_text(value_field, text))
        return wrapper
    raise ValueError(f"{name} cannot be sent as a query parameter")


# ---------------------------------------------------------------------------------- update mask


def _default_update_mask(binding: Binding, request: Message, body: Any) -> None:
    """PATCH without ?update_mask= updates what the JSON body names, so `{"enabled": false}`
    changes `enabled` (proto3 alone cannot tell "false" from "absent")."""
    descriptor = descriptor_of(request)
    mask_field = descriptor.fields_by_name.get(UPDATE_MASK_FIELD)
    if (
        mask_field is None
        or mask_field.message_type is None
        or mask_field.message_type.full_name != "google.protobuf.FieldMask"
        or binding.body in ("", "*")
        or not isinstance(body, Mapping)
    ):
        return
    resource = descriptor.fields_by_name[binding.body].message_type
    if resource is None:
        return
    prefix = f"{binding.body}."
    path_bound = {p.removeprefix(prefix) for p in binding.path_fields if p.startswith(prefix)}
    paths = mask_paths_from_json(resource, body, exclude=path_bound | {VERSION_FIELD})
    getattr(request, UPDATE_MASK_FIELD).paths.extend(paths)


def mask_paths_from_json(descriptor: Descriptor, body: Mapping[str, Any], *, exclude: set[str]) -> list[str]:
    """Top-level fields present in the body; for a nested (non-well-known) message given as an
    object, its sub-fields (`retry_policy.max_attempts`). Output-only fields are left out."""
    paths: list[str] = []
    for key, value in body.items():
        field = field_by_json_or_proto_name(descriptor, key)
        if field is None or field.name in exclude or is_output_only(field):
            continue
        nested = field.message_type
        if (
            nested is not None
            and not is_repeated(field)
            and not is_well_known(nested)
            and isinstance(value, Mapping)
            and value
        ):
            paths += [f"{field.name}.{p}" for p in mask_paths_from_json(nested, value, exclude=set())]
        else:
            paths.append(field.name)
    return paths
