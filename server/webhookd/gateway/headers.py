"""HTTP headers that become request fields, and the ETag that comes back.

- `If-Match: "<n>"` → the version the write is conditional on: the request's own `version`
  (DeleteWebhook) or the body resource's `version` (UpdateWebhook's `webhook.version`). A weak tag
  (`W/"<n>"`) never matches (RFC 9110 compares If-Match strongly): 412 at once.
- `If-None-Match` on a GET: 304 Not Modified when it names the response's ETag (weak comparison).
- `Idempotency-Key` → the request's `idempotency_key`, where it has one.
- `Last-Event-ID` → a streaming request's `after_cursor`, so an EventSource reconnect resumes.
- `Webhook-Signing-Secret` → `signing_secret` where the body does not carry it (secrets stay out
  of URLs; query.SECRET_HEADERS).
- `ETag: "<version>"` on a response whose body is a resource with a `version` field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from webhookd.domain.errors import FieldViolation
from webhookd.gateway.descriptors import (
    INTEGER_TYPES,
    descriptor_of,
    get_path,
    is_repeated,
    mutable_parent,
    resolve_field_path,
)
from webhookd.gateway.jsonshape import JsonInputError
from webhookd.gateway.query import IDEMPOTENCY_KEY_FIELD, SECRET_HEADERS
from webhookd.gateway.routes import Binding
from webhookd.gateway.transcode import VERSION_FIELD
from webhookd.http.errors import precondition_failed

RESUME_CURSOR_FIELD = "after_cursor"
# Where a stream message keeps its position, tried in order (DeliveryLogResponse.entry.cursor).
EVENT_ID_PATHS = ("entry.cursor", "cursor")
WEAK_PREFIX = "W/"
# One entity tag of a list (RFC 9110 §8.8.3): optionally weak, then a quoted opaque tag.
_ENTITY_TAG = re.compile(r'(?:W/)?"[^"]*"')


def _scalar_path(
    descriptor: Descriptor, path: str, types: frozenset[int] | None = None
) -> list[FieldDescriptor] | None:
    fields = resolve_field_path(descriptor, path)
    if fields is None or is_repeated(fields[-1]) or fields[-1].message_type is not None:
        return None
    if types is not None and fields[-1].type not in types:
        return None
    return fields


def precondition_path(binding: Binding) -> list[FieldDescriptor] | None:
    """The field If-Match sets for this RPC, or None when the RPC takes no version or names no
    existing resource in its path (a create's body `version` is not a precondition)."""
    if not binding.template.variables:
        return None
    request = binding.method.input_type
    own = _scalar_path(request, VERSION_FIELD, INTEGER_TYPES)
    if own is not None:
        return own
    if binding.body not in ("", "*"):
        return _scalar_path(request, f"{binding.body}.{VERSION_FIELD}", INTEGER_TYPES)
    return None


def apply_if_match(binding: Binding, request: Message, header: str | None) -> bool:
    """Set the version from If-Match; True when the request is now conditional on the header
    (so a stale version is 412 Precondition Failed rather than 409)."""
    if header is None or header.strip() == "*":
        return False
    path = precondition_path(binding)
    if path is None:
        return False
    if header.strip().startswith(WEAK_PREFIX):
        raise precondition_failed(
            "If-Match: a weak entity tag never matches (If-Match compares strongly): send the ETag as given",
            reason="WEAK_ETAG",
        )
    version = parse_etag(header)
    if version is None:
        raise JsonInputError([FieldViolation("If-Match", 'expected one strong ETag such as "3"')])
    current = get_path(request, path)
    if isinstance(current, int) and current not in (0, version):
        field = ".".join(f.name for f in path)
        raise JsonInputError([FieldViolation(field, f"is {current} but If-Match says {version}")])
    try:
        setattr(mutable_parent(request, path), path[-1].name, version)
    except ValueError:  # past the field's integer type
        raise JsonInputError([FieldViolation("If-Match", "names a version out of range")]) from None
    return True


# ASCII digits only (str.isdigit also takes '٣' and '²'), and no more than an int64 has.
_VERSION = re.compile(r"[0-9]{1,19}")


def parse_etag(header: str) -> int | None:
    """`"3"` → 3. Bare `3` is accepted too; lists are not (a write is conditional on exactly one
    version), and weak tags are refused before this (they never match)."""
    text = header.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1]
    return int(text) if _VERSION.fullmatch(text) else None


