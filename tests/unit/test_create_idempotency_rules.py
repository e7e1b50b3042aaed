"""CreateWebhook's idempotency key on fakes: a retry gets the first create's webhook and secret, a
reuse for another create is refused, keys are per exact scope and held for idempotency.WINDOW."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from fakes import FakeClock, FakeNotifications, FakeSecrets, FakeWebhooks
from webhookd.domain import signing
from webhookd.domain.errors import Invalid
from webhookd.domain.idempotency import MAX_KEY_LENGTH, WINDOW, KeyedRequest, request_fingerprint
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Direction, SignatureScheme, Webhook, WebhookSpec
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
OTHER_TENANT = Scope("tnt_b", person_id="person_2")
APP = Scope("tnt_a", app_id="app_1")
SPEC = WebhookSpec(name="orders", url="https://receiver.example/hooks", event_types=("orders.*",))
KEY = "create-orders-1"


async def test_a_retry_gets_the_first_creates_webhook_and_secret(
    webhooks: Webhooks, webhook_store: FakeWebhooks, secret_store: FakeSecrets
) -> None:
    first = await webhooks.create(TENANT, SPEC, None, idempotency_key=KEY)
    retry = await webhooks.create(TENANT, SPEC, None, idempotency_key=KEY)

    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.webhook == first.webhook
    assert retry.handed_out == first.handed_out
    assert list(webhook_store.rows) == [first.webhook.id]
    assert list(secret_store.records) == [first.webhook.vault_path]


async def test_a_retry_with_its_headers_in_another_order_is_the_same_create(webhooks: Webhooks) -> None:
    first = await webhooks.create(TENANT, replace(SPEC, headers={"X-A": "1", "X-B": "2"}), None, idempotency_key=KEY)
    retry = await webhooks.create(TENANT, replace(SPEC, headers={"X-B": "2", "X-A": "1"}), None, idempotency_key=KEY)

    assert retry.duplicate and retry.webhook.id == first.webhook.id


@dataclass(frozen=True)
class PolicyThen:
    attempts: int = 8


@dataclass(frozen=True)
class SpecThen:
    """A request as one release has it."""

    name: str
    tags: tuple[str, ...] = ()
    policy: PolicyThen = PolicyThen()


@dataclass(frozen=True)
class PolicyNow:
    attempts: int = 8
    jitter: bool = True


@dataclass(frozen=True)
class SpecNow:
    """The same request a release later: it gained fields, with defaults, here and in its policy."""

    name: str
    tags: tuple[str, ...] = ()
    policy: PolicyNow = PolicyNow()
    headers: dict[str, str] = field(default_factory=dict)
    ordering: str = "unordered"


@pytest.mark.parametrize(
    ("then", "now"),
    [
        (SpecThen("orders"), SpecNow("orders")),
        (SpecThen("orders", ("a",), PolicyThen(3)), SpecNow("orders", ("a",), PolicyNow(3))),
    ],
)
def test_a_field_a_later_release_adds_leaves_a_requests_fingerprint_as_it_was(then: SpecThen, now: SpecNow) -> None:
    # A retry that lands on the next release during a deploy is still a retry, not a reused key.
    assert request_fingerprint([then, None]) == request_fingerprint([now, None])


@pytest.mark.parametrize(
    "other",
    [
        SpecNow("orders", ordering="fifo"),
        SpecNow("orders", policy=PolicyNow(jitter=False)),
        SpecNow("orders", headers={"X-A": "1"}),
        SpecNow("other"),
    ],
)
def test_a_value_other_than_the_default_still_tells_requests_apart(other: SpecNow) -> None:
    assert request_fingerprint([SpecNow("orders"), None]) != request_fingerprint([other, None])


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"spec": replace(SPEC, url="https://receiver.example/other")}, id="another url"),
        pytest.param({"spec": replace(SPEC, event_types=("orders.created",))}, id="other event types"),
        pytest.param({"secret": "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0zMg=="}, id="a chosen secret"),
    ],
)
async def test_the_key_of_another_create_is_refused_and_nothing_is_written(
    webhooks: Webhooks, webhook_store: FakeWebhooks, secret_store: FakeSecrets, other: dict[str, object]
) -> None:
    first = await webhooks.create(TENANT, SPEC, None, idempotency_key=KEY)
    spec = other.get("spec", SPEC)
    assert isinstance(spec, WebhookSpec)
    secret = other.get("secret")
    assert secret is None or isinstance(secret, str)

    with pytest.raises(Invalid) as refused:
        await webhooks.create(TENANT, spec, secret, idempotency_key=KEY)

    assert [v.field for v in refused.value.violations] == ["idempotency_key"]
    assert "a new webhook needs a new key" in refused.value.violations[0].description
    assert list(webhook_store.rows) == [first.webhook.id]
    assert list(secret_store.records) == [first.webhook.vault_path]


async def test_a_retry_with_the_secret_it_chose_gets_it_again(webhooks: Webhooks) -> None:
    chosen = signing.generate_secret()
    first = await webhooks.create(TENANT, SPEC, chosen, idempotency_key=KEY)
    retry = await webhooks.create(TENANT, SPEC, chosen, idempotency_key=KEY)

    assert retry.duplicate and (retry.webhook.id, retry.handed_out) == (first.webhook.id, chosen)


async def test_a_key_is_held_per_exact_scope(webhooks: Webhooks, webhook_store: FakeWebhooks) -> None:
    # A tenant-wide caller (a person) and an app of that tenant are two scopes, as for events.
    made = [(await webhooks.create(scope, SPEC, None, idempotency_key=KEY)) for scope in (TENANT, APP, OTHER_TENANT)]

    assert [created.duplicate for created in made] == [False, False, False]
    assert len({created.webhook.id for created in made}) == len(webhook_store.rows) == 3


async def test_a_key_past_its_window_makes_a_new_webhook(
    webhooks: Webhooks, webhook_store: FakeWebhooks, clock: FakeClock
) -> None:
    first = await webhooks.create(TENANT, SPEC, None, idempotency_key=KEY)
    clock.advance(WINDOW)

    later = await webhooks.create(TENANT, replace(SPEC, url="https://receiver.example/new"), None, idempotency_key=KEY)

    assert not later.duplicate and later.webhook.id != first.webhook.id
    assert set(webhook_store.rows) == {first.webhook.id, later.webhook.id}
    again = await webhooks.create(TENANT, replace(SPEC, url="https://receiver.example/new"), None, idempotency_key=KEY)
    assert again.duplicate and again.webhook.id == later.webhook.id  # the key moved on to the new one


async def test_a_retry_after_a_rotation_gets_the_secret_that_signs_now(webhooks: Webhooks) -> None:
    first = await webhooks.create(TENANT, SPEC, None, idempotency_key=KEY)
    rotation = await webhooks.rotate_secret(TENANT, first.webhook.id, overlap=None, signing_secret=None)

    retry = await webhooks.create(TENANT, SPEC, None, idempotency_key=KEY)

    assert retry.duplicate and retry.handed_out == rotation.signing_secret != first.handed_out


async def test_a_retried_ed25519_create_hands_out_its_public_key_again(webhooks: Webhooks) -> None:
    spec = replace(SPEC, signature_scheme=SignatureScheme.ED25519)
    first = await webhooks.create(TENANT, spec, None, idempotency_key=KEY)
    retry = await webhooks.create(TENANT, spec, None, idempotency_key=KEY)

    assert retry.duplicate and retry.handed_out == first.handed_out
    assert retry.handed_out.startswith("whpk_")


async def test_a_retried_inbound_create_gets_its_callback_url(webhooks: Webhooks) -> None:
    spec = WebhookSpec(name="from-crm", url="", direction=Direction.INBOUND)
    first = await webhooks.create(TENANT, spec, None, idempotency_key=KEY)
    retry = await webhooks.create(TENANT, spec, None, idempotency_key=KEY)

    assert retry.duplicate and retry.webhook.spec.url == first.webhook.spec.url != ""


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_LENGTH + 1)])
async def test_a_key_of_no_or_too_many_characters_is_refused(
    webhooks: Webhooks, secret_store: FakeSecrets, key: str
) -> None:
    with pytest.raises(Invalid) as refused:
        await webhooks.create(TENANT, SPEC, None, idempotency_key=key)

    assert [v.field for v in refused.value.violations] == ["idempotency_key"]
    assert secret_store.records == {}


class KeyTakenMeanwhile(FakeWebhooks):
    """Another create with the same key commits between this create's look-up and its insert."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: Webhook | None = None

    async def created_with(self, scope: Scope, key: str) -> tuple[Webhook, str] | None:
        if self.rival is None:
            return None  # the look-up, before the rival commits
        return await super().created_with(scope, key)

    async def insert(self, webhook: Webhook, *, keyed: KeyedRequest | None = None) -> bool:
        if self.rival is None and keyed is not None:
            self.rival = replace(webhook, id="whk_rival", vault_path="webhookd/tenants/tnt_a/webhooks/whk_rival")
            await super().insert(self.rival, keyed=keyed)
        return await super().insert(webhook, keyed=keyed)


async def test_a_create_that_loses_the_race_for_its_key_returns_the_winner_and_leaves_no_secret(
    secret_store: FakeSecrets, clock: FakeClock, notifications: FakeNotifications
) -> None:
    store = KeyTakenMeanwhile()
    racing = Webhooks(
        store, secret_store, notifications, public_url="https://x", allow_insecure_urls=False, clock=clock
    )
    await secret_store.write("webhookd/tenants/tnt_a/webhooks/whk_rival", {"current": "rival-secret"})

    created = await racing.create(TENANT, SPEC, None, idempotency_key=KEY)

    assert created.duplicate and created.webhook.id == "whk_rival" and created.handed_out == "rival-secret"
    assert list(store.rows) == ["whk_rival"]
    assert list(secret_store.records) == ["webhookd/tenants/tnt_a/webhooks/whk_rival"]  # this create's is gone
