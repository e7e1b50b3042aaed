"""Server-streaming RPCs over HTTP: NDJSON by default, Server-Sent Events on request.

NDJSON: one JSON message per line; a failure after the response started is a last line
`{"error": {...}}` (AIP-193 shape). SSE: `id:` is the message's cursor when it has one, `data:`
the JSON message; a failure is `event: error`. Frames are yielded as they arrive (no buffering),
and SSE sends a comment heartbeat so idle proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import json
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from webhookd.domain.history import server_shutting_down
from webhookd.http.errors import from_domain_error, from_rpc_error
from webhookd.http.media_types import NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE

# Headers that stop reverse proxies (nginx) and caches from holding frames back; no-store rather than
# no-cache, as every other answer (http/response_headers.py): the frames are a tenant's deliveries.
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
# A stream's last frame when the server stops: what gRPC callers get, UNAVAILABLE, to retry elsewhere.
SHUTTING_DOWN = from_domain_error(server_shutting_down())


def _json_line(payload: Any) -> str:
    # Compact JSON never contains a raw newline, so one message is one line.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def ndjson_frame(payload: Any) -> bytes:
    return (_json_line(payload) + "\n").encode()


def sse_frame(payload: Any, *, event_id: str | None = None, event: str | None = None) -> bytes:
    lines = []
    if event:
        lines.append(f"event: {_single_line(event)}")
    if event_id:
        lines.append(f"id: {_single_line(event_id)}")
    lines.append(f"data: {_json_line(payload)}")
    return ("\n".join(lines) + "\n\n").encode()


def sse_comment(text: str) -> bytes:
    return f": {_single_line(text)}\n\n".encode()


def _single_line(text: str) -> str:
    # A newline would end the field early; NUL makes browsers drop the id.
    return text.replace("\r", " ").replace("\n", " ").replace("\0", "")


@dataclass(frozen=True)
class StreamFormat:
    media_type: str
    heartbeat_seconds: float | None

    def message(self, payload: Any, event_id: str | None) -> bytes:
        if self.media_type == SSE_MEDIA_TYPE:
            return sse_frame(payload, event_id=event_id)
        return ndjson_frame(payload)

    def error(self, payload: Any) -> bytes:
        if self.media_type == SSE_MEDIA_TYPE:
            return sse_frame(payload, event="error")
        return ndjson_frame(payload)

    def heartbeat(self) -> bytes:
        return sse_comment("keep-alive") if self.media_type == SSE_MEDIA_TYPE else b""


def stream_format(media_type: str, heartbeat_seconds: float) -> StreamFormat:
    """The stream's framing in `media_type` (endpoint.response_media_type chose it)."""
    if media_type == SSE_MEDIA_TYPE:
        return StreamFormat(SSE_MEDIA_TYPE, heartbeat_seconds)
    return StreamFormat(NDJSON_MEDIA_TYPE, None)


async def first_read(call: Any, grace_seconds: float) -> asyncio.Future[Any]:
    """Start reading and wait briefly for the first message, so a call that fails at once (bad
    token, bad request, not found) is answered with its real HTTP status instead of a 200 stream
    holding an error frame. A quiet `follow` stream starts after the grace period.

    Raises the grpc.RpcError when the call failed within the grace period.
    """
    pending: asyncio.Future[Any] = asyncio.ensure_future(call.read())
    done, _ = await asyncio.wait({pending}, timeout=grace_seconds)
    if done:
        error = pending.exception()
        if error is not None:
            raise error
    return pending


async def relay(
    call: Any,
    pending: asyncio.Future[Any],
    fmt: StreamFormat,
    render: Callable[[Message], tuple[Any, str | None]],
    closing: asyncio.Event,
) -> AsyncIterator[bytes]:
    """Frames for each message of `call`, from the read already in flight; ends the call when
    the client goes away (Starlette cancels the iteration), and with an UNAVAILABLE frame once the
    server is `closing`: a following stream never ends by itself, and shutdown would wait for it."""
    closed = asyncio.ensure_future(closing.wait())
    try:
        while True:
            done, _ = await asyncio.wait({pending, closed}, timeout=fmt.heartbeat_seconds, return_when=FIRST_COMPLETED)
            if not done:
                yield fmt.heartbeat()
                continue
            if pending not in done:
                yield fmt.error(SHUTTING_DOWN.body())
                return
            try:
                message = pending.result()
            except grpc.RpcError as error:
                yield fmt.error(from_rpc_error(error).body())
                return
            if message is grpc.aio.EOF:
                return
            payload, event_id = render(message)
            yield fmt.message(payload, event_id)
            pending = asyncio.ensure_future(call.read())
    finally:
        closed.cancel()
        pending.cancel()
        call.cancel()
