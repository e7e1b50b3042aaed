"""Webhook signing secrets in Vault KV v2, through hvac.

hvac is synchronous, so every call runs on this store's own small thread pool, never on the event
loop's shared default executor (which also serves aiohttp's DNS lookups: a slow Vault must not stall
outbound deliveries). Each thread has its own hvac client, each sending on a kept-alive connection
of its own (secrets/transport.py). The exception is `write`, on CreateWebhook's path: it is sent
from the event loop (secrets/loop_transport.py), as the hand-off to a thread cost more CPU than
the write. Nothing is cached here: reads for signing are cached by fingerprint in
services/signing_secrets.py, and a rotation must read what Vault holds now. Errors never carry the
token or a secret value.

The token comes from a VaultLogin (secrets/login.py). Where it can be had again, a call that Vault
refuses for its token logs in again once and is retried with the new token, so a token that was
revoked or ran out costs one call's login, not an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import hvac
import hvac.exceptions

from webhookd.domain.errors import Aborted, Invalid, NotFound, Unavailable
from webhookd.secrets.login import GivenToken, LoginFailed, VaultLogin
from webhookd.secrets.loop_transport import LoopConnections, Prepared, TwoPassSession
from webhookd.secrets.transport import VaultSession

log = logging.getLogger("webhookd.vault")
DEFAULT_TIMEOUT_SECONDS = 5.0
# Vault answered with an error, or could not be reached (the transport's errors are all OSErrors).
_FAILURES = (hvac.exceptions.VaultError, OSError, LoginFailed)
# What KV v2 answers (400) to a write whose check-and-set version is not the current one.
_CAS_MISMATCH = "check-and-set parameter did not match"
DEFAULT_THREADS = 4
# What a caller is told to wait before retrying when Vault did not answer (RetryInfo).
RETRY_AFTER_SECONDS = 1.0
# How long a process that is stopping waits for Vault to revoke its token.
LOG_OUT_SECONDS = 1.0
# `<prefix>/deployment` names the deployment (the database) whose secrets the prefix holds, beside
# `<prefix>/tenants`; its one key has the same name.
DEPLOYMENT_MARKER = "deployment"
T = TypeVar("T")
# Ids become one path segment each: starting with a letter or digit rules out "." and "..", and
# no "/" means an id can never reach outside its tenant's folder.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ID_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
_VAULT_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z")
# What Vault answers a token it does not accept with (or one whose policies forbid the call).
_REFUSED = (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)
# Faults Vault may not answer with a moment later (sealed while starting, an internal error, a proxy's
# bad gateway, a rate limit), unlike a refusal: start-up asks again, a bounded few times.
_PASSING = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.RateLimitExceeded,
)
# What a KV v2 engine answers (HTTP 400) while it upgrades its storage in the background, just
# mounted or tuned from version 1 (on a standby: "Waiting for the primary to upgrade from ..."):
# as passing as a sealed Vault. The words are the KV v2 plugin's, in Vault and OpenBao alike.
_KV_UPGRADING = "non-versioned to versioned data"
START_ATTEMPTS = 4
START_RETRY_SECONDS = 0.5  # times the attempt's number: 0.5, 1 and 1.5 s, 3 s in all


class VaultMisconfigured(RuntimeError):
    """Vault answers and takes the token, but not where the settings point: no call could succeed."""


@dataclass(frozen=True)
class TokenLifetime:
    seconds_left: int  # 0: the token never expires
    renewable: bool


def secret_path(prefix: str, tenant_id: str, webhook_id: str) -> str:
    """`<prefix>/tenants/<tenant_id>/webhooks/<webhook_id>`; Invalid unless each id is one safe segment."""
    for field, value in (("tenant_id", tenant_id), ("webhook_id", webhook_id)):
        if not _ID.fullmatch(value):
            raise Invalid.field(field, _ID_RULE)
    return f"{prefix.strip('/')}/tenants/{tenant_id}/webhooks/{webhook_id}"


class VaultSecretStore:
    """Secrets at server-chosen paths under `prefix` in the KV v2 engine mounted at `mount`, in
    `namespace` when there is one, with a token given or obtained by `login`."""

    def __init__(
        self,
        addr: str,
        login: str | VaultLogin,
        *,
        mount: str = "secret",
        prefix: str = "webhookd",
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self.addr = addr
        self.namespace = namespace
        self.mount = mount.strip("/")
        self.prefix = prefix.strip("/")
        self._login = GivenToken(login) if isinstance(login, str) else login
        # The token every thread's client sends; None until the first login, which the first call makes.
        self._token: str | None = login if isinstance(login, str) else None
        self._token_lock = threading.Lock()
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vault")
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        # The event loop's own client, for the write on a Create's path (secrets/loop_transport.py):
        # used between awaits only, so one is enough.
        self._loop_session = TwoPassSession()
        self._loop_client = hvac.Client(
            url=addr, token="", namespace=namespace or None, timeout=timeout, session=self._loop_session
        )
        self._on_loop = LoopConnections(limit=threads)

    def _client(self) -> Any:
        """This thread's hvac client."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = hvac.Client(
                url=self.addr,
                token="",  # set before each call: the store's token of the moment
                namespace=self.namespace or None,  # sent as X-Vault-Namespace on every request
                timeout=self._timeout,
                session=VaultSession(),
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    @property
    def renews_by_login(self) -> bool:
        """Whether a new token can be had by logging in again (not so for a token given once)."""
        return self._login.renews_by_login

    async def _call(self, method: Callable[[Any], T]) -> T:
        """`method(client)` on one of the store's threads, bounded by the timeout."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(self._with_token, method))
        try:
            return await asyncio.wait_for(future, self._timeout + 1)
        except TimeoutError as exc:
            raise _unreachable("no answer in time") from exc

    async def _call_on_loop(self, method: Callable[[Any], T]) -> T:
        """`method(client)` sent from the event loop, for a method that makes one request. The first
        call (which logs in) and a call Vault refused for its token go to `_call`, which logs in."""
        token = self._token
        if token is None:
            return await self._call(method)
        client = self._loop_client
        client.token = token
        try:
            method(client)
            raise RuntimeError("an hvac method sent nothing")  # every method used here sends a request
        except Prepared as prepared:
            request = prepared.request
        try:
            response = await self._on_loop.send(request)
        except TimeoutError as exc:
            raise _unreachable("no answer in time") from exc
        client.token = token
        self._loop_session.answer(response)
        try:
            return method(client)
        except _REFUSED:
            if not self._login.renews_by_login:
                raise
        return await self._call(method)

    def _with_token(self, method: Callable[[Any], T]) -> T:
        """`method(client)` with the current token; once more with a new one if Vault refused the token."""
        client = self._client()
        token = self._current_token(client)
        client.token = token
        try:
            return method(client)
        except _REFUSED:
            fresh = self._replace_token(client, token)
            if fresh is None:
                raise
            client.token = fresh
            return method(client)

    def _current_token(self, client: Any) -> str:
        token = self._token
        if token is not None:
            return token
        with self._token_lock:  # one thread logs in; the others wait for its token
            return self._token if self._token is not None else self._new_token(client)

    def _replace_token(self, client: Any, refused: str) -> str | None:
        """A token in place of `refused`, or None when a new one would not help: the token is given,
        or Vault still takes it (so the call was refused for what it asked, and logging in again for
        each such call would only load Vault)."""
        if not self._login.renews_by_login:
            return None
        with self._token_lock:
            if self._token != refused:
                return self._token  # another thread has replaced it
            try:
                client.auth.token.lookup_self()
            except _REFUSED:
                return self._new_token(client)
            return None

    def _new_token(self, client: Any) -> str:
        """A token from the login method, asked without sending the token it replaces; the store's from
        now on."""
        held, client.token = client.token, ""
        try:
            self._token = self._login.log_in(client)
        except hvac.exceptions.VaultError as exc:
            raise LoginFailed(f"{self._login.name} login refused: {_reason(exc)}", passing=_passing(exc)) from None
        finally:
            client.token = held
        return self._token

    async def log_in_again(self) -> None:
        """Replace the token with a new one from the login method (the renewal's, before the current
        token's maximum TTL runs out)."""

        def log_in(client: Any) -> None:
            with self._token_lock:
                self._new_token(client)

        await self._answer(log_in)

    async def path_for(self, tenant_id: str, webhook_id: str) -> str:
        return secret_path(self.prefix, tenant_id, webhook_id)

    async def write(self, path: str, data: dict[str, str], *, replacing: int | None = None) -> None:
        _check_path(path)
        write = functools.partial(_write, path=path, data=dict(data), mount=self.mount, cas=replacing)
        try:
            await self._call_on_loop(write)
        except hvac.exceptions.InvalidRequest as exc:
            if replacing is not None and _CAS_MISMATCH in str(exc):
                raise Aborted(f"the secret at {path} changed since version {replacing}") from None
            raise _unavailable(exc) from exc
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    async def read(self, path: str) -> dict[str, str]:
        return (await self.read_versioned(path))[0]

    async def read_versioned(self, path: str) -> tuple[dict[str, str], int]:
        _check_path(path)
        try:
            response = await self._call(functools.partial(_read, path=path, mount=self.mount))
        except hvac.exceptions.InvalidPath:
            raise NotFound(f"no secret at {path}") from None
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        data = {str(k): str(v) for k, v in (response["data"]["data"] or {}).items()}
        return data, int(response["data"]["metadata"]["version"])

    async def delete(self, path: str) -> None:
        """Delete the secret with its metadata and every version; an absent secret is fine."""
        _check_path(path)
        try:
            await self._call(functools.partial(_delete, path=path, mount=self.mount))
        except hvac.exceptions.InvalidPath:
            pass
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    async def destroy_before(self, path: str, version: int) -> int:
        """Destroys every version before `version` that KV v2 still keeps (its data gone for good, its
        metadata kept); an absent secret is fine."""
        _check_path(path)
        try:
            metadata = await self._call(functools.partial(_metadata, path=path, mount=self.mount))
            kept = metadata["data"]["versions"]
            earlier = sorted(int(n) for n, state in kept.items() if int(n) < version and not state["destroyed"])
            if earlier:
                await self._call(functools.partial(_destroy, path=path, mount=self.mount, versions=earlier))
        except hvac.exceptions.InvalidPath:
            return 0
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return len(earlier)

    async def tenants(self) -> list[str]:
        """The tenants that have a folder of webhook secrets, in order."""
        return await self._folder(f"{self.prefix}/tenants")

    async def webhook_ids(self, tenant_id: str) -> list[str]:
        """The webhooks of `tenant_id` that have a secret, in order."""
        return await self._folder(f"{self.prefix}/tenants/{tenant_id}/webhooks")

    async def written_at(self, path: str) -> datetime | None:
        """When the secret at `path` was last written (by Vault's clock), or None when there is none."""
        _check_path(path)
        try:
            response = await self._call(functools.partial(_metadata, path=path, mount=self.mount))
        except hvac.exceptions.InvalidPath:
            return None
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return _vault_time(str(response["data"]["updated_time"]))

    async def claim_prefix(self, deployment_id: str) -> str:
        path = f"{self.prefix}/{DEPLOYMENT_MARKER}"
        try:
            return (await self.read(path))[DEPLOYMENT_MARKER]
        except NotFound:
            pass
        with contextlib.suppress(Aborted):  # another deployment's claim came first: its id is read back
            await self.write(path, {DEPLOYMENT_MARKER: deployment_id}, replacing=0)
        return (await self.read(path))[DEPLOYMENT_MARKER]

    async def _folder(self, path: str) -> list[str]:
        _check_path(path)
        try:
            response = await self._call(functools.partial(_list, path=path, mount=self.mount))
        except hvac.exceptions.InvalidPath:
            return []  # nothing stored under it
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return sorted(str(key).rstrip("/") for key in response["data"]["keys"])

    async def ping(self) -> None:
        """Raise Unavailable unless Vault answers, is unsealed, takes the token and lets it read where
        the secrets go: a mount disabled or a policy changed while running fails every create, so
        readiness asks what start-up asked. One read of the deployment marker when all is well."""
        try:
            await self._check_reach()
        except VaultMisconfigured as error:
            # Vault refuses a token it no longer takes on every path: then the token is the reason.
            await self.token_lifetime()
            raise _unreachable_as(str(error)) from None
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    async def ping_at_start(self, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`ping`, asked again while Vault answers with a passing fault: a process starting beside a
        Vault that stumbles once (OpenBao has answered an AppRole login with HTTP 500) starts instead
        of exiting. Refusals and silence fail at once, as `ping` does."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self._call(lambda client: client.auth.token.lookup_self())
                await self._check_reach()
                return
            except _FAILURES as exc:
                if attempt == START_ATTEMPTS or not _passing(exc):
                    raise _unavailable(exc) from exc
                log.warning("vault stumbled at start-up; asking again", extra={"reason": _unavailable(exc).message})
            await sleep(START_RETRY_SECONDS * attempt)

    async def _check_reach(self) -> None:
        """VaultMisconfigured unless the token may read where the secrets go: a token Vault takes is no
        proof of it, and a misspelt mount or a prefix the policy does not name failed every create
        while the service said it was ready. The prefix's deployment marker is read, there or not."""
        marker = functools.partial(_read, path=f"{self.prefix}/{DEPLOYMENT_MARKER}", mount=self.mount)
        try:
            await self._call(marker)
        except hvac.exceptions.InvalidPath as exc:
            # KV v2 answers a secret not written with no error text; a path no engine serves names its route.
            if exc.errors:
                raise VaultMisconfigured(
                    f"vault: no KV v2 secrets engine is mounted at {self.mount!r} (WEBHOOKD_VAULT_MOUNT)"
                ) from None
        except hvac.exceptions.Forbidden:
            raise VaultMisconfigured(
                f"vault: the token may not read secrets under {self.mount}/data/{self.prefix}/ (WEBHOOKD_VAULT_MOUNT,"
                " WEBHOOKD_VAULT_PREFIX): give it docs/vault-policy.hcl with their values"
            ) from None

    async def token_lifetime(self) -> TokenLifetime:
        """What Vault says of the token: seconds left (0: it never expires) and whether it renews."""
        data = (await self._answer(lambda client: client.auth.token.lookup_self()))["data"]
        return TokenLifetime(int(data.get("ttl") or 0), bool(data.get("renewable")))

    async def renew_token(self) -> TokenLifetime:
        """Renews the token for as long as Vault allows; what it has left after."""
        auth = (await self._answer(lambda client: client.auth.token.renew_self()))["auth"]
        return TokenLifetime(int(auth.get("lease_duration") or 0), bool(auth.get("renewable")))

    async def _answer(self, method: Callable[[Any], Any]) -> Any:
        """`_call`, every failure Unavailable."""
        try:
            return await self._call(method)
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    async def log_out(self) -> None:
        """Revokes the token the store logged in for, so that it does not outlive the process (a
        given token, or Agent's in a token file, is theirs to keep). Bounded: one that Vault does not
        revoke in time lapses with its TTL."""
        if not self._login.owns_token or self._token is None:
            return
        try:
            await asyncio.wait_for(self._answer(lambda client: client.auth.token.revoke_self()), LOG_OUT_SECONDS)
        except (Unavailable, TimeoutError) as error:
            reason = error.message if isinstance(error, Unavailable) else "no answer in time"
            log.warning("vault token not revoked; it lapses with its TTL", extra={"reason": reason})
        self._token = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._on_loop.close()
        with self._clients_lock:
            for client in self._clients:
                client.adapter.close()
            self._clients.clear()


def _write(client: Any, *, path: str, data: dict[str, str], mount: str, cas: int | None) -> Any:
    return client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas, mount_point=mount)


def _read(client: Any, *, path: str, mount: str) -> Any:
    return client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount, raise_on_deleted_version=True)


