"""REST gateway: HTTP/JSON in front of the gRPC services, driven by their google.api.http options.

app.py          create_gateway_app(): the Starlette app (routes, /healthz, OpenAPI, error handlers)
routes.py       HttpRule → Binding; path templates and their matching
endpoint.py     one request through one RPC: read, transcode, call, answer
body.py         JSON request bodies: media type, size limit, parse
transcode.py    path variables + query parameters + body → request message; default update_mask
headers.py      If-Match / ETag, Idempotency-Key, Last-Event-ID ↔ request and response fields
jsonshape.py    proto ↔ the Playground's JSON (enum words, camelCase retry_policy, nulls)
calls.py        generic gRPC calls from method descriptors; forwarded metadata
streaming.py    server streams as NDJSON or Server-Sent Events
errors.py       gRPC status → HTTP status and AIP-193 bodies, from one table
openapi.py      the OpenAPI 3.1 document from the same descriptors
descriptors.py  descriptor helpers; doc comments from a descriptor set
operations.py   /readyz and /metrics, access logs and request ids (middleware)
server.py       uvicorn inside the webhookd process
inbound.py      the callback route external systems POST to (verified, stored before 2xx)
manifest.py     /api/v1/manifest for the Playground, from the same descriptors
playground.py   /playground and its static files, under a strict CSP
"""

from webhookd.gateway.app import create_gateway_app

__all__ = ["create_gateway_app"]
