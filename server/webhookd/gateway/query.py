"""Which request fields a binding takes from the URL query: one descriptor walk that the
transcoder (what is accepted), the OpenAPI document (what is advertised) and the Playground
manifest (what is offered) all read, so the three cannot disagree.

google.api.http: a field that neither the path nor the body binds may come from the query when
it has a one-string form (a scalar, an enum, or a well-known type written as one string); a
repeated one repeats the key, and a nested singular message is expanded as `a.b`. Secrets are the
exception: a URL ends up in proxy and browser logs, so they come from a header (headers.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from webhookd.gateway.descriptors import has_one_string_form, is_output_only, is_repeated, is_well_known
from webhookd.gateway.routes import Binding

# Segments in a parameter's name at most (`a.b.c`): deeper filters belong in a body.
MAX_QUERY_DEPTH = 3
# Request fields that hold a secret, and the header that carries each instead of the query
# (headers.py reads it).
SECRET_HEADERS: Mapping[str, str] = MappingProxyType({"signing_secret": "Webhook-Signing-Secret"})
# The request field the Idempotency-Key header carries (headers.py), where a body does not: one way
# to send it, the one clients of Stripe-like APIs know.
IDEMPOTENCY_KEY_FIELD = "idempotency_key"
_HEADER_FIELDS = frozenset({*SECRET_HEADERS, IDEMPOTENCY_KEY_FIELD})


@dataclass(frozen=True)
class QueryParameter:
    name: str  # the proto field names joined by dots: `filter.min_size`
    path: tuple[FieldDescriptor, ...]  # from the request's field down to the leaf

    @property
    def leaf(self) -> FieldDescriptor:
        return self.path[-1]

    @property
    def repeated(self) -> bool:
        return is_repeated(self.leaf)


@functools.cache  # transcoding asks on every request; descriptors do not change while serving
def query_parameters(binding: Binding) -> Mapping[str, QueryParameter]:
    """Every query parameter the binding's RPC accepts, by name, in field order."""
    if binding.body == "*":
        return MappingProxyType({})  # the body carries the whole request
    request = binding.method.input_type
    found = _walk(binding, request, (), frozenset({request.full_name}))
    return MappingProxyType({parameter.name: parameter for parameter in found})


def _walk(
    binding: Binding, message: Descriptor, prefix: tuple[FieldDescriptor, ...], enclosing: frozenset[str]
) -> Iterator[QueryParameter]:
    for field in message.fields:
        path = (*prefix, field)
        name = ".".join(f.name for f in path)
        if name == binding.body or name in binding.path_fields or is_output_only(field) or name in _HEADER_FIELDS:
            continue
        nested = field.message_type
        if nested is not None and is_repeated(field):
            continue  # repeated messages, maps among them, have no one-string form per item
        if nested is None or has_one_string_form(nested):
            yield QueryParameter(name, path)
        elif not is_well_known(nested) and nested.full_name not in enclosing and len(path) < MAX_QUERY_DEPTH:
            yield from _walk(binding, nested, path, enclosing | {nested.full_name})
