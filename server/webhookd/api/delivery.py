"""Event publishing and the delivery-side webhook RPCs (rotate secret, credential, public key, resume)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from cpod.integration.v1 import public_key_pb2 as public_key_pb
from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.auth.context import current_scope
from webhookd.services.events import Events
from webhookd.services.webhooks import Webhooks

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class DeliveryRpcs:
    def __init__(self, webhooks: Webhooks, events: Events) -> None:
        self.webhooks = webhooks
        self.events = events

    async def PublishEvent(self, request: pb.PublishEventRequest, context: Context) -> pb.PublishEventResponse:
        published = await self.events.publish(
            current_scope(),
            event_type=request.event_type,
            payload_json=convert.payload_json(request),
            idempotency_key=request.idempotency_key or None,
            webhook_id=request.webhook_id or None,
            channels=tuple(request.channels),
        )
        return pb.PublishEventResponse(
            event_id=published.event_id,
            deliveries_queued=published.deliveries_queued,
            duplicate=published.duplicate,
            deliveries_held=published.deliveries_held,
            deliveries_skipped=published.deliveries_skipped,
        )

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Context
    ) -> pb.RotateWebhookSecretResponse:
        rotation = await self.webhooks.rotate_secret(
            current_scope(),
            request.id,
            overlap=convert.timedelta_of(request.overlap, "overlap") if request.HasField("overlap") else None,
            signing_secret=request.signing_secret or None,
        )
        return pb.RotateWebhookSecretResponse(
            webhook=convert.webhook_to_proto(rotation.webhook),
            signing_secret=rotation.signing_secret,
            previous_secret_expires_at=convert.timestamp(rotation.previous_secret_expires_at),
            public_key=rotation.public_key,
        )

    async def SetWebhookCredential(
        self, request: pb.SetWebhookCredentialRequest, context: Context
    ) -> pb.SetWebhookCredentialResponse:
        webhook = await self.webhooks.set_credential(
            current_scope(), request.id, header_name=request.header_name, header_value=request.header_value
        )
        return pb.SetWebhookCredentialResponse(webhook=convert.webhook_to_proto(webhook))

    async def GetWebhookPublicKey(
        self, request: public_key_pb.GetWebhookPublicKeyRequest, context: Context
    ) -> public_key_pb.GetWebhookPublicKeyResponse:
        keys = await self.webhooks.public_key(current_scope(), request.id)
        response = public_key_pb.GetWebhookPublicKeyResponse(
            public_key=keys.public_key,
            previous_public_keys=[
                public_key_pb.PreviousPublicKey(public_key=key.public_key, expires_at=convert.timestamp(key.expires_at))
                for key in keys.previous
            ],
        )
        if keys.previous:
            # The single fields older clients read: the key replaced last.
            response.previous_public_key = keys.previous[0].public_key
            convert.set_timestamp(response.previous_public_key_expires_at, keys.previous[0].expires_at)
        return response

    async def ResumeWebhook(self, request: pb.ResumeWebhookRequest, context: Context) -> pb.ResumeWebhookResponse:
        webhook, held = await self.webhooks.resume(current_scope(), request.id, discard_held=request.discard_held)
        return pb.ResumeWebhookResponse(
            webhook=convert.webhook_to_proto(webhook),
            deliveries_released=held.released,
            deliveries_discarded=held.discarded,
        )