def _delete(client: Any, *, path: str, mount: str) -> Any:
    return client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount)


def _destroy(client: Any, *, path: str, mount: str, versions: list[int]) -> Any:
    return client.secrets.kv.v2.destroy_secret_versions(path=path, versions=versions, mount_point=mount)


def _list(client: Any, *, path: str, mount: str) -> Any:
    return client.secrets.kv.v2.list_secrets(path=path, mount_point=mount)


def _metadata(client: Any, *, path: str, mount: str) -> Any:
    return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)


def _vault_time(text: str) -> datetime:
    """Vault's RFC 3339 time (nanoseconds, `Z`) as a datetime (microseconds)."""
    match = _VAULT_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a Vault timestamp: {text!r}")
    return datetime.fromisoformat(match[1] + (match[2] or "")[:7] + "+00:00")


def _check_path(path: str) -> None:
    segments = path.split("/")
    if not path or any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"not a usable secret path: {path!r}")


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (hvac.exceptions.VaultDown, "sealed or down (HTTP 503)"),
    (hvac.exceptions.VaultNotInitialized, "not initialised (HTTP 501)"),
    (hvac.exceptions.Forbidden, "token rejected (HTTP 403)"),
    (hvac.exceptions.Unauthorized, "token rejected (HTTP 401)"),
    (hvac.exceptions.InternalServerError, "internal error (HTTP 500)"),
    (hvac.exceptions.BadGateway, "bad gateway (HTTP 502)"),
    (hvac.exceptions.RateLimitExceeded, "rate limited (HTTP 429)"),
    (hvac.exceptions.InvalidRequest, "request rejected (HTTP 400)"),
    (hvac.exceptions.InvalidPath, "no such mount or path (HTTP 404)"),
)


