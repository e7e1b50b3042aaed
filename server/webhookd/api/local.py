"""gRPC calls served inside the process: what the REST gateway calls when it runs beside the servicers.

It offers the part of `grpc.aio.Channel` the gateway uses (`unary_unary`, `unary_stream` and the
calls they make), and runs each call through the same interceptor as a network call (request id,
metrics, authentication, request checks, error mapping) with the message objects themselves: no
serialising, no loopback connection, no HTTP/2. A failed call raises an error with the interface
of `grpc.aio.AioRpcError` (code, details, trailing metadata with the rich status), so the gateway
maps it to HTTP exactly as it maps a remote one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from webhookd.api.interceptor import CallInterceptor

Metadata = Sequence[tuple[str, str]]
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class LocalRpcError(grpc.RpcError):
    """A call that ended with a status other than OK, shaped like grpc.aio.AioRpcError."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailing = tuple(trailing)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Metadata:
        return self._trailing


class _Aborted(grpc.aio.AbortError):
    """Raised by `abort_with_status`, as grpc.aio does: the interceptor lets it pass as it is."""


class _LocalContext:
    """The parts of grpc.aio.ServicerContext the interceptor and servicers use."""

    def __init__(self, metadata: Metadata, write: Callable[[Message], Any] | None = None) -> None:
        self._metadata = tuple(metadata)
        self._write = write
        self._code: grpc.StatusCode | None = None
        self.error: LocalRpcError | None = None

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort_with_status(self, status: grpc.Status) -> None:
        self._code = status.code
        self.error = LocalRpcError(status.code, status.details, status.trailing_metadata or ())
        raise _Aborted

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        """Nothing to send: in process, a call has no headers."""

    async def write(self, message: Message) -> None:
        assert self._write is not None, "write() on a unary call"
        await self._write(message)


def _error_of(context: _LocalContext, error: BaseException) -> BaseException:
    if isinstance(error, _Aborted) and context.error is not None:
        return context.error
    return error


class _UnaryCall:
    def __init__(self, handler: grpc.RpcMethodHandler) -> None:
        self._handler = handler

    # `timeout` because the gateway calls grpc.aio multi-callables with it.
    async def __call__(
        self,
        request: Message,
        *,
        metadata: Metadata = (),
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Message:
        context = _LocalContext(metadata)
        try:
            async with asyncio.timeout(timeout):
                response: Message = await self._handler.unary_unary(request, context)
        except TimeoutError:
            raise LocalRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except _Aborted as aborted:
            raise _error_of(context, aborted) from None
        return response


class _StreamCall:
    """A server stream: `read()` returns the next message or grpc.aio.EOF; `cancel()` ends it."""

    def __init__(self, handler: grpc.RpcMethodHandler, request: Message, metadata: Metadata) -> None:
        # One message in hand at a time: a reader that stops reading stops the servicer's writes.
        self._messages: asyncio.Queue[Message | BaseException | object] = asyncio.Queue(maxsize=1)
        self._context = _LocalContext(metadata, self._messages.put)
        self._task = asyncio.ensure_future(self._run(handler, request))

    async def _run(self, handler: grpc.RpcMethodHandler, request: Message) -> None:
        try:
            await handler.unary_stream(request, self._context)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - handed to the reader, who raises it
            await self._messages.put(_error_of(self._context, error))
            return
        await self._messages.put(grpc.aio.EOF)

    async def read(self) -> Any:
        item = await self._messages.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> bool:
        return self._task.cancel()


class LocalChannel:
    """Calls `servicer`'s methods of `service` through `interceptor`, inside this process."""

    def __init__(self, service: ServiceDescriptor, servicer: object, interceptor: CallInterceptor) -> None:
        self._handlers: Mapping[str, grpc.RpcMethodHandler] = {
            f"/{service.full_name}/{method.name}": interceptor.wrap(
                f"/{service.full_name}/{method.name}", _handler(getattr(servicer, method.name), method.server_streaming)
            )
            for method in service.methods
        }

    def unary_unary(self, method: str, **_: Any) -> _UnaryCall:
        return _UnaryCall(self._handlers[method])

    def unary_stream(self, method: str, **_: Any) -> Callable[..., _StreamCall]:
        handler = self._handlers[method]

        def start(request: Message, *, metadata: Metadata = (), timeout: float | None = None) -> _StreamCall:
            return _StreamCall(handler, request, metadata)

        return start

    async def close(self) -> None:
        """Nothing to close: there is no connection."""


def _handler(behaviour: Callable[..., Any], streaming: bool) -> grpc.RpcMethodHandler:
    if streaming:
        return grpc.unary_stream_rpc_method_handler(behaviour)
    return grpc.unary_unary_rpc_method_handler(behaviour)
