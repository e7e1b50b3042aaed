"""What the contract tests share: the document the real gateway serves, a requests session whose every
exchange openapi-core checks against it, and tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_schema_validator import OAS31Validator

from support import JWT_SECRET, new_tenant_id
from webhookd.auth.tokens import mint
from webhookd.gateway.routes import parse_template
from webhookd.http.media_types import JSON_MEDIA_TYPE

API = "/api/v1/integration"
OPENAPI_PATH = "/api/v1/openapi.json"
STREAM_MEDIA_TYPES = ("application/x-ndjson", "text/event-stream")


def served_document(base_url: str) -> dict[str, Any]:
    response = requests.get(base_url + OPENAPI_PATH, timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def tenant_token(subject: str = "person_contract") -> str:
    return mint(JWT_SECRET, tenant_id=new_tenant_id(), subject=subject)


def _text(body: bytes, **_: str) -> str:
    return body.decode()


def strict_openapi(document: dict[str, Any]) -> OpenAPI:
    """openapi-core over `document`, strict about bodies: no property the document leaves out. Which
    properties a response must have is the document's own `required` (every field: the gateway writes
    each one, null when unset), not a policy of this checker's that would hide a missing list."""
    config = Config(
        additional_properties_default_policy="forbid",
        # Streams are text whose items are JSON messages; openapi-core knows no NDJSON or SSE parser.
        extra_media_type_deserializers={media_type: _text for media_type in STREAM_MEDIA_TYPES},
    )
    return OpenAPI.from_dict(document, config=config)


def stream_items(response: requests.Response) -> list[Any]:
    """The JSON messages of an NDJSON or SSE body."""
    if response.headers["content-type"].startswith("text/event-stream"):
        lines = [line.removeprefix("data:").strip() for line in response.text.splitlines() if line.startswith("data:")]
    else:
        lines = [line for line in response.text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


@dataclass
class CheckedSession:
    """Sends requests with a tenant's token; openapi-core validates each request (unless it is
    meant to be invalid) and every response; jsonschema validates each JSON success body against the
    document's response schema as it is, and each message of a stream against the stream's item
    schema. `exchanges` records what was checked, `bodies` the successes schema-checked, by path."""

    base_url: str
    openapi: OpenAPI
    token: str
    document: dict[str, Any]
    session: requests.Session = field(default_factory=requests.Session)
    exchanges: list[tuple[str, str, int]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, *, valid_request: bool = True, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = self.session.request(method, self.base_url + path, headers=headers, timeout=15, **kwargs)
        request = RequestsOpenAPIRequest(response.request)
        if valid_request:
            self.openapi.validate_request(request)
        self.openapi.validate_response(request, RequestsOpenAPIResponse(response))
        media_type = response.headers.get("content-type", "").split(";")[0]
        if response.ok and media_type in STREAM_MEDIA_TYPES:
            self._validate_items(path, method, media_type, stream_items(response))
        elif response.status_code == 200 and media_type == JSON_MEDIA_TYPE and method != "HEAD":
            self._validate_body(path.split("?")[0], method, response.json())
        self.exchanges.append((method, path.split("?")[0], response.status_code))
        return response

    def _validate_body(self, path: str, method: str, body: Any) -> None:
        [operation] = [
            item[method.lower()]
            for template, item in self.document["paths"].items()
            if method.lower() in item and parse_template(template).match(path) is not None
        ]
        schema = operation["responses"]["200"]["content"][JSON_MEDIA_TYPE]["schema"]
        OAS31Validator({**schema, "components": self.document["components"]}).validate(body)
        self.bodies.append(path)

    def _validate_items(self, path: str, method: str, media_type: str, items: list[Any]) -> None:
        # Stream routes have no path variables: the path is the document's key.
        operation = self.document["paths"][path][method.lower()]
        item_schema = operation["responses"]["200"]["content"][media_type]["schema"]["contentSchema"]
        # The references point into the document's components: validate with them at hand.
        validator = OAS31Validator({**item_schema, "components": self.document["components"]})
        for item in items:
            validator.validate(item)
