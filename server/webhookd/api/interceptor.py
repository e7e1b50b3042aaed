"""The one interceptor every gRPC call passes: request id, metrics and log line, authentication,
request checks, and domain errors mapped to status.

One interceptor rather than a stack: each layer of a stack re-wraps the handler on every call, and
the order between them (the request id must be set before anything logs, errors must be mapped
after authentication fails) is easier to read in one function. Handlers are wrapped once per
method and kept.

Streaming handlers are async generators in the servicers; the wrapper is a coroutine that writes
what they yield. When the caller goes away grpc.aio cancels the call's task, so the generator is
closed here, in the call's own context, where the context variables set for it can be reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from webhookd.api.errors import code_name, internal_status, to_status
from webhookd.api.request_checks import check_request
from webhookd.auth.context import reset_scope, set_scope
from webhookd.auth.tokens import TokenVerifier, bearer_token, single_authorization
from webhookd.domain import errors
from webhookd.domain.history import reader_stalled
from webhookd.observability.log_throttle import ThrottledLog
from webhookd.observability.metrics import GrpcMetrics
from webhookd.observability.request_ids import REQUEST_ID_HEADER, current_request_id, settle_request_id

log = logging.getLogger("webhookd.api")
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
# Operators probe these without a token (grpcurl list/describe, load balancer health checks).
PUBLIC_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def metadata_value(context: Context, key: str) -> str | None:
    values = metadata_values(context, key)
    return values[0] if values else None


def metadata_values(context: Context, key: str) -> list[str]:
    return [
        value if isinstance(value, str) else value.decode()
        for name, value in context.invocation_metadata() or ()
        if name == key
    ]


def wants_fresh_read(context: Context) -> bool:
    """`cache-control: no-cache` (REST passes the header on): read the database, not a cache."""
    value = metadata_value(context, "cache-control")
    return value is not None and "no-cache" in value.lower()


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        metrics: GrpcMetrics | None = None,
        *,
        failures: ThrottledLog | None = None,
        stall_seconds: float = 60.0,
    ) -> None:
        """stall_seconds: how long a stream may wait to hand its reader one response before it ends."""
        self._verifier = verifier
        self._stall_seconds = stall_seconds
        self._metrics = metrics
        self._failures = failures or ThrottledLog(log)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler  # unknown method: grpc answers UNIMPLEMENTED
            wrapped = self.wrap(method, handler)
            self._wrapped[method] = wrapped
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with every call to it passing through this interceptor (network or local)."""
        authenticate = not method.startswith(PUBLIC_SERVICES)
        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
                async with self._call(method, request, context, authenticate=authenticate):
                    return await behaviour(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream_behaviour = handler.unary_stream

            async def stream(request: Any, context: Context) -> None:
                async with self._call(method, request, context, authenticate=authenticate) as caller_token:
                    writing = _write_all(stream_behaviour(request, context), context, self._stall_seconds)
                    await _within_token(caller_token, self._verifier, writing)

            return grpc.unary_stream_rpc_method_handler(
                stream, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        # Client streaming exists only in server reflection, which is public and left as it is.
        return handler

    @contextlib.asynccontextmanager
    async def _call(
        self, method: str, request: Any, context: Context, *, authenticate: bool
    ) -> AsyncIterator[tuple[str, float] | None]:
        """Runs the call's block with its request id, scope and checks; yields the caller's token and
        the time (as time.time() counts) past which it is no longer accepted, None for a public call."""
        request_id_token = current_request_id.set(settle_request_id(metadata_value(context, REQUEST_ID_HEADER)))
        started = time.perf_counter()
        code = "OK"
        scope_token = None
        caller_token = None
        try:
            if authenticate:
                token = bearer_token(single_authorization(metadata_values(context, "authorization")))
                scope, token_expires_at = await self._verifier.authenticate(token)
                scope_token = set_scope(scope)
                caller_token = (token, token_expires_at)
            if isinstance(request, Undecodable):
                raise errors.Invalid.field("request", f"is not a valid message: {request.reason}")
            check_request(request)
            yield caller_token
        except errors.DomainError as error:
            code = code_name(error)
            if error.public_message != error.message:
                # What the caller is not told (an outage's address, a driver's words) is for operators:
                # once an interval per kind, as an outage fails every call alike.
                self._failures.warning(
                    (code, error.reason, error.public_message),
                    "rpc failed",
                    {"rpc": method, "code": code, "reason": error.message},
                )
            try:
                await context.abort_with_status(to_status(error))
            except grpc.aio.InternalError as refused:
                if not _caller_left(refused):
                    raise
                code = "CANCELLED"
                raise asyncio.CancelledError from None
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            log.exception("unhandled error")
            await context.abort_with_status(internal_status(current_request_id.get()))
        finally:
            if scope_token is not None:
                reset_scope(scope_token)
            self._observe(method, code, time.perf_counter() - started)
            current_request_id.reset(request_id_token)

    def _observe(self, method: str, code: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe(method, code, seconds)
        # Health checks and reflection are probes, not traffic: their lines only show at DEBUG.
        level = logging.DEBUG if method.startswith(PUBLIC_SERVICES) else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "rpc", extra={"rpc": method, "code": code, "duration_ms": round(seconds * 1000, 3)})


class Undecodable:
    """A request whose bytes are not its message (bad UTF-8 in a string, a truncated field): told to
    the caller as INVALID_ARGUMENT once it is authenticated. grpc.aio answers a deserializer's error
    with UNKNOWN and the exception's class in the details."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def read(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as error:
            return Undecodable(str(error))

    return read


def _caller_left(error: grpc.aio.InternalError) -> bool:
    """Whether core ran a call's status batch and it failed, as it does once the caller has left: a
    stalled stream's status waits behind the message its reader never took, and a reader that leaves
    instead of reading ends the call. A batch core refuses to start ("Failed grpc_call_start_batch")
    is a fault of ours and stays an error."""
    return str(error).startswith('Failed "execute_batch"')


def _aborted_code(context: Context) -> str:
    code = context.code()
    return str(code.name) if isinstance(code, grpc.StatusCode) else "UNKNOWN"


async def _within_token(
    caller_token: tuple[str, float] | None, verifier: TokenVerifier, writing: Awaitable[None]
) -> None:
    """A stream that follows the log lives no longer than the token it was opened with: past its
    expiry, or once a JWKS load drops its key, it ends UNAUTHENTICATED, and the caller resumes from its
    last cursor with a new token. Otherwise a token that expired, or whose key was dropped (perhaps
    leaked, and the token minted to expire in a century), would go on reading while it stayed open."""
    if caller_token is None:
        await writing
        return
    token, expires_at = caller_token
    deadline = asyncio.timeout(expires_at - time.time())
    try:
        async with deadline:
            refused = asyncio.create_task(_end_now_when_refused(verifier, token, deadline))
            try:
                await writing
            finally:
                refused.cancel()
    except TimeoutError:
        if not deadline.expired():
            raise
        raise errors.Unauthenticated(
            "the token expired, or its key was dropped, while the stream was open: open it again with a new token,"
            " after the last cursor read"
        ) from None


async def _end_now_when_refused(verifier: TokenVerifier, token: str, deadline: asyncio.Timeout) -> None:
    await verifier.until_refused(token)
    deadline.reschedule(asyncio.get_running_loop().time())


async def _write_all(result: Any, context: Context, stall_seconds: float) -> None:
    """Sends a streaming behaviour's responses: an async generator's items (the servicers), or
    nothing more for a coroutine that writes them itself (grpc.health's Watch).

    A write waits while the reader's window (or, through the gateway, its HTTP buffers) is full; one
    that waits past `stall_seconds` ends the stream ABORTED, the generator closed first so its stream
    place goes back: a reader alive but never reading would otherwise hold that place for ever."""
    if not inspect.isasyncgen(result):
        await result
        return
    clock = asyncio.get_running_loop().time
    write = _PendingWrite()
    stalled = asyncio.timeout(None)
    headers_sent = False
    try:
        async with stalled, contextlib.aclosing(result) as responses:
            watch = asyncio.create_task(_end_when_stalled(write, stalled, stall_seconds))
            try:
                async for response in responses:
                    if not headers_sent:
                        # The headers go alone, not with the first response: grpc.aio counts them sent
                        # only once that write completes, so after a stall cut it, the abort sent them
                        # again, core refused the status (TOO_MANY_OPERATIONS), and the reader waited for
                        # ever. HTTP/2 does not flow-control headers: this does not wait on the window.
                        await context.send_initial_metadata(())
                        headers_sent = True
                    write.since = clock()
                    await context.write(response)
                    write.since = None
            finally:
                watch.cancel()
    except TimeoutError:
        if not stalled.expired():
            raise
        raise reader_stalled(stall_seconds) from None


class _PendingWrite:
    """When the write under way began (loop time), None between writes: a clock read per write (about
    0.1 µs) where a timer per write cost about 5 µs of the DeliveryLog's some 75 µs an entry."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None


async def _end_when_stalled(write: _PendingWrite, stalled: asyncio.Timeout, seconds: float) -> None:
    """Wakes when the write under way would have waited `seconds` (or every `seconds` while none is),
    and expires `stalled` if it still waits."""
    loop = asyncio.get_running_loop()
    while True:
        since = write.since
        waited = 0.0 if since is None else loop.time() - since
        if waited >= seconds:
            stalled.reschedule(loop.time())
            return
        await asyncio.sleep(seconds - waited)
