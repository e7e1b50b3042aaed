"""Internal consumers of inbound webhooks: the event stream and acknowledgements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.auth.context import current_scope
from webhookd.services.inbound import Inbound

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class InboundRpcs:
    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound

    async def StreamInboundEvents(
        self, request: pb.StreamInboundEventsRequest, context: Context
    ) -> AsyncIterator[pb.StreamInboundEventsResponse]:
        scope = current_scope()
        cursors = await self.inbound.cursors(scope)
        events = self.inbound.stream(
            scope,
            consumer=request.consumer or None,
            webhook_id=request.webhook_id or None,
            after_cursor=request.after_cursor or None,
            follow=request.follow,
        )
        async for event in events:
            yield pb.StreamInboundEventsResponse(event=convert.inbound_event_to_proto(event, cursors))

    async def AckInboundEvents(
        self, request: pb.AckInboundEventsRequest, context: Context
    ) -> pb.AckInboundEventsResponse:
        cursor = await self.inbound.acknowledge(current_scope(), request.consumer, request.cursor)
        return pb.AckInboundEventsResponse(consumer=request.consumer, cursor=cursor)
