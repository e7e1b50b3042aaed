"""A path that differs from a route's only by its trailing slash (`/playground/`) is redirected to the
route's (307, as Starlette does), with a Location that is a path (`/playground`), never a URL.

Starlette's own redirect (`Router.redirect_slashes`) writes an absolute URL from the request's scheme
and Host header. Behind a proxy that ends TLS the request it sees is plain http, so the browser was
sent to `http://`, and the host named was whatever the client put in Host. A path is resolved by the
client against the URL it asked for (RFC 9110 takes a URI reference in Location), whatever is in
between.

Routes match as Starlette's do: plain routes by the decoded path; the gateway's RPC routes match the
path as sent (`raw_path`), which a slash redirect does not change, so the API has none.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


def redirect_slashes_by_path(app: Starlette) -> Starlette:
    """`app`, its router's slash redirects now answered with a path."""
    router = app.router
    router.redirect_slashes = False
    router.default = _SlashRedirect(router, router.default)
    return app


class _SlashRedirect:
    """What the router runs when no route matched: a redirect when the path with its trailing slash
    dropped (or one added) matches a route, else `fallback` (the 404)."""

    def __init__(self, router: Router, fallback: ASGIApp) -> None:
        self._router = router
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        location = self._location(scope) if scope["type"] == "http" else None
        if location is None:
            await self._fallback(scope, receive, send)
            return
        await RedirectResponse(location)(scope, receive, send)

    def _location(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        if path == "/":
            return None
        other = {**scope, "path": path.rstrip("/") if path.endswith("/") else path + "/"}
        if all(route.matches(other)[0] is Match.NONE for route in self._router.routes):
            return None
        # The path is decoded: encoded again, so a `?`, `#` or `\` in it stays part of it.
        query = scope.get("query_string", b"").decode("latin-1")
        return quote(other["path"]) + (f"?{query}" if query else "")
