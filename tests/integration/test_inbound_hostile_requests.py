"""The inbound receiver against hostile requests, for every scheme: seeded random mixes of each
sender's headers (bytes outside ASCII, absurd timestamps, malformed signatures), bodies (JSON of
the wrong shapes, broken forms, nesting deeper than the parser goes) and query strings. Whatever
arrives is answered with one of the statuses the receiver documents, never a 5xx: a request is the
sender's to get wrong, not a reason to fail. Bounded: REQUESTS requests to loopback."""

from __future__ import annotations

import json
import random

import httpx
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

PUBLIC_URL = "http://127.0.0.1:8080"  # the session settings' public_url: callback urls start with it
REQUESTS = 1000
SEED = 7
DOCUMENTED = {200, 401, 404, 413, 429}
SECRETS = {
    "standard-webhooks": "",
    "hmac-sha256": "",
    "stripe": "whsec_" + "0123456789abcdef" * 4,
    "shopify": "shpss_" + "0123456789abcdef" * 2,
    "slack": "8f742231b10e8888abcd99yyyzzz85a5",
    "twilio": "0123456789abcdef0123456789abcdef",
    "zoom": "q4Xw9LmT2vRb7NcK1sYp0A",
    "gitlab": "glwt-7f3c9a1e5b2d8c4f6a0e",
    "meta": "6f1d2c3b4a5e6f708192a3b4c5d6e7f8",
}
HEADER_NAMES = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-event-key",
    "x-github-delivery",
    "x-github-event",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-shopify-webhook-id",
    "x-shopify-topic",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-twilio-signature",
    "x-twilio-webhooks-signature-settings",
    "i-twilio-idempotency-token",
    "x-zm-signature",
    "x-zm-request-timestamp",
    "x-gitlab-token",
    "x-gitlab-event",
    "idempotency-key",
    "content-type",
]
HEADER_VALUES = [
    b"",
    b"\xe9",
    b"\xff\xfe\xfd",
    b"v1,",
    b"v1,====",
    b"v1,\xe9",
    b"t=1,v1=zz",
    b"t=99999999999999999999,v1=00",
    b"sha256=",
    b"sha256=zz",
    b"v0=",
    b"v0=\xe9",
    b"key=x,algorithm=",
    b"algorithm=HMAC_SHA256",
    b"algorithm=\xe9",
    b"application/x-www-form-urlencoded",
    b"application/json",
    b"application/json; charset=\xe9",
    b"text/plain",
    b"1700000000",
    b"-1",
    b"0",
    b"x" * 5000,
    b"=",
    b";",
    b",",
    b"msg_1",
]
BODIES = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b'{"type": 5}',
    b'{"type": "a\\u0000"}',
    b'{"event": {"type": []}}',
    b'{"event": "x"}',
    b"payload=%7B%22type%22%3A5%7D",
    b"payload=%FF",
    b"payload=" + b"%5B" * 5000,
    b"command=",
    b"\xff\xfe",
    b"a=b&a=c&=&&",
    b'{"id": {"x": 1}, "type": {"y": 2}}',
    b'{"challenge": 7, "type": "url_verification"}',
    b'{"type": "url_verification", "challenge": "' + b"c" * 1000 + b'"}',
    json.dumps({"type": "event_callback", "event": {"type": "x" * 500}}).encode(),
    b'{"event": "endpoint.url_validation", "payload": {"plainToken": 5}}',
    b'{"event": "endpoint.url_validation", "payload": {"plainToken": "\\u0000\\ud800"}}',
    b'{"event": "endpoint.url_validation", "payload": []}',
    b"[" * 100_000,
]
QUERIES = ["", "?", "?bodySHA256=", "?bodySHA256=zz", "?bodySHA256=%FF", "?a=%E9", "?" + "a=b&" * 200]
# GETs (Meta's subscription check, answered by meta webhooks only); {id} is the webhook's id.
GET_SHARE = 0.1
GET_DOCUMENTED = {200, 400, 403, 404}  # a GET draws from no bucket (Inbound.confirm_subscription)
GET_QUERIES = [
    *QUERIES,
    "?hub.mode=subscribe",
    "?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={id}",
    "?hub.mode=subscribe&hub.challenge=" + "c" * 300 + "&hub.verify_token={id}",
    "?hub.mode=%FF&hub.challenge=%E9&hub.verify_token=%00",
    "?hub.mode=subscribe&hub.challenge=%FF%FE%00&hub.verify_token={id}",
    "?hub.mode=subscribe&hub.mode=x&hub.challenge=1&hub.verify_token={id}",
    "?hub.mode=subscribe&hub.challenge=1&hub.verify_token={id}%E9",
]


async def test_no_hostile_request_gets_a_5xx_in_any_scheme(caller, gateway) -> None:
    urls = {}
    for scheme, secret in SECRETS.items():
        webhook = wpb.Webhook(name="hostile", direction=wpb.DIRECTION_INBOUND, signature_scheme=scheme)
        created = await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook, signing_secret=secret))
        urls[scheme] = created.webhook.url.replace(PUBLIC_URL, gateway.url)
    chosen = random.Random(SEED)
    answered: dict[int, int] = {}
    undocumented = []
    async with httpx.AsyncClient(timeout=10.0) as http:
        for _ in range(REQUESTS):
            scheme = chosen.choice(list(urls))
            names = chosen.sample(HEADER_NAMES, chosen.randint(0, 8))
            headers = {name: chosen.choice(HEADER_VALUES) for name in names}
            body = chosen.choice(BODIES)
            if chosen.random() < GET_SHARE:
                webhook_id = urls[scheme].rsplit("/", 1)[1]
                query = chosen.choice(GET_QUERIES).replace("{id}", webhook_id)
                response = await http.get(urls[scheme] + query, headers=headers)
                documented = GET_DOCUMENTED
            else:
                response = await http.post(urls[scheme] + chosen.choice(QUERIES), content=body, headers=headers)
                documented = DOCUMENTED
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            if response.status_code not in documented:
                undocumented.append((scheme, headers, body[:60], response.status_code, response.text[:200]))

    assert undocumented == [], undocumented[:5]
    assert answered.get(401, 0) > REQUESTS // 2, answered  # most are refused as not signed right
