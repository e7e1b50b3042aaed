"""The outbound HTTP step of a delivery: POST one signed body to one target and say how it went.

`HttpSender` owns the one pooled aiohttp session every delivery goes through. Its connector is the SSRF
guard's (`ssrf.guarded_connector`), and it takes no proxy from the environment (`trust_env=False`): a
proxy connects for us and bypasses that guard. With the delivery proxy an operator configures
(fixed egress addresses), every connection is to the proxy and targets are checked before each send
instead (`ssrf.ProxiedNames`). `send` never raises for what the network or the receiver did;
it returns an `AttemptResult` for the delivery code to record and to schedule a retry from.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import importlib.metadata
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Final

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

from webhookd.config import Settings
from webhookd.delivery.answers import ACCEPT_ENCODING, kept_headers, read_excerpt
from webhookd.delivery.keepalive import KeepAliveConnector
from webhookd.delivery.ssrf import (
    MISSING_HOST,
    ZONED_IP,
    ProxiedNames,
    TargetPolicy,
    check_url_host,
    find_refusal,
    guarded_connector,
    parse_ip,
)
from webhookd.domain.credentials import REDACTED, Credential, hidden
from webhookd.domain.deliveries import AttemptResult
from webhookd.domain.errors import Unavailable
from webhookd.domain.retry import clamp_retry_after, parse_retry_after
from webhookd.domain.statuses import Outcome

DEFAULT_CONNECTION_LIMIT: Final = 32
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
# Targets whose parse and host check are kept: a worker POSTs to the same URLs over and over, and the
# check of an IP literal's host costs ~6 µs (more than the rest of choosing the target).
_TARGETS_KEPT: Final = 4096
# The tuples of header names whose session headers sent beside them are kept (_session_headers_sent).
_HEADER_NAMES_KEPT: Final = 4096
_GONE: Final = 410
_PROXY_AUTHENTICATION_REQUIRED: Final = 407  # only a proxy sends it: the delivery proxy, about webhookd
_PROXY_REFUSED_CREDENTIALS: Final = "the delivery proxy refused webhookd's credentials (HTTP 407)"
# How long the delivery proxy has to answer webhookd itself when a connection through it broke or
# timed out (whether it or the target failed).
_PROXY_PROBE_SECONDS: Final = 2.0


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("webhookd")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"webhookd/{version}"


USER_AGENT: Final = _user_agent()
# Sent with every request, before the delivery's own headers.
_SESSION_HEADERS: Final = {
    "User-Agent": USER_AGENT,
    "Content-Type": "application/json",
    "Accept-Encoding": ACCEPT_ENCODING,
}


class HttpSender:
    """POSTs deliveries through one pooled, SSRF-guarded session; `start()` it inside the event loop."""

    def __init__(
        self,
        policy: TargetPolicy | None = None,
        *,
        limit: int = DEFAULT_CONNECTION_LIMIT,
        proxy: str | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy if policy is not None else TargetPolicy()
        self.limit = limit
        self._proxy = proxy  # http://[user:password@]host:port, or None to connect to targets directly
        self._resolver = resolver  # how targets' names are looked up; None: getaddrinfo
        self._proxied_names: ProxiedNames | None = None
        self._proxy_credentials: dict[str, str] = {}  # Proxy-Authorization, when the proxy asks for it
        self._proxy_at: tuple[str, int] | None = None  # the proxy's host and port, once started
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpSender:
        policy = TargetPolicy(settings.allow_private_targets, settings.allowed_target_cidrs)
        return cls(policy, limit=settings.workers or DEFAULT_CONNECTION_LIMIT, proxy=settings.delivery_proxy)

    async def start(self) -> None:
        if self._session is not None:
            return
        proxy = None
        if self._proxy is None:
            connector = guarded_connector(self.policy, limit=self.limit, resolver=self._resolver)
        else:
            # Every connection is to the proxy the operator chose; the targets are checked in _exchange.
            connector = KeepAliveConnector(limit=self.limit)
            self._proxied_names = ProxiedNames(self.policy, resolver=self._resolver)
            given = URL(self._proxy)
            proxy = given.with_user(None)
            self._proxy_at = (given.host or "", given.port or 0)
            if given.user is not None:
                credentials = aiohttp.encode_basic_auth(given.user, given.password or "")
                self._proxy_credentials = {hdrs.PROXY_AUTHORIZATION: credentials}
        self._session = aiohttp.ClientSession(
            connector=connector,
            proxy=proxy,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # answers.read_excerpt decodes the excerpt: the body may not spoil the status
            headers=_SESSION_HEADERS,
        )

    async def _check_the_proxy(self, exc: BaseException) -> None:
        """Through the delivery proxy: Unavailable when `exc` was the proxy failing webhookd rather than
        the target's doing: it refused webhookd's credentials, or it does not answer. A connection
        through it that broke or went quiet (as when it dies or freezes mid-request) looks like the
        target closing or being slow, so those are told apart by asking the proxy afresh."""
        if self._proxy_at is None:
            return
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            if exc.status == _PROXY_AUTHENTICATION_REQUIRED:
                raise Unavailable(_PROXY_REFUSED_CREDENTIALS) from None
            return  # the proxy's answer about the target
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            raise _proxy_unreachable(_connection_reason(exc)) from None
        if isinstance(exc, aiohttp.ClientConnectionError | TimeoutError):
            reason = await _unreachable(*self._proxy_at)
            if reason is not None:
                raise _proxy_unreachable(reason) from None

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._proxied_names is not None:
            names, self._proxied_names = self._proxied_names, None
            await names.close()

    async def __aenter__(self) -> HttpSender:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def send(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout_ms: int,
        credential: Credential | None = None,
    ) -> AttemptResult:
        """POST `body` to `url` with `headers` (static and signature headers, sent as given) and the
        delivery credential's header, recorded as REDACTED.

        `timeout_ms` bounds the whole exchange, excerpt included; once the status has come it decides
        the outcome, so a body that stalls or breaks off only ends the excerpt (read_excerpt). The result
        carries the headers sent (the session's own and `headers`, bounded when the webhook is saved) and
        those received (bounded: `answers.kept_headers`). Through the delivery proxy, a broken or
        timed-out exchange may take up to _PROXY_PROBE_SECONDS more, to ask the proxy whether it was
        the one that failed (then Unavailable, not an attempt).
        """
        if credential is not None:
            # In place of a static header of its name in any case (updates refuse one; older rows may hold it).
            folded = credential.header.lower()
            headers = {name: value for name, value in headers.items() if name.lower() != folded}
        shown = dict(headers)
        if credential is not None:
            shown[credential.header] = REDACTED
            headers = {**headers, credential.header: credential.value}
        sent = _session_headers_sent(tuple(shown)) + tuple(shown.items())
        result = await self._exchange(url, body=body, headers=headers, timeout_ms=timeout_ms)
        if credential is not None:
            # Before the headers are cut: a credential cut short and then marked would not be recognised.
            result = _credential_hidden(result, credential)
        return result.with_headers(sent, kept_headers(result.response_headers))

    async def _exchange(self, url: str, *, body: bytes, headers: Mapping[str, str], timeout_ms: int) -> AttemptResult:
        session = self._session
        if session is None:
            raise RuntimeError("HttpSender.send() before start()")
        target = _target(url, self.policy)
        if isinstance(target, AttemptResult):
            return target
        started = time.perf_counter()
        budget = timeout_ms / 1000
        if self._proxied_names is not None and parse_ip(target.raw_host or "") is None:
            # The lookup counts against the attempt's timeout, as the connector's own does.
            try:
                async with asyncio.timeout(budget):
                    reason = await self._proxied_names.refusal(target.raw_host or "", target.port or 0)
            except TimeoutError:
                return _timed_out(started, timeout_ms)
            if reason is not None:
                return AttemptResult(Outcome.REFUSED, None, _elapsed_ms(started), _refused(target.host or "", reason))
            budget -= time.perf_counter() - started
        proxy_headers = None
        if self._proxy_credentials:
            # An https target's are the tunnel's CONNECT, never sent inside it; a plain http request
            # goes to the proxy whole, so they are the request's own (the proxy drops them).
            if target.scheme == "https":
                proxy_headers = self._proxy_credentials
            else:
                headers = {**headers, **self._proxy_credentials}
        try:
            async with session.post(
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=max(budget, 0.001)),
                proxy_headers=proxy_headers,
            ) as response:
                status = response.status
                if status == _PROXY_AUTHENTICATION_REQUIRED and self._proxy_at is not None:
                    raise Unavailable(_PROXY_REFUSED_CREDENTIALS)
                excerpt = await read_excerpt(response)
                response_headers = response.headers
        except TimeoutError as exc:  # before OSError: TimeoutError is one; aiohttp's timeouts subclass it
            await self._check_the_proxy(exc)
            return _timed_out(started, timeout_ms)
        except (aiohttp.ClientError, OSError) as exc:
            await self._check_the_proxy(exc)
            refusal = find_refusal(exc)
            if refusal is not None:
                error = _refused(refusal.host, refusal.reason)
                return AttemptResult(Outcome.REFUSED, None, _elapsed_ms(started), error)
            return AttemptResult(Outcome.CONNECTION_ERROR, None, _elapsed_ms(started), _connection_reason(exc))
        return _result(status, _elapsed_ms(started), excerpt, response_headers)


def _credential_hidden(result: AttemptResult, credential: Credential) -> AttemptResult:
    """`result` with the credential hidden wherever the receiver's answer may have echoed it."""
    return replace(
        result,
        error=hidden(result.error, credential),
        response_excerpt=hidden(result.response_excerpt, credential),
        response_headers=tuple((name, hidden(value, credential)) for name, value in result.response_headers),
    )


@functools.lru_cache(maxsize=_HEADER_NAMES_KEPT)
def _session_headers_sent(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The session's headers sent beside a delivery's headers of these `names`: those the delivery's do
    not replace, whatever their case, as aiohttp merges them. Kept per tuple of names: a webhook's
    deliveries all have the same ones."""
    replaced = {name.lower() for name in names}
    return tuple((name, value) for name, value in _SESSION_HEADERS.items() if name.lower() not in replaced)


@functools.lru_cache(maxsize=_TARGETS_KEPT)
def _target(url: str, policy: TargetPolicy) -> URL | AttemptResult:
    """`url` parsed, or the result of refusing it before any connection (a sender's policy never
    changes, so the answer for a URL holds for as long as it is kept). Host names are checked again
    as they resolve, by the guarded connector."""
    try:
        target = URL(url)
        # Reading the host decodes it (IDNA): a webhook stored before its URL was checked for that
        # must fail its attempt, not the worker.
        reason = check_url_host(target, policy)
    except ValueError:  # UnicodeError included
        return AttemptResult(Outcome.CONNECTION_ERROR, None, 0, "invalid URL")
    if reason is not None:
        return AttemptResult(Outcome.REFUSED, None, 0, _refused(target.host or "", reason))
    return target


def _result(status: int, latency_ms: int, excerpt: str, headers: CIMultiDictProxy[str]) -> AttemptResult:
    received = tuple(headers.items())
    if not 100 <= status <= 599:
        # The parser takes any three digits, but HTTP statuses are 100-599 (RFC 9110): stored, 000
        # would read as "no response" (http_status 0) and 999 as a status no client knows.
        return AttemptResult(
            Outcome.CONNECTION_ERROR, None, latency_ms, f"malformed response: {status:03d} is not an HTTP status"
        )
    if 200 <= status < 300:
        return AttemptResult(Outcome.SUCCEEDED, status, latency_ms, "", excerpt, response_headers=received)
    retry_after = None
    if status in _RETRY_AFTER_STATUSES:
        seconds = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
        retry_after = None if seconds is None else clamp_retry_after(seconds)
    error = f"HTTP {status} (redirects are not followed)" if 300 <= status < 400 else f"HTTP {status}"
    return AttemptResult(
        Outcome.FAILED, status, latency_ms, error, excerpt, retry_after, status == _GONE, response_headers=received
    )


async def _unreachable(host: str, port: int) -> str | None:
    """Why the proxy at `host`:`port` does not answer, or None when it does. A connection alone proves
    nothing (the kernel accepts for a process that is frozen or dying), so it is asked for `/`, which
    a proxy answers itself (an error page, 400 or 407): any status line will do."""
    writer = None
    try:
        async with asyncio.timeout(_PROXY_PROBE_SECONDS):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"HEAD / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            answered = (await reader.readline()).startswith(b"HTTP/")
    except TimeoutError:
        return f"no answer within {_PROXY_PROBE_SECONDS:g} s"
    except OSError as error:
        return _connection_reason(error)
    finally:
        if writer is not None:
            writer.close()
    return None if answered else "it closed the connection without an answer"


def _timed_out(started: float, timeout_ms: int) -> AttemptResult:
    return AttemptResult(Outcome.TIMED_OUT, None, _elapsed_ms(started), f"timed out after {timeout_ms} ms")


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _refused(host: str, reason: str) -> str:
    if reason == MISSING_HOST:
        return "target refused: the URL has no host"
    if reason == ZONED_IP:
        return "target refused: the URL's IPv6 address carries a zone id"
    return f"target refused: {host} is {reason}"


_ERRNO_REASONS: Final = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed while sending",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def _proxy_unreachable(reason: str) -> Unavailable:
    # A test event's caller reads "delivery proxy unavailable: retry later"; the reason names the proxy's host.
    return Unavailable(f"the delivery proxy cannot be reached: {reason}", dependency="delivery proxy")


def _connection_reason(exc: BaseException) -> str:
    """A short reason for a failed exchange; aiohttp's own messages can be long and name internals."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return "connection reset"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body was cut short"
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the tunnel refused: the receiver saw nothing
        return f"the delivery proxy answered HTTP {exc.status} to the tunnel"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"malformed response: {exc.message}"[:200]
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "invalid URL"
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(os_error, OSError) and os_error.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[os_error.errno]
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror.lower()
    return type(exc).__name__
