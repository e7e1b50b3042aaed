"""The event type catalog RPCs of WebhookService: check, call the use case, translate."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import event_type_pb2 as pb

from webhookd.api import convert
from webhookd.auth.context import current_scope
from webhookd.services.event_types import EventTypes

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class EventTypeRpcs:
    def __init__(self, event_types: EventTypes) -> None:
        self.event_types = event_types

    async def ListEventTypes(self, request: pb.ListEventTypesRequest, context: Context) -> pb.ListEventTypesResponse:
        page = await self.event_types.list_page(
            current_scope(),
            name_prefix=request.name_prefix or None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListEventTypesResponse(
            event_types=[convert.event_type_to_proto(entry) for entry in page.event_types],
            next_page_token=page.next_page_token,
        )

    async def GetEventType(self, request: pb.GetEventTypeRequest, context: Context) -> pb.GetEventTypeResponse:
        entry = await self.event_types.get(current_scope(), request.id)
        return pb.GetEventTypeResponse(event_type=convert.event_type_to_proto(entry))

    async def CreateEventType(self, request: pb.CreateEventTypeRequest, context: Context) -> pb.CreateEventTypeResponse:
        entry = await self.event_types.create(current_scope(), convert.event_type_spec_from_proto(request.event_type))
        return pb.CreateEventTypeResponse(event_type=convert.event_type_to_proto(entry))

    async def UpdateEventType(self, request: pb.UpdateEventTypeRequest, context: Context) -> pb.UpdateEventTypeResponse:
        explicit_paths = list(request.update_mask.paths)
        entry = await self.event_types.update(
            current_scope(),
            request.event_type.id,
            expected_version=convert.expected_version(request.event_type.version, "event_type.version"),
            paths=explicit_paths or convert.implied_event_type_mask(request.event_type),
            changes_for=lambda valid_paths: convert.event_type_mask_changes(request.event_type, valid_paths),
            # Without a mask every populated field is a request, so a different name must be refused.
            name=None if explicit_paths else request.event_type.name or None,
        )
        return pb.UpdateEventTypeResponse(event_type=convert.event_type_to_proto(entry))

    async def DeleteEventType(self, request: pb.DeleteEventTypeRequest, context: Context) -> pb.DeleteEventTypeResponse:
        entry = await self.event_types.delete(
            current_scope(), request.id, expected_version=convert.expected_version(request.version, "version")
        )
        return pb.DeleteEventTypeResponse(event_type=convert.event_type_to_proto(entry))
