"""A response's head is parsed apart from its body, so a body that breaks its framing keeps the status.

aiohttp's C parser hands over what it parsed of one read only when the whole read parses. A short
answer comes in one read, head and body together, so bytes past its Content-Length (a length counted
in characters, not bytes), a body on a 204, or a chunk size that is not one raised there and took the
head with them: a 2xx was a connection error (retried, and counted towards the auto-pause) while the
same answer split over two reads kept its status, its body's fault only ending the excerpt
(answers.read_excerpt). `HeadFirstHandler` gives the parser each read up to the end of a head first,
then the rest, until the final head (not 1xx) has come; after it, reads go to the parser whole.

A fault in the body after its head (a chunk size that is not hex, chunk data not ended by CRLF) stops
the parser and closes the connection, but aiohttp tells only the head's queue, not the body being read:
a read of it waited for the exchange's whole timeout, the worker's slot held all that time, however
long the receiver kept its side open. `HeadFirstHandler` fails that body with `BrokenFraming`, which
carries what the body had buffered, so the read ends at the fault with all that came before it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import ClientPayloadError
from aiohttp.client_proto import ResponseHandler
from aiohttp.http import RawResponseMessage
from aiohttp.streams import StreamReader

# A head ends at its first empty line; llhttp takes a bare LF for CRLF, as aiohttp does.
_HEAD_ENDS: Final = (b"\n\r\n", b"\n\n")
_KEPT: Final = max(map(len, _HEAD_ENDS)) - 1  # of a read, what a head's end may go on from


class BrokenFraming(ClientPayloadError):
    """The response's body broke its framing. `unread`: what came of it before the fault and was not
    read yet (a body fails at once, its buffer with it)."""

    def __init__(self, message: str, unread: bytes) -> None:
        super().__init__(message)
        self.unread = unread


class HeadFirstHandler(ResponseHandler):
    """aiohttp's protocol for one connection, feeding the parser a head before what follows it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._awaiting_head = False  # a request was sent and its final head has not come yet
        self._before = b""  # the end of the last read, which a head's end may straddle

    def set_response_params(self, **kwargs: Any) -> None:
        # Before aiohttp's: it feeds data_received what came before the request was sent.
        self._awaiting_head = True
        self._before = b""
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        while self._awaiting_head and (end := _head_end(self._before, data)) is not None and end < len(data):
            head, data = data[:end], data[end:]
            self._before = b""
            super().data_received(head)
            if self.exception() is not None:
                return  # the head itself was malformed: the connection is closing
        if self._awaiting_head:
            self._before = (self._before + data)[-_KEPT:]
        body = self._payload  # the body this read goes on with, if its head has come
        failed_before = self.exception() is not None
        super().data_received(data)
        fault = self.exception()
        if body is not None and fault is not None and not failed_before and not body.is_eof():
            _end_broken(body, fault)

    def feed_data(self, data: tuple[RawResponseMessage, StreamReader], size: int = 0) -> None:
        # Called with each head parsed; 1xx are interim (101 is final), as ClientResponse.start reads them.
        code = data[0].code
        if not 100 <= code < 200 or code == 101:
            self._awaiting_head = False
        super().feed_data(data, size)


def _head_end(before: bytes, data: bytes) -> int | None:
    """Where in `data` the first head's end (an empty line) ends, or None when it has none."""
    seen = before + data
    found = [at + len(end) for end in _HEAD_ENDS if (at := seen.find(end)) >= 0]
    return min(found) - len(before) if found else None


def _end_broken(body: StreamReader, fault: BaseException) -> None:
    """Ends `body` at a fault in its framing. A read of a failed body raises before it returns what
    was buffered, so that is taken first and carried by the error; and the body is ended too, for a
    read already woken by its last bytes, which would otherwise wait again, for the timeout."""
    try:
        # Reading it resumes the protocol, which comes back to data_received: the fault is not new there.
        unread = body.read_nowait()
    except (RuntimeError, TimeoutError):  # a read is waiting for data (none is buffered), or timed out
        unread = b""
    body.set_exception(BrokenFraming(f"the response body broke its framing: {fault}", unread), fault)
    body.feed_eof()
