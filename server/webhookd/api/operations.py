"""The operations RPCs: reading events back, sending a test event, acknowledging the DeliveryLog."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import operations_pb2 as ops_pb
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.auth.context import current_scope
from webhookd.domain.events import EventFilter
from webhookd.services.history import History
from webhookd.services.pings import Pings
from webhookd.services.published_events import PublishedEvents

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class OperationsRpcs:
    def __init__(self, published: PublishedEvents, pings: Pings, history: History) -> None:
        self.published = published
        self.pings = pings
        self.log_consumers = history

    async def GetEvent(self, request: ops_pb.GetEventRequest, context: Context) -> pb.GetEventResponse:
        event, deliveries = await self.published.get(current_scope(), request.id)
        return pb.GetEventResponse(
            event=convert.event_to_proto(event),
            deliveries=[convert.delivery_to_proto(delivery) for delivery in deliveries],
        )

    async def ListEvents(self, request: ops_pb.ListEventsRequest, context: Context) -> ops_pb.ListEventsResponse:
        query = EventFilter(
            event_types=(request.event_type,) if request.event_type else (),
            start_time=convert.datetime_of(request.start_time, "start_time")
            if request.HasField("start_time")
            else None,
            end_time=convert.datetime_of(request.end_time, "end_time") if request.HasField("end_time") else None,
        )
        page = await self.published.list_page(
            current_scope(), query, page_size=request.page_size, page_token=request.page_token
        )
        return ops_pb.ListEventsResponse(
            events=[convert.event_to_proto(event) for event in page.events], next_page_token=page.next_page_token
        )

    async def SendTestEvent(
        self, request: ops_pb.SendTestEventRequest, context: Context
    ) -> ops_pb.SendTestEventResponse:
        sent = await self.pings.send(current_scope(), request.webhook_id, event_type=request.event_type or None)
        result = sent.result
        return ops_pb.SendTestEventResponse(
            event_id=sent.event_id,
            delivery_id=sent.delivery_id,
            outcome=result.outcome.value,
            http_status=result.http_status or 0,
            latency_ms=result.latency_ms,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )

    async def AckDeliveryLog(
        self, request: ops_pb.AckDeliveryLogRequest, context: Context
    ) -> ops_pb.AckDeliveryLogResponse:
        cursor = await self.log_consumers.acknowledge(current_scope(), request.consumer, request.cursor)
        return ops_pb.AckDeliveryLogResponse(consumer=request.consumer, cursor=cursor)
