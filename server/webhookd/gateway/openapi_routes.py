"""The OpenAPI description of the HTTP routes no proto describes: liveness, readiness, metrics, the
document itself, the Playground's manifest and page, and the inbound callback external systems POST
to. openapi.py adds them to the document it derives from the descriptors; their shapes follow
http/operations.py, gateway/playground.py and http/receiver.py. The page's own stylesheet, script
and settings are the page's, not the API's, and are left out."""

from __future__ import annotations

from typing import Any

from webhookd.domain import signing
from webhookd.domain.inbound import (
    EMPTY_TWIML,
    INBOUND_PATH_PREFIX,
    META_CHALLENGE,
    META_MODE,
    META_VERIFY_TOKEN,
)
from webhookd.domain.statuses import ReceiptAnswer
from webhookd.gateway.documents import MANIFEST_PATH, OPENAPI_PATH, PLAYGROUND_PATH
from webhookd.http.media_types import HTML_MEDIA_TYPE, JSON_MEDIA_TYPE, PLAIN_TEXT_MEDIA_TYPE, TWIML_MEDIA_TYPE
from webhookd.http.operations import HEALTH_PATH, METRICS_PATH, READY_PATH

OPERATIONS_TAG = "Operations"
PLAYGROUND_TAG = "Playground"
INBOUND_TAG = "Inbound"
TAGS = [
    {"name": OPERATIONS_TAG, "description": "Probes and scrapes for operators and orchestrators. No token."},
    {
        "name": PLAYGROUND_TAG,
        "description": "The API's docs and try-it console for people, and the manifest it is drawn from. No "
        "token: the page sends the person's own with each call it makes.",
    },
    {
        "name": INBOUND_TAG,
        "description": "Where external systems call an inbound webhook. No token: requests are signed with the "
        "webhook's secret (Standard Webhooks, or X-Hub-Signature-256).",
    },
]
INBOUND_ROUTE = INBOUND_PATH_PREFIX + "{webhook_id}"
PROMETHEUS_MEDIA_TYPES = (PLAIN_TEXT_MEDIA_TYPE, "application/openmetrics-text")


