"""Bad input is INVALID_ARGUMENT with one BadRequest field violation per offending field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import field_mask_pb2
from webhook_calls import create, create_webhook, error_info, field_violations, rpc_error

from support import AuthedStub, make_caller
from webhookd.app import Backends, Service
from webhookd.config import Settings


async def invalid_create(caller: AuthedStub, **fields: object) -> dict[str, str]:
    error = await rpc_error(create(caller, **fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error_info(error).reason == "INVALID_ARGUMENT"
    return field_violations(error)


@pytest.fixture(scope="module")
async def https_only_channel(settings: Settings, backends: Backends) -> AsyncIterator[grpc.aio.Channel]:
    """A second server on the same database and Vault, as production runs it: http URLs refused."""
    strict = Service(settings.with_overrides(allow_insecure_urls=False), backends)
    await strict.start()
    try:
        async with grpc.aio.insecure_channel(strict.grpc_target) as channel:
            yield channel
    finally:
        await strict.stop(grace=0)


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://example.test/h",
        "/relative/path",
        "https://user:pw@example.test/h",
        "https://",
        "https://e\u200bvil.example/h",  # invisible in the host: the sender refused it on every attempt
        "https://2130706433/h",  # a legacy IPv4 spelling: the sender refused it on every attempt
        "https://[::1]x/h",  # after the brackets: the sender refused it as an invalid URL on every attempt
        "https://[v1.x]/h",  # no IPv6 address: the sender connected to the name v1.x
        "https://[::1%25]/h",  # an empty zone id: the sender looked up ::1%25, the zone 25
        "https://[fe80::1%25eth0]/h",  # a zone id: the sender looked up the zone 25eth0, which no host has
        "https://example.test/h?q=100%",  # a stray %: the sender sent it as %25
        "https://" + "a." * 130 + "test/h",  # a name DNS cannot hold: every attempt failed its lookup
    ],
)
async def test_bad_url_is_invalid_on_the_url_field(caller, url: str) -> None:
    violations = await invalid_create(caller, url=url)
    assert "webhook.url" in violations


async def test_outbound_webhook_without_url_is_invalid(caller) -> None:
    violations = await invalid_create(caller, url="")
    assert list(violations) == ["webhook.url"]


async def test_http_url_is_invalid_when_insecure_urls_are_not_allowed(https_only_channel) -> None:
    strict_caller = make_caller(https_only_channel, subject="person_1")
    violations = await invalid_create(strict_caller, url="http://example.test/h")
    assert "https" in violations["webhook.url"]
    created = await create_webhook(strict_caller, url="https://example.test/h")
    assert created.url == "https://example.test/h"


async def test_http_url_is_accepted_when_insecure_urls_are_allowed(caller) -> None:
    webhook = await create_webhook(caller, url="http://example.test/h")
    assert webhook.url == "http://example.test/h"


async def test_missing_name_is_invalid(caller) -> None:
    violations = await invalid_create(caller, name="   ")
    assert list(violations) == ["webhook.name"]


@pytest.mark.parametrize("event_type", ["RFP.Created", "rfp..created", "rfp.*.x", "", "rfp*"])
async def test_bad_event_type_is_invalid_at_its_index(caller, event_type: str) -> None:
    violations = await invalid_create(caller, event_types=["rfp.created", event_type])
    assert list(violations) == ["webhook.event_types[1]"]


@pytest.mark.parametrize(
    "header", ["Authorization", "cookie", "Host", "Content-Length", "Transfer-Encoding", "webhook-signature"]
)
async def test_forbidden_header_is_invalid_on_its_entry(caller, header: str) -> None:
    violations = await invalid_create(caller, headers={"X-Fine": "ok", header: "value"})
    assert list(violations) == [f'webhook.headers["{header}"]']


async def test_header_value_with_newline_is_invalid(caller) -> None:
    violations = await invalid_create(caller, headers={"X-Evil": "a\r\nInjected: 1"})
    assert list(violations) == ['webhook.headers["X-Evil"]']


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (wpb.RetryPolicy(max_attempts=21), "webhook.retry_policy.max_attempts"),
        (wpb.RetryPolicy(max_attempts=-1), "webhook.retry_policy.max_attempts"),
        (wpb.RetryPolicy(timeout_ms=99), "webhook.retry_policy.timeout_ms"),
        (wpb.RetryPolicy(timeout_ms=30_001), "webhook.retry_policy.timeout_ms"),
        (wpb.RetryPolicy(backoff="linear"), "webhook.retry_policy.backoff"),
    ],
)
async def test_retry_policy_out_of_bounds_is_invalid(caller, policy: wpb.RetryPolicy, field: str) -> None:
    violations = await invalid_create(caller, retry_policy=policy)
    assert list(violations) == [field]


async def test_retry_policy_at_its_bounds_is_accepted(caller) -> None:
    low = await create_webhook(caller, retry_policy=wpb.RetryPolicy(max_attempts=1, timeout_ms=100))
    high = await create_webhook(caller, retry_policy=wpb.RetryPolicy(max_attempts=20, timeout_ms=30_000))
    assert (low.retry_policy.max_attempts, low.retry_policy.timeout_ms) == (1, 100)
    assert (high.retry_policy.max_attempts, high.retry_policy.timeout_ms) == (20, 30_000)


async def test_unknown_signature_scheme_is_invalid(caller) -> None:
    violations = await invalid_create(caller, signature_scheme="md5")
    assert list(violations) == ["webhook.signature_scheme"]


async def test_every_violation_is_reported_at_once(caller) -> None:
    violations = await invalid_create(
        caller,
        name="",
        url="ftp://x",
        event_types=["BAD"],
        headers={"Cookie": "a"},
        retry_policy=wpb.RetryPolicy(max_attempts=50),
    )
    assert set(violations) == {
        "webhook.name",
        "webhook.url",
        "webhook.event_types[0]",
        'webhook.headers["Cookie"]',
        "webhook.retry_policy.max_attempts",
    }


async def test_invalid_create_stores_nothing(caller) -> None:
    await invalid_create(caller, url="ftp://x")
    listed = await caller.ListWebhooks(pb.ListWebhooksRequest(show_deleted=True))
    assert list(listed.webhooks) == []


async def test_negative_page_size_is_invalid(caller) -> None:
    error = await rpc_error(caller.ListWebhooks(pb.ListWebhooksRequest(page_size=-1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["page_size"]


async def test_list_with_a_bad_event_type_filter_is_invalid(caller) -> None:
    error = await rpc_error(caller.ListWebhooks(pb.ListWebhooksRequest(event_type="rfp.*")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["event_type"]


async def update_error(caller: AuthedStub, webhook: wpb.Webhook, *paths: str) -> grpc.aio.AioRpcError:
    return await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))
        )
    )


async def test_an_update_to_a_url_with_an_ipv6_zone_id_is_invalid_and_keeps_the_url(caller) -> None:
    webhook = await create_webhook(caller)

    error = await update_error(caller, wpb.Webhook(id=webhook.id, url="https://[::1%25]/h"), "url")

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "zone id" in field_violations(error)["webhook.url"]
    kept = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert kept.webhook.url == webhook.url


@pytest.mark.parametrize("path", ["no_such_field", "retry_policy.jitter", "*", "vault_path", "id", "version"])
async def test_bad_update_mask_path_is_invalid(caller, path: str) -> None:
    webhook = await create_webhook(caller)
    error = await update_error(caller, wpb.Webhook(id=webhook.id, name="x"), "name", path)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["update_mask.paths[1]"]


async def test_a_mask_of_star_replaces_the_whole_webhook(caller) -> None:
    """AIP-134: `*` is a full replacement; what the message leaves unset goes back to its default."""
    webhook = await create_webhook(caller, tags=["crm"], headers={"X-Team": "billing"}, enabled=False)
    sent = wpb.Webhook(id=webhook.id, name="replaced", url=webhook.url, event_types=["rfp.created"])

    updated = await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(webhook=sent, update_mask=field_mask_pb2.FieldMask(paths=["*"]))
    )

    assert (updated.webhook.name, list(updated.webhook.event_types)) == ("replaced", ["rfp.created"])
    assert (list(updated.webhook.tags), dict(updated.webhook.headers)) == ([], {})
    assert updated.webhook.enabled  # its default, as created
    assert updated.webhook.direction == wpb.DIRECTION_OUTBOUND


async def test_a_mask_of_star_refuses_another_direction(caller) -> None:
    webhook = await create_webhook(caller)
    error = await update_error(
        caller, wpb.Webhook(id=webhook.id, name="x", url=webhook.url, direction=wpb.DIRECTION_INBOUND), "*"
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["webhook.direction"]


async def test_direction_is_immutable_in_the_update_mask(caller) -> None:
    webhook = await create_webhook(caller)
    error = await update_error(caller, wpb.Webhook(id=webhook.id, direction=wpb.DIRECTION_INBOUND), "direction")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "immutable" in field_violations(error)["update_mask.paths[0]"]


async def test_changing_direction_without_a_mask_is_invalid(caller) -> None:
    webhook = await create_webhook(caller)
    error = await rpc_error(
        caller.UpdateWebhook(
            pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, direction=wpb.DIRECTION_INBOUND, name="x"))
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["webhook.direction"]
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook.direction == wpb.DIRECTION_OUTBOUND and got.webhook.name == "hook"


async def test_sending_the_same_direction_without_a_mask_is_fine(caller) -> None:
    webhook = await create_webhook(caller)
    updated = await caller.UpdateWebhook(
        pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id, direction=wpb.DIRECTION_OUTBOUND, name="x"))
    )
    assert updated.webhook.name == "x"


async def test_update_that_breaks_validation_is_invalid_and_changes_nothing(caller) -> None:
    webhook = await create_webhook(caller)
    error = await update_error(caller, wpb.Webhook(id=webhook.id, url="ftp://x"), "url")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhook.url" in field_violations(error)
    got = await caller.GetWebhook(pb.GetWebhookRequest(id=webhook.id))
    assert got.webhook == webhook


async def test_update_with_nothing_to_change_is_invalid(caller) -> None:
    webhook = await create_webhook(caller)
    error = await rpc_error(caller.UpdateWebhook(pb.UpdateWebhookRequest(webhook=wpb.Webhook(id=webhook.id))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["update_mask"]
