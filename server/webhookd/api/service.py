"""The WebhookService servicer: one class assembled from the parts that serve each group of RPCs."""

from __future__ import annotations

from cpod.integration.v1 import webhook_service_pb2_grpc as rpc

from webhookd.api.delivery import DeliveryRpcs
from webhookd.api.event_types import EventTypeRpcs
from webhookd.api.history import HistoryRpcs
from webhookd.api.inbound import InboundRpcs
from webhookd.api.operations import OperationsRpcs
from webhookd.api.webhooks import WebhookCrud
from webhookd.services.event_types import EventTypes
from webhookd.services.events import Events
from webhookd.services.history import History
from webhookd.services.inbound import Inbound
from webhookd.services.pings import Pings
from webhookd.services.published_events import PublishedEvents
from webhookd.services.webhooks import Webhooks


class WebhookServicer(
    WebhookCrud, DeliveryRpcs, HistoryRpcs, InboundRpcs, OperationsRpcs, EventTypeRpcs, rpc.WebhookServiceServicer
):
    def __init__(
        self,
        webhooks: Webhooks,
        events: Events,
        history: History,
        inbound: Inbound,
        published: PublishedEvents,
        pings: Pings,
        event_types: EventTypes,
    ) -> None:
        WebhookCrud.__init__(self, webhooks)
        DeliveryRpcs.__init__(self, webhooks, events)
        HistoryRpcs.__init__(self, history)
        InboundRpcs.__init__(self, inbound)
        OperationsRpcs.__init__(self, published, pings, history)
        EventTypeRpcs.__init__(self, event_types)
