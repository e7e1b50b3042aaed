"""The WebhookService servicer: one class assembled from the parts that serve each group of RPCs."""

from __future__ import annotations

from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

from webhookd.api.delivery import DeliveryRpcs
from webhookd.api.history import HistoryRpcs
from webhookd.api.webhooks import WebhookCrud
from webhookd.services.events import Events
from webhookd.services.history import History
from webhookd.services.webhooks import Webhooks


class WebhookServicer(WebhookCrud, DeliveryRpcs, HistoryRpcs, rpc.WebhookServiceServicer):
    def __init__(self, webhooks: Webhooks, events: Events, history: History) -> None:
        WebhookCrud.__init__(self, webhooks)
        DeliveryRpcs.__init__(self, webhooks, events)
        HistoryRpcs.__init__(self, history)
