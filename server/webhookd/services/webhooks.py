"""Webhook use cases: validate, keep Vault and the database consistent, and stamp what the server owns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import timedelta
from typing import NamedTuple

from webhookd.domain import event_types, idempotency, ids, page_tokens
from webhookd.domain.credentials import credential_id_of, same_origin, with_credential
from webhookd.domain.errors import Aborted, FailedPrecondition, FieldViolation, Invalid, NotFound, Unavailable
from webhookd.domain.fingerprints import fingerprint
from webhookd.domain.idempotency import KeyedRequest
from webhookd.domain.inbound import inbound_url
from webhookd.domain.lifecycle import (
    DISABLED_BY_OWNER,
    ENABLED_BY_OWNER,
    HeldSettled,
    LifecycleChange,
    credential_reason,
    rotated_reason,
)
from webhookd.domain.scope import Scope
from webhookd.domain.secret_changes import lease_lasting
from webhookd.domain.secret_rotation import (
    DEFAULT_OVERLAP,
    MAX_OVERLAP,
    PublicKeys,
    Rotation,
    active_secrets,
    overlap_end,
    public_keys,
    rotated,
)
from webhookd.domain.signing import loose_secret_problem, new_signing_secret, public_key, validate_secret
from webhookd.domain.statuses import LogKind
from webhookd.domain.updates import apply_changes
from webhookd.domain.validation import (
    check_credential,
    check_headers_beside_credential,
    validate_page_size,
    validate_spec,
    validate_update_mask,
)
from webhookd.domain.webhooks import (
    SCHEMA_VERSION,
    Direction,
    Webhook,
    WebhookFilter,
    WebhookPage,
    WebhookSpec,
    check_sends,
)
from webhookd.ports import Clock, Notifications, SecretStore, Topic, WebhookRepository, utc_now
from webhookd.services.secret_leases import SecretLease, SecretLeases
from webhookd.services.to_its_end import to_its_end
from webhookd.services.webhook_cache import WebhookCache

log = logging.getLogger("webhookd.webhooks")

# The key names one create: a retry must repeat it, or a mistaken reuse would be answered with another
# webhook (and its secret) as if it were the one asked for.
CREATE_KEY_REUSED = (
    "was used within 24 hours for another create (other webhook values or signing secret): a retry must"
    " repeat the create, a new webhook needs a new key"
)


class Created(NamedTuple):
    """A created webhook and what its caller keeps: the signing secret, or an ed25519 public key."""

    webhook: Webhook
    handed_out: str
    duplicate: bool = False  # a retry of an earlier create (its idempotency key): nothing was created


# Turns validated update_mask paths into typed new values (built by the transport from its message).
ChangesFor = Callable[[list[str]], Mapping[str, object]]
# An update without a version races other writers optimistically this many times before giving up.
UNVERSIONED_UPDATE_TRIES = 5
# A change to a webhook's secret record reads it again this many times when others land first.
SECRET_CHANGE_TRIES = 5
# How long a change of a webhook's secret record holds its lease, at the default Vault and database timeouts.
DEFAULT_SECRET_LEASE = lease_lasting(vault_timeout=timedelta(seconds=5), database_timeout=timedelta(seconds=5))


class Webhooks:
    def __init__(
        self,
        store: WebhookRepository,
        secrets: SecretStore,
        notifications: Notifications,
        *,
        public_url: str,
        allow_insecure_urls: bool,
        cache: WebhookCache | None = None,
        clock: Clock = utc_now,
        secret_lease: timedelta = DEFAULT_SECRET_LEASE,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._notifications = notifications
        self._cache = cache if cache is not None else WebhookCache()
        self._public_url = public_url
        self._allow_insecure_urls = allow_insecure_urls
        self._now = clock
        # Every writer of a webhook's secret record takes its lease before reading Vault, so changes from
        # any processes follow one another.
        self._leases = SecretLeases(store, lasting=secret_lease)

    async def create(
        self, scope: Scope, spec: WebhookSpec, signing_secret: str | None, *, idempotency_key: str | None = None
    ) -> Created:
        """Writes the secret to Vault, then the row; an insert that failed removes the secret again.
        One whose outcome is unknown leaves it (services/orphan_secrets.py removes it if no row comes).
        Hands out what the caller keeps: the signing secret, or for ed25519 the public key (the private
        key stays in Vault). A create with the idempotency key of one in the same scope within
        idempotency.WINDOW creates nothing and hands out that one's webhook and secret again."""
        spec = validate_spec(spec, allow_insecure_urls=self._allow_insecure_urls)
        _check_chosen_secret(spec, signing_secret)
        keyed = _keyed(idempotency_key, spec, signing_secret)
        if keyed is not None and (earlier := await self._created_earlier(scope, keyed.key)) is not None:
            return await self._created_again(*earlier, keyed)
        secret = signing_secret or new_signing_secret(spec.signature_scheme)
        webhook_id = ids.new_id(ids.WEBHOOK_PREFIX)
        if spec.direction is Direction.INBOUND:
            spec = _with_url(spec, inbound_url(self._public_url, webhook_id))
        vault_path = await self._secrets.path_for(scope.tenant_id, webhook_id)
        await self._secrets.write(vault_path, {"current": secret})
        now = self._now()
        webhook = Webhook(
            id=webhook_id,
            tenant_id=scope.tenant_id,
            app_id=scope.app_id,
            spec=spec,
            created_at=now,
            updated_at=now,
            created_by=scope.person_id,
            updated_by=scope.person_id,
            deleted_at=None,
            deleted_by=None,
            schema_version=SCHEMA_VERSION,
            vault_path=vault_path,
            secret_fingerprint=fingerprint(secret),
            last_delivery_at=None,
            last_delivery_status=None,
            consecutive_failures=0,
            paused_at=None,
            version=1,
        )
        try:
            inserted = await self._store.insert(webhook, keyed=keyed)
        except Unavailable:
            # No answer in time, like a cancelled call (not caught here): the row may still commit (when
            # its COMMIT went unanswered: store/database.py execute_unless_abandoned), and without its
            # secret it could never sign. So the secret stays; the orphan reconciler removes it if no
            # row ever comes.
            raise
        except Exception:
            await asyncio.shield(self._discard_secret(vault_path))
            raise
        if not inserted:
            # A create with the same key committed since the look-up: this one's secret signs nothing.
            await asyncio.shield(self._discard_secret(vault_path))
            assert keyed is not None  # only a keyed insert can find its key held
            earlier = await self._store.created_with(scope, keyed.key)
            if earlier is None:
                raise Aborted("a create with this idempotency_key was under way; retry it")
            return await self._created_again(*earlier, keyed)
        # No other process can hold a webhook that did not exist: nothing to tell them.
        self._cache.put(webhook)
        return Created(webhook, _handed_out(webhook, secret))

    async def _created_earlier(self, scope: Scope, key: str) -> tuple[Webhook, str] | None:
        """The webhook a create made with `key` in this scope within the window, with that create's
        request fingerprint; a key past its window is released for this create to take."""
        earlier = await self._store.created_with(scope, key)
        if earlier is not None and not idempotency.remembered(earlier[0].created_at, self._now()):
            await self._store.release_key(scope, earlier[0].id, key)
            return None
        return earlier

    async def _created_again(self, webhook: Webhook, request: str, keyed: KeyedRequest) -> Created:
        """What the create that made `webhook` handed out, for a retry of it: the secret the webhook
        signs with now (the row's, read from Vault: a rotation since then changed it)."""
        if request != keyed.request:
            raise Invalid.field("idempotency_key", CREATE_KEY_REUSED)
        record = await self._secrets.read(webhook.vault_path)
        secret = active_secrets(record, self._now(), webhook.secret_fingerprint)[0]
        return Created(webhook, _handed_out(webhook, secret), duplicate=True)

    async def get(self, scope: Scope, webhook_id: str, *, fresh: bool = False) -> Webhook:
        """From the cache unless `fresh` (see services/webhook_cache.py for what it may lag)."""
        cached = None if fresh else self._cache.get(webhook_id)
        if cached is None:
            began = self._cache.generation
            cached = await self._store.get(scope, webhook_id)
            self._cache.put(cached, read_at=began)
        elif not scope.owns(cached.tenant_id, cached.app_id):
            raise NotFound.of("webhook", webhook_id)
        return cached

    def follow_changes(self) -> AbstractAsyncContextManager[None]:
        """Keeps the cache in step with other processes' writes while the block runs."""
        return self._notifications.follow(Topic.WEBHOOKS, self._cache.changed)

    async def _write(
        self, writing: Awaitable[Webhook], *, noted: bool | Callable[[Webhook], bool], wakes_workers: bool = False
    ) -> Webhook:
        """`writing`'s webhook, told as `_written` tells it (`noted` may depend on the webhook written).
        Run to its end even when the caller goes away: a write whose COMMIT was sent may land, and must
        then be seen at once like any other (else this cache and the other processes' keep the webhook
        as it was)."""

        async def write_and_tell() -> Webhook:
            webhook = await writing
            return self._written(
                webhook, noted=noted(webhook) if callable(noted) else noted, wakes_workers=wakes_workers
            )

        return await to_its_end(write_and_tell())

    def _written(self, webhook: Webhook, *, noted: bool = False, wakes_workers: bool = False) -> Webhook:
        """After a write: this process reads it at once, other processes forget what they kept. A
        write that noted a lifecycle change wakes the log's followers, and the workers for its
        operational event's deliveries (and for deliveries a resume released); one that made
        deliveries due (`wakes_workers`) wakes the workers."""
        self._cache.put(webhook)
        self._notifications.notify(Topic.WEBHOOKS, f"{webhook.id}:{webhook.version}")
        if noted:
            self._notifications.notify(Topic.ATTEMPTS, webhook.tenant_id)
        if noted or wakes_workers:
            self._notifications.notify(Topic.DELIVERIES)
        return webhook

    async def list_page(self, scope: Scope, query: WebhookFilter, *, page_size: int, page_token: str) -> WebhookPage:
        limit = validate_page_size(page_size)
        key = await self._store.page_token_key()
        digest = page_tokens.query_digest(scope.tenant_id, scope.app_id, query)
        after = page_tokens.decode(key, page_token, digest) if page_token else None
        # One extra row tells whether another page exists without a COUNT.
        rows = await self._store.list(scope, query, after_id=after, limit=limit + 1)
        page, more = rows[:limit], len(rows) > limit
        token = page_tokens.encode(key, page[-1].id, digest) if more else ""
        return WebhookPage(webhooks=page, next_page_token=token)

    async def update(
        self,
        scope: Scope,
        webhook_id: str,
        *,
        expected_version: int | None,
        paths: list[str],
        changes_for: ChangesFor,
        direction: Direction | None = None,
    ) -> Webhook:
        """Applies the masked changes. With a version it is a precondition (ABORTED when stale);
        without one, concurrent writers are retried against the fresh row. `direction`, when given,
        must be the stored one: it is immutable, and AIP-203 refuses a change rather than ignoring it."""
        if not webhook_id:
            raise Invalid.field("webhook.id", "is required: it names the webhook to update")
        paths = validate_update_mask(paths)
        if not paths:
            raise Invalid.field("update_mask", "names no field to update")
        changes = changes_for(paths)
        for _ in range(UNVERSIONED_UPDATE_TRIES):
            current = await self._store.get(scope, webhook_id)
            if current.is_deleted:
                raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it before updating it")
            if expected_version is not None and current.version != expected_version:
                raise Aborted(
                    f"webhook {webhook_id} is at version {current.version}, not {expected_version}: "
                    "read it again and retry"
                )
            if direction is not None and direction is not current.spec.direction:
                raise Invalid.field(
                    "webhook.direction", f"is immutable: this webhook stays {current.spec.direction.value}"
                )
            spec = validate_spec(apply_changes(current.spec, changes), allow_insecure_urls=self._allow_insecure_urls)
            check_headers_beside_credential(spec.headers, current.credential_header)
            if spec.signature_scheme.asymmetric != current.spec.signature_scheme.asymmetric:
                raise Invalid.field(
                    "webhook.signature_scheme",
                    "cannot change between a shared secret (standard-webhooks, hmac-sha256) and an ed25519 key"
                    " pair: what Vault holds signs in one family only; create a new webhook instead",
                )
            if spec.signature_scheme is not current.spec.signature_scheme and (
                spec.signature_scheme.secret_from_sender or current.spec.signature_scheme.secret_from_sender
            ):
                # The secret in Vault is the one the old scheme's sender issued (or webhookd made): no
                # other sender holds it, and Standard Webhooks may not even decode it.
                changed = (
                    spec.signature_scheme if spec.signature_scheme.secret_from_sender else current.spec.signature_scheme
                )
                raise Invalid.field(
                    "webhook.signature_scheme",
                    f"cannot change to or from {changed.value}: its secret is the one the sender issues, and"
                    " the webhook's secret stays; create a new webhook with the secret its sender gives",
                )
            if spec.direction is Direction.INBOUND:
                spec = _with_url(spec, current.spec.url)
            if current.credential_header and not same_origin(spec.url, current.spec.url):
                # Whoever may change the url could otherwise collect a credential they can never read.
                raise FailedPrecondition(
                    f"webhook {webhook_id} sends a delivery credential ({current.credential_header}) to its url's"
                    " origin: remove it with SetWebhookCredential before moving the url to another scheme, host"
                    " or port, then set it again"
                )
            try:
                now = self._now()
                note = None
                if current.spec.enabled != spec.enabled:
                    kind, reason = (
                        (LogKind.ENABLED, ENABLED_BY_OWNER) if spec.enabled else (LogKind.DISABLED, DISABLED_BY_OWNER)
                    )
                    note = LifecycleChange(kind, webhook_id, now, reason)
                # What the claimer held back under the old order or limit must not wait out the old ones.
                routing_changed = (spec.ordering, spec.rate_limit_per_second) != (
                    current.spec.ordering,
                    current.spec.rate_limit_per_second,
                )
                return await self._write(
                    self._store.update_spec(
                        scope,
                        webhook_id,
                        spec,
                        expected_version=current.version,
                        person_id=scope.person_id,
                        now=now,
                        note=note,
                        routing_changed=routing_changed,
                    ),
                    noted=note is not None,
                    wakes_workers=routing_changed,
                )
            except Aborted:
                if expected_version is not None:
                    raise
        raise Aborted(f"webhook {webhook_id} is being changed concurrently; retry")

    async def delete(self, scope: Scope, webhook_id: str, *, expected_version: int | None) -> Webhook:
        now = self._now()
        deleting = self._store.soft_delete(
            scope,
            webhook_id,
            expected_version=expected_version,
            person_id=scope.person_id,
            now=now,
            note=LifecycleChange(LogKind.DELETED, webhook_id, now),
        )
        # A repeated delete returns the webhook unchanged and notes nothing.
        return await self._write(deleting, noted=lambda deleted: deleted.deleted_at == now)

    async def undelete(self, scope: Scope, webhook_id: str) -> Webhook:
        now = self._now()
        note = LifecycleChange(LogKind.UNDELETED, webhook_id, now)
        undeleting = self._store.undelete(scope, webhook_id, person_id=scope.person_id, now=now, note=note)
        return await self._write(undeleting, noted=True)

    async def resume(self, scope: Scope, webhook_id: str, *, discard_held: bool = False) -> tuple[Webhook, HeldSettled]:
        """Clears an automatic pause; the deliveries that waited are due again, and those held while it
        was paused are released in publish order (or discarded), so workers are woken. A webhook that
        is not paused is left as it is (a repeated resume notes nothing)."""
        note = LifecycleChange(LogKind.RESUMED, webhook_id, self._now())

        async def resume_and_tell() -> tuple[Webhook, HeldSettled]:
            webhook, settled = await self._store.resume(
                scope, webhook_id, person_id=scope.person_id, note=note, discard_held=discard_held
            )
            if settled is None:
                return self._written(webhook), HeldSettled(released=0, discarded=0)
            return self._written(webhook, noted=True), settled

        return await to_its_end(resume_and_tell())

    async def rotate_secret(
        self, scope: Scope, webhook_id: str, *, overlap: timedelta | None, signing_secret: str | None
    ) -> Rotation:
        """New current secret in Vault, the old one kept for the overlap; the row gets its fingerprint.
        A chosen secret that is current already, in the row and in Vault, changes nothing (a retry
        whose answer was lost)."""
        overlap = DEFAULT_OVERLAP if overlap is None else overlap
        violations: list[FieldViolation] = []
        if not timedelta(0) <= overlap <= MAX_OVERLAP:
            violations.append(FieldViolation("overlap", "must be between 0s and 7 days (604800s)"))
        # What no scheme accepts is named with the overlap; the webhook's own scheme's rule follows.
        problem = loose_secret_problem(signing_secret) if signing_secret else None
        if problem is not None:
            violations.append(FieldViolation("signing_secret", problem))
        if violations:
            raise Invalid(violations)
        async with self._leases.held(scope, webhook_id) as lease:
            webhook = lease.webhook
            if webhook.is_deleted:
                raise FailedPrecondition(f"webhook {webhook_id} is deleted; undelete it first")
            _check_chosen_secret(webhook.spec, signing_secret)
            now = self._now()
            if signing_secret and fingerprint(signing_secret) == webhook.secret_fingerprint:
                # Already current: a retry of a rotation whose answer was lost. Rotating again would make
                # the secret its own previous one and end the overlap of the one receivers still hold.
                record = await self._secrets.read(webhook.vault_path)
                if record.get("current") == signing_secret:
                    return Rotation(webhook, signing_secret, overlap_end(record, now, webhook.secret_fingerprint))
                # The row committed late, under a record put back when the first try answered UNAVAILABLE:
                # Vault still signs with the old secret, so this retry writes the chosen one after all.
            secret = signing_secret or new_signing_secret(webhook.spec.signature_scheme)
            note = LifecycleChange(LogKind.SECRET_ROTATED, webhook_id, now, rotated_reason(now + overlap))

            async def commit(record: dict[str, str]) -> Webhook:
                updated = await self._store.set_fingerprint(
                    scope,
                    webhook_id,
                    fingerprint(secret),
                    replacing=webhook.secret_fingerprint,
                    lease=lease.token,
                    person_id=scope.person_id,
                    now=now,
                    note=note,
                )
                return self._written(updated, noted=True)

            written = await self._change_secrets(
                lease,
                lambda record: rotated(record, secret, overlap=overlap, now=now, named=webhook.secret_fingerprint),
                commit,
            )
        if webhook.spec.signature_scheme.asymmetric:
            return Rotation(written, "", now + overlap, public_key=public_key(secret))
        return Rotation(written, secret, now + overlap)

    async def set_credential(self, scope: Scope, webhook_id: str, *, header_name: str, header_value: str) -> Webhook:
        """The header an outbound webhook's deliveries carry for a receiver that authenticates its
        callers, kept in the webhook's secret record in Vault (an empty value removes it); the row gets
        the header's name and the credential's new id. Vault first, as for a rotation, so a delivery
        that reads the new id finds the record that has it."""
        async with self._leases.held(scope, webhook_id) as lease:
            webhook = lease.webhook
            check_sends(webhook)
            credential = check_credential(header_name, header_value, webhook.spec.headers)
            if credential is None and not webhook.credential_header:
                return webhook  # nothing to remove: no change, so no entry

            header = "" if credential is None else credential.header
            now = self._now()
            note = LifecycleChange(LogKind.CREDENTIAL_CHANGED, webhook_id, now, credential_reason(header))

            async def commit(record: dict[str, str]) -> Webhook:
                updated = await self._store.set_credential(
                    scope,
                    webhook_id,
                    header,
                    credential_id_of(record),
                    url=webhook.spec.url,
                    lease=lease.token,
                    person_id=scope.person_id,
                    now=now,
                    note=note,
                )
                return self._written(updated, noted=True)

            return await self._change_secrets(
                lease, lambda record: with_credential(record, credential, named_id=webhook.credential_id), commit
            )

    async def close(self) -> None:
        """Stops giving back, in the background, leases the database did not answer for."""
        await self._leases.close()

    async def _change_secrets(
        self,
        lease: SecretLease,
        change: Callable[[dict[str, str]], dict[str, str]],
        commit: Callable[[dict[str, str]], Awaitable[Webhook]],
    ) -> Webhook:
        """Writes `change` of the leased webhook's secret record over just the version it was made from
        (Vault's check-and-set), reading again when a write landed first: under the lease only a late
        one can (a Vault that carried out a write of a holder that gave up, or whose lease lapsed). Then
        `commit` writes the row from the record written, releases the lease and marks the row due for the
        workers' sweep, which takes out what the record kept for a row that might not commit (the secret
        or credential replaced) and destroys the earlier versions: not this call, whose OK answer would
        otherwise wait on Vault once more. When it fails, the caller is told so and the record goes back,
        unless another change has been written since, and the version this change wrote is destroyed
        (`_put_back`). A
        caller that goes away meanwhile does not cut the row write short: one whose COMMIT was sent may
        land, and a record put back under it would leave the row naming a secret nobody holds; so the
        write runs to its end and its outcome decides."""
        vault_path = lease.webhook.vault_path
        for _ in range(SECRET_CHANGE_TRIES):
            before, version = await self._secrets.read_versioned(vault_path)
            after = change(before)
            try:
                await self._secrets.write(vault_path, after, replacing=version)
            except Aborted:
                continue
            break
        else:
            raise Aborted("the webhook's secrets were changed by other calls meanwhile: retry")

        async def commit_or_put_back() -> Webhook:
            try:
                written = await commit(after)
            except BaseException as error:
                lease.unanswered = isinstance(error, Unavailable)
                await self._put_back(lease.webhook, before, version + 1)
                raise
            lease.committed = True
            return written

        return await to_its_end(commit_or_put_back())

    async def _put_back(self, webhook: Webhook, record: dict[str, str], written: int) -> None:
        """`record` again over just the version this change wrote (`written`), unless another change has
        written since; then the versions before the one put back are destroyed. The written one holds
        what never committed, and nothing marks the row for the workers' sweep (store/webhooks.py marks it
        only in the commit), so nothing else would destroy it."""
        try:
            await self._secrets.write(webhook.vault_path, record, replacing=written)
        except Aborted:
            return  # another change wrote the record since: its versions are its commit's (and the sweep's)
        try:
            await self._secrets.destroy_before(webhook.vault_path, written + 1)
        except Unavailable as error:
            # What the caller is told is the failed change's own error; the version ages out (max_versions).
            log.warning(
                "the version a failed secret change wrote was not destroyed",
                extra={"webhook_id": webhook.id, "reason": error.message},
            )

    async def public_key(self, scope: Scope, webhook_id: str) -> PublicKeys:
        """An ed25519 webhook's public key (and each previous one that still signs), derived
        from the private keys in Vault; FailedPrecondition for the other schemes."""
        webhook = await self._store.get(scope, webhook_id)
        if not webhook.spec.signature_scheme.asymmetric:
            raise FailedPrecondition(
                f"webhook {webhook_id} signs with {webhook.spec.signature_scheme.value}, a shared secret:"
                " only an ed25519 webhook has a public key"
            )
        return public_keys(await self._secrets.read(webhook.vault_path), self._now(), webhook.secret_fingerprint)

    async def _discard_secret(self, vault_path: str) -> None:
        try:
            await self._secrets.delete(vault_path)
        except Exception:
            log.exception("could not remove the secret of an uncreated webhook", extra={"vault_path": vault_path})


