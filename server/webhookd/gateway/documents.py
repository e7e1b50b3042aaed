"""Where the gateway serves its own documents, named once for the routes (app.py, playground.py), the
manifest that links them and the OpenAPI document that describes them (openapi_routes.py)."""

from __future__ import annotations

OPENAPI_PATH = "/api/v1/openapi.json"
MANIFEST_PATH = "/api/v1/manifest"
PLAYGROUND_PATH = "/playground"