def not_modified(header: str | None, current_etag: str) -> bool:
    """If-None-Match names the current ETag, or is `*` (RFC 9110 §13.1.2: weak comparison, so
    `W/"3"` and `"3"` both match `"3"`)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    current = current_etag.removeprefix(WEAK_PREFIX)
    return any(tag.removeprefix(WEAK_PREFIX) == current for tag in _ENTITY_TAG.findall(header))


def etag(version: Any) -> str | None:
    if isinstance(version, bool) or not isinstance(version, int):
        return None
    return f'"{version}"'


def body_descriptor(binding: Binding) -> Descriptor | None:
    """The message the HTTP response body is: the response or its response_body field."""
    output = binding.method.output_type
    if not binding.response_body:
        return output
    field = output.fields_by_name.get(binding.response_body)
    return field.message_type if field is not None and not is_repeated(field) else None


def has_etag(binding: Binding) -> bool:
    descriptor = body_descriptor(binding)
    return descriptor is not None and _scalar_path(descriptor, VERSION_FIELD, INTEGER_TYPES) is not None


def etag_for_body(binding: Binding, body: Any) -> str | None:
    if not has_etag(binding) or not isinstance(body, dict):
        return None
    return etag(body.get(VERSION_FIELD))


def apply_idempotency_key(request: Message, headers: Sequence[str]) -> None:
    """The Idempotency-Key header (every value sent) as the request's key. One that is empty (a
    client's unset variable) or sent more than once is refused: the write would be made unkeyed, or
    under whichever key a proxy picked, and a retry could then make it twice."""
    if not headers or _scalar_path(descriptor_of(request), IDEMPOTENCY_KEY_FIELD) is None:
        return
    if len(headers) > 1:
        raise JsonInputError(
            [FieldViolation(IDEMPOTENCY_KEY_FIELD, "the Idempotency-Key header was sent more than once")]
        )
    key = header_text(headers[0], "Idempotency-Key", IDEMPOTENCY_KEY_FIELD).strip()
    current = getattr(request, IDEMPOTENCY_KEY_FIELD)
    if not key:
        raise JsonInputError(
            [FieldViolation(IDEMPOTENCY_KEY_FIELD, "the Idempotency-Key header is empty: send a key, or no header")]
        )
    if current and current != key:
        raise JsonInputError([FieldViolation(IDEMPOTENCY_KEY_FIELD, "differs from the Idempotency-Key header")])
    setattr(request, IDEMPOTENCY_KEY_FIELD, key)


def accepts_idempotency_key(binding: Binding) -> bool:
    return _scalar_path(binding.method.input_type, IDEMPOTENCY_KEY_FIELD) is not None


def secret_headers(binding: Binding) -> dict[str, str]:
    """Request field → header, for the secrets this binding takes from a header (the query never
    carries one). A body that is the field itself carries it; one that is the whole request may, and
    the header is then taken too: a caller sends its secret as create taught it, and ignoring the
    header would hand it a random secret in place of the one its receivers hold."""
    request = binding.method.input_type
    return {
        field: header
        for field, header in SECRET_HEADERS.items()
        if binding.body != field and _scalar_path(request, field) is not None
    }


def apply_secret_headers(binding: Binding, request: Message, headers: Mapping[str, str]) -> None:
    for field, header in secret_headers(binding).items():
        value = headers.get(header.lower())
        if not value:
            continue
        secret = header_text(value, header, field).strip()
        in_body = getattr(request, field)
        if in_body and in_body != secret:
            raise JsonInputError([FieldViolation(field, f"differs from the {header} header: send one of them")])
        setattr(request, field, secret)


def header_text(value: str, header: str, field: str) -> str:
    """A header that carries a request field, as the UTF-8 text its bytes are. ASGI hands header
    bytes over as Latin-1, so a UTF-8 `é` arrived as `Ã©`: a secret the caller does not hold, a key
    its twin in a body does not equal. Bytes that are not UTF-8 are refused, not guessed at."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise JsonInputError([FieldViolation(field, f"the {header} header is not UTF-8")]) from None


def apply_last_event_id(request: Message, header: str | None) -> None:
    """An EventSource reconnect resumes after the last event it saw, overriding the query."""
    if header and _scalar_path(descriptor_of(request), RESUME_CURSOR_FIELD) is not None:
        setattr(request, RESUME_CURSOR_FIELD, header.strip())


def accepts_last_event_id(binding: Binding) -> bool:
    return binding.server_streaming and _scalar_path(binding.method.input_type, RESUME_CURSOR_FIELD) is not None


def event_id_path(descriptor: Descriptor) -> list[FieldDescriptor] | None:
    for path in EVENT_ID_PATHS:
        fields = _scalar_path(descriptor, path)
        if fields is not None:
            return fields
    return None


def event_id(message: Message, path: Sequence[FieldDescriptor] | None) -> str | None:
    if path is None:
        return None
    value = get_path(message, path)
    return str(value) if value not in (None, "", 0) else None
