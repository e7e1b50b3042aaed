"""Who a call acts for: the tenant, the app (integration keys only) and the person."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    app_id: str | None = None
    person_id: str | None = None
