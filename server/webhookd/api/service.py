"""The WebhookService servicer: one class assembled from the parts that serve each group of RPCs."""

from __future__ import annotations

from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

from webhookd.api.webhooks import WebhookCrud


class WebhookServicer(WebhookCrud, rpc.WebhookServiceServicer):
    pass
