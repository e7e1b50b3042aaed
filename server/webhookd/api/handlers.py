"""Wrap a grpc.aio method handler so code runs around every call, streaming calls included."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Around = Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]


def wrap_handler(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """A handler whose behaviour runs inside `around(context)` for the whole call."""
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def wrapped_unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped_unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        # A coroutine that writes, not an async generator that yields: when the caller goes away,
        # grpc.aio cancels this task, so the stream is closed here, in the call's own context. A
        # generator would be closed later by the garbage collector, in another context, where the
        # interceptors' context variables cannot be reset.
        async def wrapped_unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            async with around(context):
                await write_all(unary_stream(request, context), context)

        return grpc.unary_stream_rpc_method_handler(
            wrapped_unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def wrapped_stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            wrapped_stream_unary, handler.request_deserializer, handler.response_serializer
        )
    stream_stream = handler.stream_stream

    async def wrapped_stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async with around(context):
            async for response in stream_stream(requests, context):
                yield response

    return grpc.stream_stream_rpc_method_handler(
        wrapped_stream_stream, handler.request_deserializer, handler.response_serializer
    )


async def write_all(result: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Sends a streaming behaviour's responses: an async generator's items, or nothing more for a
    coroutine that writes itself (an inner wrapper)."""
    if inspect.isasyncgen(result):
        async with contextlib.aclosing(result) as responses:
            async for response in responses:
                await context.write(response)
    else:
        await result


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode()
    return None
