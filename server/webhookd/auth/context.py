"""The request scope of the call being served, set by the auth interceptor."""

from __future__ import annotations

from contextvars import ContextVar

from webhookd.domain.errors import Unauthenticated
from webhookd.domain.scope import Scope

_scope: ContextVar[Scope | None] = ContextVar("webhookd_scope", default=None)


def current_scope() -> Scope:
    scope = _scope.get()
    if scope is None:
        # Reaching here means a method was served without the auth interceptor: refuse, never guess.
        raise Unauthenticated("no authenticated scope for this call")
    return scope


def set_scope(scope: Scope | None) -> object:
    return _scope.set(scope)


def reset_scope(token: object) -> None:
    _scope.reset(token)  # type: ignore[arg-type]
