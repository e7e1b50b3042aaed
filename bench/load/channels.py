"""gRPC channels for load generators: each its own TCP connection.

gRPC shares one connection between channels to the same target unless told otherwise; a service that
runs several server processes on one port (SO_REUSEPORT) spreads connections, not calls, over them.
"""

from __future__ import annotations

import asyncio

import grpc

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
CONNECT_LIMIT = 10.0


async def open_channels(target: str, count: int) -> list[grpc.aio.Channel]:
    """`count` connected channels to `target` (TimeoutError when they cannot connect)."""
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(count)]
    try:
        await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in channels)), CONNECT_LIMIT)
    except BaseException:
        await close_channels(channels)
        raise
    return channels


async def close_channels(channels: list[grpc.aio.Channel]) -> None:
    await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)
