"""The delivery log stream and the delivery history RPCs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.auth.context import current_scope
from webhookd.domain.deliveries import DeliveryFilter
from webhookd.domain.history import LogFilter
from webhookd.domain.statuses import DeliveryStatus, LogKind, Outcome, parse_word, parse_words
from webhookd.services.history import History

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class HistoryRpcs:
    def __init__(self, history: History) -> None:
        self.history = history

    async def DeliveryLog(
        self, request: pb.DeliveryLogRequest, context: Context
    ) -> AsyncIterator[pb.DeliveryLogResponse]:
        scope = current_scope()
        cursors = await self.history.cursors(scope)
        entries = self.history.log(
            scope,
            LogFilter(
                webhook_id=request.webhook_id or None,
                outcomes=parse_words(Outcome, list(request.outcomes), "outcomes"),
                event_types=tuple(request.event_types),
                kinds=parse_words(LogKind, list(request.kinds), "kinds"),
            ),
            after_cursor=request.after_cursor or None,
            since=convert.datetime_of(request.since, "since") if request.HasField("since") else None,
            follow=request.follow,
            consumer=request.consumer or None,
        )
        async for entry in entries:
            response = pb.DeliveryLogResponse()
            convert.fill_entry(response.entry, entry, cursors)
            yield response

    async def ListDeliveries(self, request: pb.ListDeliveriesRequest, context: Context) -> pb.ListDeliveriesResponse:
        start_time = convert.datetime_of(request.start_time, "start_time") if request.HasField("start_time") else None
        end_time = convert.datetime_of(request.end_time, "end_time") if request.HasField("end_time") else None
        query = DeliveryFilter(
            webhook_id=request.webhook_id or None,
            status=parse_word(DeliveryStatus, request.status, "status") if request.status else None,
            last_outcome=parse_word(Outcome, request.last_outcome, "last_outcome") if request.last_outcome else None,
            event_types=(request.event_type,) if request.event_type else (),
            start_time=start_time,
            end_time=end_time,
        )
        page = await self.history.list_deliveries(
            current_scope(), query, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery_to_proto(delivery) for delivery in page.deliveries],
            next_page_token=page.next_page_token,
        )

    async def GetDelivery(self, request: pb.GetDeliveryRequest, context: Context) -> pb.GetDeliveryResponse:
        scope = current_scope()
        delivery, attempts = await self.history.get_delivery(scope, request.id)
        cursors = await self.history.cursors(scope)
        return pb.GetDeliveryResponse(
            delivery=convert.delivery_to_proto(delivery),
            attempts=[convert.entry_to_proto(entry, cursors) for entry in attempts],
        )

    async def RedeliverDelivery(
        self, request: pb.RedeliverDeliveryRequest, context: Context
    ) -> pb.RedeliverDeliveryResponse:
        delivery = await self.history.redeliver(current_scope(), request.id)
        return pb.RedeliverDeliveryResponse(delivery=convert.delivery_to_proto(delivery))

    async def RecoverWebhook(self, request: pb.RecoverWebhookRequest, context: Context) -> pb.RecoverWebhookResponse:
        since = convert.datetime_of(request.since, "since") if request.HasField("since") else None
        queued = await self.history.recover(current_scope(), request.id, since=since)
        return pb.RecoverWebhookResponse(deliveries_queued=queued)
