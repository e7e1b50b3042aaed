"""Verify the bearer JWT on every call and set the call's Scope; health and reflection stay open."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

from webhookd.api.handlers import metadata_value, wrap_handler
from webhookd.auth.context import reset_scope, set_scope
from webhookd.auth.tokens import TokenVerifier, bearer_token

# Operators probe these without a token (grpcurl list/describe, load balancer health checks).
PUBLIC_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(PUBLIC_SERVICES):
            return handler
        return wrap_handler(handler, self._authenticated)

    @asynccontextmanager
    async def _authenticated(self, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        scope = self._verifier.verify(bearer_token(metadata_value(context, "authorization")))
        scope_token = set_scope(scope)
        try:
            yield
        finally:
            reset_scope(scope_token)