def operational_paths(error: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Path items for the routes above; `error` is the schema (a $ref) error bodies use."""
    return {
        HEALTH_PATH: {"get": _health()},
        READY_PATH: {"get": _ready()},
        METRICS_PATH: {"get": _metrics()},
        OPENAPI_PATH: {"get": _document()},
        MANIFEST_PATH: {"get": _manifest()},
        PLAYGROUND_PATH: {"get": _playground()},
        INBOUND_ROUTE: {"post": _inbound(error), "get": _meta_subscription(error)},
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON_MEDIA_TYPE: {"schema": schema}}


def _operation(operation_id: str, tag: str, summary: str, description: str, **more: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "security": [],
        **more,
    }


def _health() -> dict[str, Any]:
    return _operation(
        "health",
        OPERATIONS_TAG,
        "Liveness: the process serves HTTP.",
        "Answers as long as the process runs; it checks nothing else (see /readyz).",
        responses={
            "200": {
                "description": "The process is up.",
                "content": _json({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
            }
        },
    )


def _ready() -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": {
                "type": "object",
                "description": "Each dependency (database, vault, the database's schema revision, or the gRPC"
                " service behind a gateway): `ok`, or a short reason.",
                "additionalProperties": {"type": "string"},
            },
        },
    }
    return _operation(
        "ready",
        OPERATIONS_TAG,
        "Readiness: the dependencies answer.",
        "The database and Vault (or, for `webhookd gateway`, the gRPC service) answer within a short timeout,"
        " and the database's schema is this release's.",
        responses={
            "200": {"description": "Ready: every check is `ok`.", "content": _json(body)},
            "503": {"description": "Not ready: a check names what failed.", "content": _json(body)},
        },
    )


def _metrics() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return _operation(
        "metrics",
        OPERATIONS_TAG,
        "Prometheus metrics.",
        "gRPC calls by method and code with latency, HTTP requests by route and status, delivery attempts "
        "by outcome with latency, open streams, queue depth and oldest due age. The Prometheus text format, "
        "or OpenMetrics when the scraper's Accept asks for it.",
        responses={
            "200": {
                "description": "The current metrics.",
                "content": {media_type: text for media_type in PROMETHEUS_MEDIA_TYPES},
            }
        },
    )


def _document() -> dict[str, Any]:
    return _operation(
        "openapi",
        OPERATIONS_TAG,
        "This OpenAPI document.",
        "Generated at start-up from the same protos and http rules as the routes.",
        responses={
            "200": {
                "description": "The OpenAPI 3.1 document.",
                "content": _json(
                    {
                        "type": "object",
                        "required": ["openapi"],
                        "properties": {"openapi": {"type": "string"}},
                        "additionalProperties": True,
                    }
                ),
            }
        },
    )


# The manifest's entries are shaped for the page that renders them, not a contract of their own.
_PAGE_SHAPED = {"type": "object", "additionalProperties": True}


def _manifest() -> dict[str, Any]:
    return _operation(
        "manifest",
        PLAYGROUND_TAG,
        "The Playground's manifest.",
        "Every resource with its path, description, fields (type, notes, required, output only) and "
        "operations (method, path, parameters, an example body), drawn from the same protos as this document.",
        responses={
            "200": {
                "description": "The manifest.",
                "content": _json(
                    {
                        "type": "object",
                        "required": ["title", "version", "openapi", "services", "resources"],
                        "properties": {
                            "title": {"type": "string"},
                            "version": {"type": "string"},
                            "openapi": {"type": "string", "description": "Where this document is served."},
                            "services": {"type": "array", "items": _PAGE_SHAPED},
                            "resources": {"type": "array", "items": _PAGE_SHAPED},
                        },
                    }
                ),
            }
        },
    )


def _playground() -> dict[str, Any]:
    return _operation(
        "playground",
        PLAYGROUND_TAG,
        "The Playground page.",
        "Documents the API and sends requests with a token the person pastes (or, under `webhookd dev`, the "
        "dev token), under a strict Content-Security-Policy.",
        responses={
            "200": {"description": "The page.", "content": {HTML_MEDIA_TYPE: {"schema": {"type": "string"}}}},
            "304": {"description": "Not Modified: If-None-Match names the current ETag."},
        },
    )


_WEBHOOK_ID_PARAMETER = {
    "name": "webhook_id",
    "in": "path",
    "required": True,
    "description": "The inbound webhook (whk_…).",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {"description": "Seconds to wait.", "schema": {"type": "integer"}}


def _failure(error: dict[str, Any], description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(error)}
    if headers:
        response["headers"] = headers
    return response


def _meta_subscription(error: dict[str, Any]) -> dict[str, Any]:
    def query(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": True, "description": description, "schema": {"type": "string"}}

    return _operation(
        "confirmInboundSubscription",
        INBOUND_TAG,
        "Answer Meta's check of a callback URL.",
        "Meta (Facebook, Instagram, WhatsApp) checks a callback URL when a subscription is set up: a GET "
        "that is answered with its `hub.challenge` when the Verify Token given in Meta's dashboard is the "
        "webhook's id. Only a `meta` inbound webhook answers; nothing is stored. The events that follow are "
        "POSTs signed with the App Secret.",
        parameters=[
            _WEBHOOK_ID_PARAMETER,
            query(META_MODE, "Always `subscribe`."),
            query(META_CHALLENGE, "What to answer with (1 to 256 characters)."),
            query(META_VERIFY_TOKEN, "The Verify Token given in Meta's dashboard: the webhook's id."),
        ],
        responses={
            "200": {
                "description": "The challenge, as sent.",
                "content": {PLAIN_TEXT_MEDIA_TYPE: {"schema": {"type": "string"}}},
            },
            "400": _failure(error, "Not Meta's check: `hub.mode` is not `subscribe`, or no `hub.challenge`."),
            "403": _failure(error, "The Verify Token is not the webhook's id."),
            "404": _failure(error, "No live, enabled `meta` inbound webhook has this id."),
            "503": _failure(error, "The database is unavailable.", **{"Retry-After": _RETRY_AFTER}),
        },
    )


def _inbound(error: dict[str, Any]) -> dict[str, Any]:
    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }

    return _operation(
        "receiveInbound",
        INBOUND_TAG,
        "Receive a request for an inbound webhook.",
        "The callback `url` of an inbound webhook. The request is verified with the webhook's signing secret "
        "(Standard Webhooks: `webhook-id`, `webhook-timestamp` within 5 minutes, `webhook-signature`, or "
        "their Svix names `svix-id`, `svix-timestamp`, `svix-signature`; "
        "`X-Hub-Signature-256` for `hmac-sha256` and `meta`; `Stripe-Signature` for `stripe`; "
        "`X-Shopify-Hmac-Sha256` for "
        "`shopify`; `X-Slack-Signature` and `X-Slack-Request-Timestamp` for `slack`; `X-Twilio-Signature` over "
        "the callback URL with this request's query string and its form fields, or a `bodySHA256` query "
        "parameter, for `twilio`; `x-zm-signature` and `x-zm-request-timestamp` for `zoom`; `X-Gitlab-Token` "
        "for `gitlab`) and stored, byte "
        "for byte, before the 200 is sent. A retry of a message "
        "already accepted (same `webhook-id`, `X-GitHub-Delivery`, Stripe event `id`, `X-Shopify-Webhook-Id`, "
        "Slack `event_id`, `I-Twilio-Idempotency-Token` or GitLab's `Idempotency-Key`) is acknowledged as "
        "`duplicate` and "
        "stored once. Slack's `url_verification` is answered with its `challenge`, and Zoom's "
        "`endpoint.url_validation` with its `plainToken` and `encryptedToken`. Internal services read what "
        "arrived with StreamInboundEvents.",
        parameters=[
            _WEBHOOK_ID_PARAMETER,
            header(signing.ID_HEADER, "Standard Webhooks: the message id; a retry keeps it."),
            header(signing.TIMESTAMP_HEADER, "Standard Webhooks: Unix seconds when it was signed."),
            header(signing.SIGNATURE_HEADER, "Standard Webhooks: space-separated `v1,<base64>` signatures."),
            header(signing.GITHUB_SIGNATURE_HEADER, "hmac-sha256: `sha256=<hex>` of the body."),
            header("X-GitHub-Delivery", "hmac-sha256: the message id; a retry keeps it."),
            header(signing.HUB_SIGNATURE_HEADER, "hmac-sha256: Bitbucket's `sha256=<hex>` of the body."),
            header("X-Event-Key", "hmac-sha256: Bitbucket's event (`repo:push`, ...)."),
            header(signing.STRIPE_SIGNATURE_HEADER, "stripe: `t=<unix seconds>,v1=<hex>` as Stripe signs."),
            header(signing.SHOPIFY_SIGNATURE_HEADER, "shopify: base64 HMAC-SHA256 of the body."),
            header("X-Shopify-Webhook-Id", "shopify: the message id; a retry keeps it."),
            header(signing.SLACK_SIGNATURE_HEADER, "slack: `v0=<hex>` as Slack signs."),
            header(signing.SLACK_TIMESTAMP_HEADER, "slack: Unix seconds when it was signed."),
            header(signing.TWILIO_SIGNATURE_HEADER, "twilio: base64 HMAC of the URL and the form fields."),
            header(signing.TWILIO_SETTINGS_HEADER, "twilio: `algorithm=HMAC_SHA256` for a SharedKey signature."),
            header("I-Twilio-Idempotency-Token", "twilio: the message id; a retry keeps it."),
            header(signing.ZOOM_SIGNATURE_HEADER, "zoom: `v0=<hex>` as Zoom signs."),
            header(signing.ZOOM_TIMESTAMP_HEADER, "zoom: Unix seconds when it was signed."),
            header(signing.GITLAB_TOKEN_HEADER, "gitlab: the hook's secret token, as GitLab sends it."),
            header("Idempotency-Key", "gitlab: the message id; a retry keeps it."),
            header("X-Gitlab-Event", "gitlab: the event's name (`Push Hook`, ...)."),
        ],
        requestBody={
            "required": True,
            "description": "Any body, JSON or not: it is stored as sent, with its Content-Type.",
            "content": {JSON_MEDIA_TYPE: {"schema": {}}, "*/*": {"schema": {}}},
        },
        responses={
            "200": {
                "description": "Stored (or a duplicate of a stored message). A `twilio` webhook answers with an "
                "empty TwiML `<Response/>` instead, the answer Twilio reads, and a `zoom` webhook answers Zoom's "
                "`endpoint.url_validation` with the two fields Zoom reads.",
                "content": _json(
                    {
                        "oneOf": [
                            {
                                "type": "object",
                                "title": "Receipt",
                                "required": ["status", "id"],
                                "properties": {
                                    "status": {"type": "string", "enum": [answer.value for answer in ReceiptAnswer]},
                                    "id": {
                                        "type": ["string", "null"],
                                        "description": "The receipt (rcv_…); null for a duplicate.",
                                    },
                                    "challenge": {
                                        "type": ["string", "null"],
                                        "description": "slack: the challenge of Slack's `url_verification`, "
                                        "echoed; else null.",
                                    },
                                },
                            },
                            {
                                "type": "object",
                                "title": "ZoomUrlValidation",
                                "required": ["plainToken", "encryptedToken"],
                                "properties": {
                                    "plainToken": {"type": "string", "description": "zoom: the token, echoed."},
                                    "encryptedToken": {
                                        "type": "string",
                                        "description": "zoom: hex HMAC-SHA256 of `plainToken` under the Secret "
                                        "Token Zoom signed the request with.",
                                    },
                                },
                            },
                        ]
                    }
                )
                | {TWIML_MEDIA_TYPE: {"schema": {"type": "string", "example": EMPTY_TWIML}}},
            },
            "401": _failure(
                error,
                "The signature is missing, wrong or too old; recorded without the body while the webhook's "
                "refusals are within their own rate limit, and past it answered alike but not recorded.",
            ),
            "404": _failure(error, "No live, enabled inbound webhook has this id."),
            "413": _failure(error, "The body is over the inbound size limit."),
            "429": _failure(
                error,
                "Over this webhook's rate limit of correctly signed requests; not stored.",
                **{"Retry-After": _RETRY_AFTER},
            ),
            "503": _failure(
                error, "A dependency (the database, Vault) is unavailable.", **{"Retry-After": _RETRY_AFTER}
            ),
        },
    )
