"""The webhook settings issue 15 adds, on fakes: ed25519 key pairs (Vault keeps the private key, callers get
the public one), channels, the rate limit and ordering as a spec takes them."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fakes import FakeClock, FakeSecrets, FakeWebhooks
from webhookd.domain import routing, signing
from webhookd.domain.errors import FailedPrecondition, Invalid
from webhookd.domain.fingerprints import fingerprint
from webhookd.domain.scope import Scope
from webhookd.domain.secret_rotation import PreviousKey, active_secrets
from webhookd.domain.signing import public_key as signing_key_of
from webhookd.domain.validation import validate_spec
from webhookd.domain.webhooks import Direction, Ordering, RetryPolicy, SignatureScheme, WebhookSpec
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
ED25519 = WebhookSpec(name="signed", url="https://receiver.example/hooks", signature_scheme=SignatureScheme.ED25519)


def fields(error: Invalid) -> list[str]:
    return [violation.field for violation in error.violations]


# -- ed25519 ---------------------------------------------------------------------------------------------


async def test_create_keeps_the_private_key_in_vault_and_hands_out_the_public_one(
    webhooks: Webhooks, secret_store: FakeSecrets, webhook_store: FakeWebhooks
) -> None:
    webhook, public_key, _ = await webhooks.create(TENANT, ED25519, None)

    [record] = secret_store.records.values()
    private_key = record["current"]
    assert private_key.startswith("whsk_") and public_key.startswith("whpk_")
    seed = base64.b64decode(private_key.removeprefix("whsk_"))
    raw_public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert base64.b64decode(public_key.removeprefix("whpk_")) == raw_public
    assert webhook.secret_fingerprint == fingerprint(private_key)
    assert private_key not in repr(webhook_store.rows)


async def test_the_public_key_is_there_later_and_during_a_rotation_the_previous_too(
    webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, first, _ = await webhooks.create(TENANT, ED25519, None)
    assert (await webhooks.public_key(TENANT, webhook.id)).public_key == first

    rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    keys = await webhooks.public_key(TENANT, webhook.id)

    assert rotation.signing_secret == "" and rotation.public_key.startswith("whpk_")
    assert keys.public_key == rotation.public_key
    assert keys.previous == (PreviousKey(first, clock.now + timedelta(hours=1)),)
    clock.advance(timedelta(hours=1))
    assert (await webhooks.public_key(TENANT, webhook.id)).previous == ()


async def test_every_previous_key_that_still_signs_is_listed_newest_first(
    webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """Rotations within each other's overlaps: each replaced key signs until its own overlap ends."""
    webhook, first, _ = await webhooks.create(TENANT, ED25519, None)
    keys = [first]
    for hours in (5, 4, 3):
        rotation = await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=hours), signing_secret=None)
        keys.append(rotation.public_key)
        clock.advance(timedelta(minutes=10))
    [record] = secret_store.records.values()
    signing = active_secrets(record, clock.now, fingerprint(record["current"]))

    listed = await webhooks.public_key(TENANT, webhook.id)

    assert len(signing) == 4
    assert listed.public_key == keys[3]
    assert [key.public_key for key in listed.previous] == [keys[2], keys[1], keys[0]]
    every_key = [listed.public_key, *(key.public_key for key in listed.previous)]
    assert [signing_key_of(secret) for secret in signing] == every_key
    expiries = [key.expires_at for key in listed.previous]
    started = clock.now - timedelta(minutes=30)
    assert expiries == [
        started + timedelta(minutes=20, hours=3),
        started + timedelta(minutes=10, hours=4),
        started + timedelta(hours=5),
    ]


async def test_the_key_pair_is_always_the_servers(webhooks: Webhooks) -> None:
    with pytest.raises(Invalid) as on_create:
        await webhooks.create(TENANT, ED25519, signing.generate_secret())
    webhook, _, _ = await webhooks.create(TENANT, ED25519, None)
    with pytest.raises(Invalid) as on_rotate:
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=None, signing_secret=signing.generate_secret())

    assert fields(on_create.value) == fields(on_rotate.value) == ["signing_secret"]


async def test_a_shared_secret_webhook_has_no_public_key_and_cannot_switch_to_ed25519(webhooks: Webhooks) -> None:
    webhook, _, _ = await webhooks.create(TENANT, replace(ED25519, signature_scheme=SignatureScheme.HMAC_SHA256), None)

    with pytest.raises(FailedPrecondition):
        await webhooks.public_key(TENANT, webhook.id)
    with pytest.raises(Invalid) as raised:
        await webhooks.update(
            TENANT,
            webhook.id,
            expected_version=None,
            paths=["signature_scheme"],
            changes_for=lambda _: {"signature_scheme": SignatureScheme.ED25519},
        )
    assert fields(raised.value) == ["webhook.signature_scheme"]


