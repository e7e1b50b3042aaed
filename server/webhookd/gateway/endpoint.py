"""One HTTP request through one RPC: read, transcode, call over the channel, answer.

`RpcRoute` is a Starlette route per path template (all HTTP methods bound to it), so the router
tells "no such path" (404) from "path exists, method does not" (405, with Allow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from webhookd.domain.errors import DomainError
from webhookd.gateway import headers as http_headers
from webhookd.gateway.calls import Invoker, call_metadata, request_id
from webhookd.gateway.jsonshape import JsonInputError, json_key, message_to_json
from webhookd.gateway.routes import Binding, PathTemplate, allowed_methods, binding_for
from webhookd.gateway.streaming import STREAM_HEADERS, first_read, relay, stream_format
from webhookd.gateway.transcode import HttpInput, build_request
from webhookd.http.accept import preferred
from webhookd.http.body import read_json_body
from webhookd.http.errors import (
    ApiError,
    error_response,
    from_domain_error,
    from_rpc_error,
    invalid_argument,
    method_not_allowed,
    not_acceptable,
)
from webhookd.http.media_types import JSON_MEDIA_TYPE, NDJSON_MEDIA_TYPE, STREAM_MEDIA_TYPES

NOT_MODIFIED = 304


@dataclass(frozen=True)
class CallSettings:
    max_request_bytes: int
    unary_timeout_seconds: float | None  # a deadline for unary calls; streams may follow forever
    stream_grace_seconds: float  # how long a stream waits for its first message before answering 200
    heartbeat_seconds: float  # SSE keep-alive comment interval


def response_payload(binding: Binding, response: Message) -> Any:
    """The JSON body: the whole response, or the field named by response_body."""
    payload = message_to_json(response)
    if binding.response_body:
        field = binding.method.output_type.fields_by_name[binding.response_body]
        return payload[json_key(field)]
    return payload


def response_media_type(binding: Binding, accept_lines: Sequence[str]) -> str:
    """What the answer is written in, by the request's Accept: JSON for a unary RPC, NDJSON or SSE for
    a stream (NDJSON unless SSE ranks higher). ApiError 406 when Accept admits none of them."""
    # Lines of one field are one list (RFC 9110 5.3); none is an absent header.
    accept = ", ".join(accept_lines) if accept_lines else None
    offers = STREAM_MEDIA_TYPES if binding.server_streaming else (JSON_MEDIA_TYPE,)
    chosen = preferred(accept, offers)
    if chosen is None and binding.server_streaming and preferred(accept, (JSON_MEDIA_TYPE,)) is not None:
        # Each NDJSON line is JSON: clients that send `Accept: application/json` everywhere get a stream.
        chosen = NDJSON_MEDIA_TYPE
    if chosen is None:
        raise not_acceptable(offers)
    return chosen


class RpcHandler:
    def __init__(self, invoker: Invoker, settings: CallSettings, closing: asyncio.Event) -> None:
        """closing: set when the server begins to stop; streams end on it."""
        self._invoker = invoker
        self._settings = settings
        self._closing = closing

    async def __call__(self, binding: Binding, request: Request) -> Response:
        rid = request_id(request.headers)
        conditional = False
        try:
            # Before anything is done on the request's behalf: a write whose answer cannot be given is not made.
            media_type = response_media_type(binding, request.headers.getlist("accept"))
            body = None
            if binding.body:
                field = "" if binding.body == "*" else binding.body
                body = await read_json_body(request, self._settings.max_request_bytes, field=field)
            http = HttpInput(
                request.path_params,
                request.query_params.multi_items(),
                body.value if body is not None else None,
                body.text if body is not None else None,
            )
            message = build_request(binding, http)
            conditional = http_headers.apply_if_match(binding, message, request.headers.get("if-match"))
            http_headers.apply_idempotency_key(message, request.headers.getlist("idempotency-key"))
            http_headers.apply_secret_headers(binding, message, request.headers)
            metadata = call_metadata(request.headers, rid)
            if binding.server_streaming:
                http_headers.apply_last_event_id(message, request.headers.get("last-event-id"))
                return await self._stream(binding, message, metadata, media_type, rid)
            return await self._unary(binding, message, metadata, request, rid)
        except JsonInputError as error:
            return error_response(invalid_argument(error.violations), request_id=rid)
        except ApiError as error:
            return error_response(error, request_id=rid)
        except DomainError as error:
            return error_response(from_domain_error(error), request_id=rid)
        except grpc.RpcError as error:
            return error_response(from_rpc_error(error, precondition_from_header=conditional), request_id=rid)

    async def _unary(
        self, binding: Binding, message: Message, metadata: tuple[tuple[str, str], ...], request: Request, rid: str
    ) -> Response:
        call = self._invoker.unary(binding.method)
        response = await call(message, metadata=metadata, timeout=self._settings.unary_timeout_seconds)
        payload = response_payload(binding, response)
        headers = {"X-Request-Id": rid}
        etag = http_headers.etag_for_body(binding, payload)
        if etag is not None:
            headers["ETag"] = etag
            if binding.http_method == "GET" and http_headers.not_modified(request.headers.get("if-none-match"), etag):
                return Response(status_code=NOT_MODIFIED, headers=headers)
        return JSONResponse(payload, headers=headers)

    async def _stream(
        self,
        binding: Binding,
        message: Message,
        metadata: tuple[tuple[str, str], ...],
        media_type: str,
        rid: str,
    ) -> Response:
        call = self._invoker.server_stream(binding.method)(message, metadata=metadata)
        try:
            pending = await first_read(call, self._settings.stream_grace_seconds)
        except BaseException:
            call.cancel()
            raise
        fmt = stream_format(media_type, self._settings.heartbeat_seconds)
        id_path = http_headers.event_id_path(binding.method.output_type)

        def render(item: Message) -> tuple[Any, str | None]:
            return response_payload(binding, item), http_headers.event_id(item, id_path)

        return StreamingResponse(
            relay(call, pending, fmt, render, self._closing),
            media_type=fmt.media_type,
            headers={**STREAM_HEADERS, "X-Request-Id": rid},
        )


def raw_request_path(scope: Scope) -> str:
    """The still-encoded path, so `%2F` and `%3A` inside a variable are not mistaken for
    separators; the mount prefix (root_path) is removed."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope["path"])
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


class RpcRoute(BaseRoute):
    def __init__(self, template: PathTemplate, bindings: Mapping[str, Binding], handler: RpcHandler) -> None:
        self.template = template
        self.bindings = dict(bindings)
        self._handler = handler

    @property
    def path(self) -> str:
        """The route's template, as metrics and access logs label it."""
        return self.template.text

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        binding = binding_for(self.bindings, scope["method"])
        # Every template of a route has one shape; the binding's own names its variables.
        params = (binding.template if binding is not None else self.template).match(raw_request_path(scope))
        if params is None:
            return Match.NONE, {}
        child: Scope = {"path_params": params, "endpoint": self.handle}
        return (Match.FULL if binding is not None else Match.PARTIAL), child

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        # RPC routes are addressed by their templates, not by Starlette route names.
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        binding = binding_for(self.bindings, scope["method"])
        if binding is None:
            error = method_not_allowed(scope["method"], request.url.path, allowed_methods(self.bindings))
            response: Response = error_response(error, request_id=request_id(request.headers))
        else:
            response = await self._handler(binding, request)
        if scope["method"] == "HEAD":
            response = without_body(response)
        await response(scope, receive, send)


def without_body(response: Response) -> Response:
    """The answer to a HEAD: the GET's status and headers (Content-Length included), no body."""
    return Response(status_code=response.status_code, headers=response.headers)
