"""Who a call acts for: the tenant, the app (integration keys only) and the person."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    app_id: str | None = None
    person_id: str | None = None

    def owns(self, tenant_id: str, app_id: str | None) -> bool:
        """Whether a resource of `tenant_id` and `app_id` is visible to this scope: its tenant's, and
        for an app-scoped caller (integration key) only its app's. store/sql.py `scoped` is this rule
        in SQL."""
        return tenant_id == self.tenant_id and (self.app_id is None or app_id == self.app_id)