def event_type_filter(event_type: str) -> tuple[str, ...]:
    """The stored filters that would receive `event_type`; Invalid when it is not an event type."""
    if not event_type:
        return ()
    problem = event_types.validate_event_type(event_type)
    if problem is not None:
        raise Invalid.field("event_type", problem)
    return tuple(event_types.matching_filters(event_type))


def _check_chosen_secret(spec: WebhookSpec, signing_secret: str | None) -> None:
    """A caller may choose a shared secret (validated); an ed25519 key pair is always the server's;
    a secret the sender issues (`SignatureScheme.secret_from_sender`) must be given."""
    scheme = spec.signature_scheme
    if not signing_secret:
        if scheme.secret_from_sender:
            raise Invalid.field(
                "signing_secret",
                f"required for {scheme.value}: the endpoint's signing secret, as {scheme.value.title()} shows it",
            )
        return
    if scheme.asymmetric:
        raise Invalid.field(
            "signing_secret",
            "must be empty for ed25519: the server makes the key pair and keeps the private key in Vault",
        )
    problem = validate_secret(signing_secret, scheme)
    if problem is not None:
        raise Invalid.field("signing_secret", problem)


def _keyed(idempotency_key: str | None, spec: WebhookSpec, signing_secret: str | None) -> KeyedRequest | None:
    """The create's key with its request's fingerprint (a chosen secret by its own fingerprint only)."""
    if idempotency_key is None:
        return None
    if (problem := idempotency.key_problem(idempotency_key)) is not None:
        raise Invalid.field("idempotency_key", problem)
    chosen = fingerprint(signing_secret) if signing_secret else None
    return KeyedRequest(idempotency_key, idempotency.request_fingerprint([spec, chosen]))


def _handed_out(webhook: Webhook, secret: str) -> str:
    """What a create hands its caller: the signing secret, or for ed25519 the public key (the private
    key never leaves Vault)."""
    return public_key(secret) if webhook.spec.signature_scheme.asymmetric else secret


def _with_url(spec: WebhookSpec, url: str) -> WebhookSpec:
    return replace(spec, url=url)
