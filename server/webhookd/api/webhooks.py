"""WebhookService CRUD over gRPC: check, call the use case, translate. No SQL, no HTTP here."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.api.interceptor import wants_fresh_read
from webhookd.auth.context import current_scope
from webhookd.domain.webhooks import REPLACE_ALL, WebhookFilter
from webhookd.services.webhooks import Webhooks, event_type_filter

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class WebhookCrud:
    """The resource RPCs of WebhookService; the delivery RPCs live in their own servicer part."""

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks

    async def ListWebhooks(self, request: pb.ListWebhooksRequest, context: Context) -> pb.ListWebhooksResponse:
        query = WebhookFilter(
            show_deleted=request.show_deleted,
            direction=convert.direction_from_proto(request.direction, "direction"),
            enabled=request.enabled if request.HasField("enabled") else None,
            event_type_filters=event_type_filter(request.event_type),
            connector_id=request.connector_id or None,
            application_id=request.application_id or None,
            tag=request.tag or None,
            name_contains=request.name or None,
        )
        page = await self.webhooks.list_page(
            current_scope(), query, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListWebhooksResponse(
            webhooks=[convert.webhook_to_proto(webhook) for webhook in page.webhooks],
            next_page_token=page.next_page_token,
        )

    async def GetWebhook(self, request: pb.GetWebhookRequest, context: Context) -> pb.GetWebhookResponse:
        webhook = await self.webhooks.get(current_scope(), request.id, fresh=wants_fresh_read(context))
        return pb.GetWebhookResponse(webhook=convert.webhook_to_proto(webhook))

    async def CreateWebhook(self, request: pb.CreateWebhookRequest, context: Context) -> pb.CreateWebhookResponse:
        spec = convert.spec_from_proto(request.webhook)
        created = await self.webhooks.create(
            current_scope(),
            spec,
            request.signing_secret or None,
            idempotency_key=request.idempotency_key or None,
        )
        response = pb.CreateWebhookResponse(
            webhook=convert.webhook_to_proto(created.webhook), duplicate=created.duplicate
        )
        if created.webhook.spec.signature_scheme.asymmetric:
            response.public_key = created.handed_out
        else:
            response.signing_secret = created.handed_out
        return response

    async def UpdateWebhook(self, request: pb.UpdateWebhookRequest, context: Context) -> pb.UpdateWebhookResponse:
        explicit_paths = list(request.update_mask.paths)
        paths = explicit_paths or convert.implied_mask(request.webhook)
        # Without a mask every populated field is a request, and `*` replaces the whole webhook: either
        # way a different direction must be refused.
        replaces = [path.strip() for path in explicit_paths] == [REPLACE_ALL]
        direction = (
            convert.direction_from_proto(request.webhook.direction, "webhook.direction")
            if replaces or not explicit_paths
            else None
        )
        webhook = await self.webhooks.update(
            current_scope(),
            request.webhook.id,
            expected_version=convert.expected_version(request.webhook.version, "webhook.version"),
            paths=paths,
            direction=direction,
            changes_for=lambda valid_paths: convert.mask_changes(request.webhook, valid_paths),
        )
        return pb.UpdateWebhookResponse(webhook=convert.webhook_to_proto(webhook))

    async def DeleteWebhook(self, request: pb.DeleteWebhookRequest, context: Context) -> pb.DeleteWebhookResponse:
        webhook = await self.webhooks.delete(
            current_scope(), request.id, expected_version=convert.expected_version(request.version, "version")
        )
        return pb.DeleteWebhookResponse(webhook=convert.webhook_to_proto(webhook))

    async def UndeleteWebhook(self, request: pb.UndeleteWebhookRequest, context: Context) -> pb.UndeleteWebhookResponse:
        webhook = await self.webhooks.undelete(current_scope(), request.id)
        return pb.UndeleteWebhookResponse(webhook=convert.webhook_to_proto(webhook))
