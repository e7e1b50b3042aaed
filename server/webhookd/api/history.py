"""The delivery log stream and the delivery history RPCs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.auth.context import current_scope
from webhookd.domain.history import Delivery, DeliveryFilter, LogEntry, LogFilter, decode_cursor, encode_cursor
from webhookd.services.history import History

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def entry_to_proto(entry: LogEntry) -> pb.DeliveryLogEntry:
    return pb.DeliveryLogEntry(
        cursor=encode_cursor(entry.position),
        delivery_id=entry.delivery_id,
        event_id=entry.event_id,
        event_type=entry.event_type,
        webhook_id=entry.webhook_id,
        attempt=entry.attempt,
        outcome=entry.outcome,
        http_status=entry.http_status or 0,
        latency_ms=entry.latency_ms,
        error=entry.error,
        response_excerpt=entry.response_excerpt,
        next_attempt_at=convert.timestamp(entry.next_attempt_at),
        occurred_at=convert.timestamp(entry.occurred_at),
    )


def delivery_to_proto(delivery: Delivery) -> pb.Delivery:
    return pb.Delivery(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        webhook_id=delivery.webhook_id,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=convert.timestamp(delivery.next_attempt_at),
        last_outcome=delivery.last_outcome or "",
        last_http_status=delivery.last_http_status or 0,
        last_error=delivery.last_error or "",
        created_at=convert.timestamp(delivery.created_at),
        updated_at=convert.timestamp(delivery.updated_at),
        completed_at=convert.timestamp(delivery.completed_at),
    )


class HistoryRpcs:
    def __init__(self, history: History) -> None:
        self.history = history

    async def DeliveryLog(
        self, request: pb.DeliveryLogRequest, context: Context
    ) -> AsyncIterator[pb.DeliveryLogResponse]:
        entries = self.history.log(
            current_scope(),
            LogFilter(
                webhook_id=request.webhook_id or None,
                outcomes=tuple(request.outcomes),
                event_types=tuple(request.event_types),
            ),
            after=decode_cursor(request.after_cursor) if request.after_cursor else None,
            since=convert.datetime_of(request.since) if request.HasField("since") else None,
            follow=request.follow,
        )
        async for entry in entries:
            yield pb.DeliveryLogResponse(entry=entry_to_proto(entry))

    async def ListDeliveries(self, request: pb.ListDeliveriesRequest, context: Context) -> pb.ListDeliveriesResponse:
        query = DeliveryFilter(
            webhook_id=request.webhook_id or None,
            status=request.status or None,
            last_outcome=request.last_outcome or None,
            event_types=(request.event_type,) if request.event_type else (),
            start_time=convert.datetime_of(request.start_time) if request.HasField("start_time") else None,
            end_time=convert.datetime_of(request.end_time) if request.HasField("end_time") else None,
        )
        page = await self.history.list_deliveries(
            current_scope(), query, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListDeliveriesResponse(
            deliveries=[delivery_to_proto(delivery) for delivery in page.deliveries],
            next_page_token=page.next_page_token,
        )

    async def GetDelivery(self, request: pb.GetDeliveryRequest, context: Context) -> pb.GetDeliveryResponse:
        delivery, attempts = await self.history.get_delivery(current_scope(), request.id)
        return pb.GetDeliveryResponse(
            delivery=delivery_to_proto(delivery), attempts=[entry_to_proto(entry) for entry in attempts]
        )

    async def RedeliverDelivery(
        self, request: pb.RedeliverDeliveryRequest, context: Context
    ) -> pb.RedeliverDeliveryResponse:
        delivery = await self.history.redeliver(current_scope(), request.id)
        return pb.RedeliverDeliveryResponse(delivery=delivery_to_proto(delivery))

    async def RecoverWebhook(self, request: pb.RecoverWebhookRequest, context: Context) -> pb.RecoverWebhookResponse:
        since = convert.datetime_of(request.since) if request.HasField("since") else None
        queued = await self.history.recover(current_scope(), request.id, since=since)
        return pb.RecoverWebhookResponse(deliveries_queued=queued)
