"""The REST gateway's Starlette app: routes built at start-up from the services' google.api.http
options, plus /healthz and the OpenAPI document. Every error leaves in the AIP-193 shape."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from webhookd.gateway.calls import Channel, Invoker, request_id
from webhookd.gateway.cors import with_cors
from webhookd.gateway.descriptors import default_descriptor_set, default_services, load_comments
from webhookd.gateway.documents import OPENAPI_PATH
from webhookd.gateway.endpoint import CallSettings, RpcHandler, RpcRoute
from webhookd.gateway.openapi import build_openapi
from webhookd.gateway.routes import allowed_methods, bindings_for_services, group_by_template
from webhookd.http.errors import (
    ApiError,
    error_response,
    internal,
    method_not_allowed,
    route_not_found,
    status_name_for_http,
)
from webhookd.http.operations import health_route
from webhookd.http.trailing_slash import redirect_slashes_by_path

MIB = 1024 * 1024


def create_gateway_app(
    channel: Channel,
    *,
    max_request_bytes: int = MIB,
    extra_routes: list[BaseRoute] | None = None,
    services: Sequence[ServiceDescriptor] | None = None,
    descriptor_set: Path | str | None = None,
    unary_timeout_seconds: float | None = 30.0,
    stream_grace_seconds: float = 0.5,
    heartbeat_seconds: float = 15.0,
    closing: asyncio.Event | None = None,
    cors_origins: Sequence[str] = (),
) -> ASGIApp:
    """Build the gateway over `channel`: a Starlette app (http/server.py serves it inside
    `DefaultHeaders`, as every app).

    services: defaults to cpod.integration.v1.WebhookService.
    descriptor_set: a FileDescriptorSet with source info, for OpenAPI descriptions; defaults to
        the one shipped in the stubs package, if present.
    extra_routes: served before the RPC routes (/readyz, /metrics, the inbound receiver,
        /playground, /api/v1/manifest).
    closing: set when the server begins to stop; streams then end with an UNAVAILABLE frame.
    cors_origins: the origins whose pages may call the API's routes (gateway/cors.py); empty: none.
    """
    services = list(services) if services is not None else default_services()
    comments = load_comments(descriptor_set if descriptor_set is not None else default_descriptor_set())
    openapi_document = build_openapi(services, comments)
    handler = RpcHandler(
        Invoker(channel),
        CallSettings(max_request_bytes, unary_timeout_seconds, stream_grace_seconds, heartbeat_seconds),
        closing or asyncio.Event(),
    )

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document)

    rpc_routes = group_by_template(bindings_for_services(services))
    routes: list[BaseRoute] = [
        health_route(),
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
        *(extra_routes or []),
        *(RpcRoute(template, by_method, handler) for template, by_method in rpc_routes),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_exception,
            ApiError: _api_error,
            Exception: _unexpected,
        },
    )
    api_methods = sorted({method for _, by_method in rpc_routes for method in allowed_methods(by_method)})
    return with_cors(redirect_slashes_by_path(app), cors_origins, api_methods)


async def _http_exception(request: Request, exc: Any) -> Response:
    """Starlette's own 404/405 (unknown path, wrong method on a plain route) in the AIP shape."""
    status = int(exc.status_code)
    rid = request_id(request.headers)
    if status == 404:
        return error_response(route_not_found(request.method, request.url.path), request_id=rid)
    if status == 405:
        allowed = [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()]
        return error_response(method_not_allowed(request.method, request.url.path, allowed), request_id=rid)
    error = ApiError(status, status_name_for_http(status), str(exc.detail), headers=dict(exc.headers or {}))
    return error_response(error, request_id=rid)


async def _api_error(request: Request, exc: Any) -> Response:
    return error_response(exc, request_id=request_id(request.headers))


async def _unexpected(request: Request, exc: Any) -> Response:
    # Starlette raises it again after this answer: http/unexpected_errors.py logs it, once.
    rid = request_id(request.headers)
    return error_response(internal(rid), request_id=rid)
