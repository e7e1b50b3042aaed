"""/readyz answers on its own short bound: a dependency that never answers (a frozen database or Vault)
makes it 503 naming that check, instead of hanging the probe."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette

from webhookd.http.operations import readiness_route
from webhookd.services.readiness import Readiness

BOUND_SECONDS = 0.05  # the route's own bound, short here (2 s in the service)
HANG_GUARD_SECONDS = 10.0


async def never_answers() -> str | None:
    await asyncio.Event().wait()
    return None


async def answers_ok() -> str | None:
    return None


async def test_a_check_that_never_answers_is_503_not_a_hang() -> None:
    checks = {"database": never_answers, "vault": answers_ok}
    readiness = Readiness(checks, timeout_seconds=BOUND_SECONDS)
    app = Starlette(routes=[readiness_route(readiness)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        response = await asyncio.wait_for(http.get("/readyz"), HANG_GUARD_SECONDS)
    await readiness.close()  # the question never answered

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": f"no answer within {BOUND_SECONDS:g}s", "vault": "ok"},
    }
