"""Operational routes: /readyz reports whether the dependencies answer (no token needed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

READY_PATH = "/readyz"

# Each check returns None when healthy, or a short reason (never a secret or a connection string).
ReadinessChecks = Mapping[str, Callable[[], Awaitable[str | None]]]


def readiness_route(checks: ReadinessChecks) -> Route:
    async def readyz(request: Request) -> JSONResponse:
        results = {name: (await check()) or "ok" for name, check in checks.items()}
        ready = all(result == "ok" for result in results.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": results}, 200 if ready else 503)

    return Route(READY_PATH, readyz, methods=["GET"])
