"""Conditions every query shares: the caller's scope, and the settled end of an append-only log."""

from __future__ import annotations

import sqlalchemy as sa

from webhookd.domain.scope import Scope

# Rows written by transactions older than every one still running: reading a log (attempts,
# inbound receipts) only up to here in (txid, seq) order means no row can later appear behind a
# reader's position.
SETTLED_TXID = sa.text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def scoped(table: sa.Table, scope: Scope) -> sa.ColumnElement[bool]:
    """The tenant (and app, for integration keys) condition on any table that has both columns."""
    condition = table.c.tenant_id == scope.tenant_id
    if scope.app_id is not None:
        condition = sa.and_(condition, table.c.app_id == scope.app_id)
    return condition
