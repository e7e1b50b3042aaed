"""An inbound sender whose request met a database conflict (a deadlock, a serialization failure) is told
503 "temporarily unavailable: retry later" with a Retry-After, as during an outage: a sender cannot read
again and resend the way an API client answered ABORTED can, and many senders give up on a 4xx."""

from __future__ import annotations

from typing import cast

import httpx
from starlette.applications import Starlette

from webhookd.domain.errors import TransactionConflict
from webhookd.http.receiver import inbound_route
from webhookd.services.inbound import Inbound


class ConflictedInbound:
    """Stands in for the inbound service: every request meets a deadlock in its transaction."""

    async def receive(self, webhook_id: str, request: object) -> object:
        raise TransactionConflict("transaction rolled back to settle a conflict: deadlock (SQLSTATE 40P01)")

    async def confirm_subscription(self, webhook_id: str, query: str) -> str:
        raise TransactionConflict("transaction rolled back to settle a conflict: deadlock (SQLSTATE 40P01)")


async def test_a_sender_whose_request_met_a_conflict_is_told_to_retry_later() -> None:
    app = Starlette(routes=[inbound_route(cast(Inbound, ConflictedInbound()))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver") as http:
        for method in ("POST", "GET"):
            response = await http.request(method, "/api/v1/integration/inbound/whk_1", content=b"{}")

            assert response.status_code == 503, (method, response.text)
            assert response.json()["error"]["message"] == "temporarily unavailable: retry later"
            assert int(response.headers["retry-after"]) >= 1
            assert "deadlock" not in response.text and "40P01" not in response.text