def _reason(exc: Exception) -> str:
    """A short reason built from the error's type only, never from its text (but for the one answer
    matched against known words: a KV v2 engine upgrading its storage)."""
    if kv_upgrading(exc):
        return "the KV v2 engine is upgrading its storage (HTTP 400)"
    # Otherwise ConnectionRefusedError, TimeoutError, the transport's TransportError… or another VaultError.
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), type(exc).__name__)


def kv_upgrading(exc: Exception) -> bool:
    """Whether Vault answered that the KV v2 engine is upgrading its storage: it serves in a moment."""
    return isinstance(exc, hvac.exceptions.InvalidRequest) and any(_KV_UPGRADING in str(e) for e in exc.errors or ())


def _passing(exc: Exception) -> bool:
    return isinstance(exc, _PASSING) or kv_upgrading(exc) or (isinstance(exc, LoginFailed) and exc.passing)


def _unavailable(exc: Exception) -> Unavailable:
    # A login's failure says which method and why, in words written here (secrets/login.py).
    return _unreachable(str(exc) if isinstance(exc, LoginFailed) else _reason(exc))


def _unreachable(reason: str) -> Unavailable:
    # Callers read "vault unavailable: retry later"; the reason is logged and shown by /readyz.
    return _unreachable_as(f"vault unreachable: {reason}")


def _unreachable_as(message: str) -> Unavailable:
    return Unavailable(message, retry_after_seconds=RETRY_AFTER_SECONDS, dependency="vault")
