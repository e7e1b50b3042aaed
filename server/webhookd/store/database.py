"""The async engine and the small helpers every store shares."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    # No pool_pre_ping: it costs a round trip on every checkout (measured: over a quarter of a Get's
    # time). A connection the server dropped fails once and is invalidated by the pool; recycling
    # idle connections keeps that rare.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=300)


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same pool in autocommit, for single-statement reads: one round trip instead of
    BEGIN, the query and ROLLBACK (a statement is its own snapshot)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