def test_ed25519_signs_every_key_with_v1a_over_id_timestamp_and_body() -> None:
    keys = [signing.generate_private_key(), signing.generate_private_key()]

    headers = signing.sign_headers(SignatureScheme.ED25519, keys, "msg_1", 1700000000, b'{"a":1}')

    entries = headers[signing.SIGNATURE_HEADER].split()
    assert [entry.split(",")[0] for entry in entries] == ["v1a", "v1a"]
    for key, entry in zip(keys, entries, strict=True):
        public = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.removeprefix("whsk_"))).public_key()
        public.verify(base64.b64decode(entry.split(",")[1]), b'msg_1.1700000000.{"a":1}')  # raises when wrong


# -- channels, rate limit, ordering ----------------------------------------------------------------------


def test_a_spec_keeps_its_channels_once_each_and_its_rate_limit_and_ordering() -> None:
    spec = replace(ED25519, channels=("eu", "project:7", "eu"), rate_limit_per_second=5, ordering=Ordering.FIFO)

    checked = validate_spec(spec, allow_insecure_urls=False)

    assert (checked.channels, checked.rate_limit_per_second, checked.ordering) == (
        ("eu", "project:7"),
        5,
        Ordering.FIFO,
    )


def test_bad_channels_and_a_bad_rate_limit_are_named() -> None:
    spec = replace(
        ED25519,
        channels=("ok", "", "-leading", "x" * 129, *(f"c{n}" for n in range(50))),
        rate_limit_per_second=-1,
    )

    with pytest.raises(Invalid) as raised:
        validate_spec(spec, allow_insecure_urls=False)

    assert fields(raised.value) == [
        "webhook.channels",
        "webhook.channels[1]",
        "webhook.channels[2]",
        "webhook.channels[3]",
        "webhook.rate_limit_per_second",
    ]


def test_an_inbound_webhook_refuses_each_setting_only_deliveries_use_and_an_ed25519_scheme() -> None:
    """Nothing is delivered to an inbound webhook: these would be stored and shown, and do nothing."""
    spec = replace(
        ED25519,
        direction=Direction.INBOUND,
        channels=("eu",),
        rate_limit_per_second=5,
        ordering=Ordering.FIFO,
        headers={"X-Team": "crm"},
        retry_policy=RetryPolicy(max_attempts=3),
    )

    with pytest.raises(Invalid) as raised:
        validate_spec(spec, allow_insecure_urls=False)

    assert fields(raised.value) == [
        "webhook.headers",
        "webhook.retry_policy",
        "webhook.channels",
        "webhook.rate_limit_per_second",
        "webhook.ordering",
        "webhook.signature_scheme",
    ]
    assert all("inbound" in violation.description for violation in raised.value.violations)


def test_an_inbound_webhook_takes_those_settings_at_their_defaults() -> None:
    spec = WebhookSpec(name="in", url="", direction=Direction.INBOUND, ordering=Ordering.UNORDERED)

    checked = validate_spec(spec, allow_insecure_urls=False)

    assert (checked.channels, checked.rate_limit_per_second, checked.ordering) == ((), 0, Ordering.UNORDERED)


async def test_an_update_cannot_give_an_inbound_webhook_an_order_and_changes_nothing(webhooks: Webhooks) -> None:
    inbound = WebhookSpec(name="in", url="", direction=Direction.INBOUND)
    webhook, _, _ = await webhooks.create(TENANT, inbound, None)

    with pytest.raises(Invalid) as raised:
        await webhooks.update(
            TENANT,
            webhook.id,
            expected_version=None,
            paths=["ordering", "rate_limit_per_second"],
            changes_for=lambda _: {"ordering": Ordering.FIFO, "rate_limit_per_second": 0},
        )
    cleared = await webhooks.update(
        TENANT,
        webhook.id,
        expected_version=None,
        paths=["channels", "ordering", "rate_limit_per_second"],
        changes_for=lambda _: {"channels": (), "ordering": Ordering.UNORDERED, "rate_limit_per_second": 0},
    )

    assert fields(raised.value) == ["webhook.ordering"]
    assert cleared.spec.ordering is Ordering.UNORDERED and cleared.version == webhook.version + 1


@pytest.mark.parametrize(
    ("webhook", "event", "receives"),
    [
        ((), (), True),
        ((), ("eu",), True),
        (("eu",), (), False),
        (("eu", "us"), ("us",), True),
        (("eu",), ("EU",), False),
    ],
)
def test_channels_match_exactly_and_a_webhook_without_any_takes_all(
    webhook: tuple[str, ...], event: tuple[str, ...], receives: bool
) -> None:
    assert routing.receives_channels(webhook, event) is receives
