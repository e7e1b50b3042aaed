"""Keep-alive that never hands a delivery someone else's answer.

aiohttp reuses a pooled connection when it is still open (`BaseConnector._get` checks
`is_connected()` only). A receiver that writes an answer nobody asked for while the connection idles
(a second answer to the last request, say) leaves it buffered there, and the next request on that
connection reads it as its own at once: its body is never sent and the attempt is recorded as the
stale answer's. Such a connection says so (`ResponseHandler.should_close`: buffered data, an error,
an unfinished payload), so `KeepAliveConnector` closes it and takes the next one instead.

Every connection of a delivery session is made here, so its protocol is chosen here too:
`framing.HeadFirstHandler`, which keeps a response's status when its body breaks its framing.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection

from webhookd.delivery.framing import HeadFirstHandler


class KeepAliveConnector(aiohttp.TCPConnector):
    """A TCPConnector that reuses only pooled connections the peer has said nothing on since."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._factory = functools.partial(_head_first, loop=self._loop)

    async def _get(self, *args: Any, **kwargs: Any) -> Connection | None:
        # Passed through whole: the private method's parameters have changed between aiohttp releases.
        while (connection := await super()._get(*args, **kwargs)) is not None:
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                return connection
            connection.close()  # closes the socket rather than pooling it again
        return None


def _head_first(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return HeadFirstHandler(loop)
