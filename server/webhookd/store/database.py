"""The async engine and the small helpers every store shares."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    # pool_pre_ping: the embedded server or a failover may drop idle connections.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
