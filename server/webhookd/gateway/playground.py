"""The Playground: the API's own docs and try-it console at /playground, and its manifest.

Routes (no token needed; the page sends the person's token with each API call it makes):
    GET /api/v1/manifest            resources, operations and fields, from the descriptors
    GET /playground                 the page (static HTML shipped in the package)
    GET /playground/static/{name}   its stylesheet and script
    GET /playground/config          what this server offers the page (a dev token, at the local address?)
    GET /playground/dev-token       only when a dev token source is given (`webhookd dev`), and only
                                    to requests whose Host is the configured local address

Everything the page loads comes from this origin and is served with a strict
Content-Security-Policy: no inline script or style, no third-party origin, no framing. The headers
every response has (nosniff, no referrer, no-store unless said otherwise) are http/response_headers.py's.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import ipaddress
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.descriptor import ServiceDescriptor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from webhookd.gateway.descriptors import default_descriptor_set, default_services, load_comments
from webhookd.gateway.documents import MANIFEST_PATH, PLAYGROUND_PATH
from webhookd.gateway.manifest import build_manifest

STATIC_PATH = "/playground/static"
CONFIG_PATH = "/playground/config"
DEV_TOKEN_PATH = "/playground/dev-token"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}

# The files the page is made of, with their media types; nothing else is served from static/.
_ASSETS = {
    "playground.html": "text/html; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
}

DevTokenSource = Callable[[], str]
# The Host header values the dev token is given to (`local_hosts`), asked for at request time: the
# port is known only once the server listens.
DevTokenHosts = Callable[[], Collection[str]]
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_LOOPBACK_NAME = "localhost"


def local_hosts(address: str) -> frozenset[str]:
    """The Host values that name `address` (host:port, as WEBHOOKD_HTTP_ADDR says): the host itself,
    `localhost` too when it is a loopback address, and for a wildcard bind only the loopback names.
    Without the port too when it is 80. Lower case, as they are compared."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]").lower()
    if host in _WILDCARD_HOSTS:
        names = ["127.0.0.1", _LOOPBACK_NAME]
    else:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names = [host]
        else:
            shown = f"[{host}]" if ip.version == 6 else host
            names = [shown, _LOOPBACK_NAME] if ip.is_loopback else [shown]
    hosts = {f"{name}:{port}" for name in names}
    if port == "80":
        hosts.update(names)
    return frozenset(hosts)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _load_assets() -> dict[str, _Asset]:
    folder = importlib.resources.files("webhookd.gateway") / "static"
    assets = {}
    for name, media_type in _ASSETS.items():
        body = (folder / name).read_bytes()
        assets[name] = _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


def _asset_response(request: Request, asset: _Asset) -> Response:
    # Revalidated on every load (cheap with the ETag) so an upgraded server never serves stale JS.
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def playground_routes(
    *,
    dev_token: DevTokenSource | None = None,
    dev_token_hosts: DevTokenHosts = frozenset,
    services: Sequence[ServiceDescriptor] | None = None,
    descriptor_set: Path | str | None = None,
) -> list[BaseRoute]:
    """The manifest, the page and its assets.

    dev_token: mints a token for the page's "Use dev token" button. Pass it only for
        `webhookd dev`; without it the route does not exist.
    dev_token_hosts: the Host values the dev token is given to (`local_hosts` of the address the
        server listens on); with none, it is given to nobody.
    """
    services = list(services) if services is not None else default_services()
    comments = load_comments(descriptor_set if descriptor_set is not None else default_descriptor_set())
    manifest = build_manifest(services, comments)
    assets = _load_assets()

    async def manifest_endpoint(_: Request) -> Response:
        return JSONResponse(manifest)

    async def page(request: Request) -> Response:
        return _asset_response(request, assets["playground.html"])

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "playground.html" or name not in assets:
            raise HTTPException(404)
        return _asset_response(request, assets[name])

    async def config_endpoint(request: Request) -> Response:
        # The button is offered only where the token would be given, not to a page opened by another name.
        offered = dev_token is not None and _on_local_address(request, dev_token_hosts)
        config = {"manifest": MANIFEST_PATH, "dev_token": offered}
        return JSONResponse(config, headers=SECURITY_HEADERS)

    routes: list[BaseRoute] = [
        Route(MANIFEST_PATH, manifest_endpoint, methods=["GET"]),
        Route(PLAYGROUND_PATH, page, methods=["GET"]),
        Route(STATIC_PATH + "/{name}", static, methods=["GET"]),
        Route(CONFIG_PATH, config_endpoint, methods=["GET"]),
    ]
    if dev_token is not None:
        routes.append(Route(DEV_TOKEN_PATH, _dev_token_endpoint(dev_token, dev_token_hosts), methods=["GET"]))
    return routes


def _on_local_address(request: Request, hosts: DevTokenHosts) -> bool:
    # DNS rebinding: a page on an attacker's name that resolves to 127.0.0.1 is same-origin to the
    # browser, so Sec-Fetch-Site cannot tell; the Host header still carries the attacker's name.
    return request.headers.get("host", "").lower() in hosts()


def _dev_token_endpoint(dev_token: DevTokenSource, hosts: DevTokenHosts) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not _on_local_address(request, hosts):
            raise HTTPException(403, "the dev token is only given on the configured local address")
        # Only the page itself may ask: browsers mark cross-site requests, and no CORS header is
        # ever sent, so another site can neither read the answer nor make it on a person's behalf.
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPException(403, "the dev token is only given to the Playground page")
        return JSONResponse({"token": dev_token()}, headers=SECURITY_HEADERS)

    return endpoint
