from __future__ import annotations

import pytest

from webhookd.domain.event_types import (
    MAX_LENGTH,
    matches,
    matching_filters,
    validate_event_type,
    validate_filter,
)


@pytest.mark.parametrize(
    "value",
    ["rfp", "rfp.created", "rfp.status_changed", "rfp.status.changed", "a-b.c_d.9", "0", "x" * MAX_LENGTH],
)
def test_valid_event_types_are_accepted(value: str) -> None:
    assert validate_event_type(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (MAX_LENGTH + 1),
        "RFP.created",
        "rfp.Created",
        ".rfp",
        "rfp.",
        "rfp..created",
        "rfp created",
        "rfp/created",
        "rfp.*",
        "*",
        "rfp:created",
        "rfp.créé",
    ],
)
def test_invalid_event_types_are_described(value: str) -> None:
    problem = validate_event_type(value)
    assert isinstance(problem, str) and problem


@pytest.mark.parametrize("value", ["*", "rfp.*", "rfp.status.*", "rfp.created", "rfp"])
def test_valid_filters_are_accepted(value: str) -> None:
    assert validate_filter(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "rfp*",
        "rfp.*.created",
        "*.created",
        "rfp.**",
        "**",
        ".*",
        "RFP.*",
        "rfp..*",
        "x" * MAX_LENGTH + ".*",
    ],
)
def test_invalid_filters_are_described(value: str) -> None:
    problem = validate_filter(value)
    assert isinstance(problem, str) and problem


@pytest.mark.parametrize(
    ("filter", "event_type", "expected"),
    [
        ("*", "rfp.created", True),
        ("*", "rfp", True),
        ("rfp.*", "rfp.created", True),
        ("rfp.*", "rfp.status.changed", True),
        ("rfp.*", "rfp", False),
        ("rfp.*", "rfpx.created", False),
        ("rfp.*", "other.rfp.created", False),
        ("rfp.status.*", "rfp.status.changed", True),
        ("rfp.status.*", "rfp.created", False),
        ("rfp.created", "rfp.created", True),
        ("rfp.created", "rfp.created.late", False),
        ("rfp", "rfp.created", False),
    ],
)
def test_matches(filter: str, event_type: str, expected: bool) -> None:
    assert matches(filter, event_type) is expected


def test_matching_filters_lists_wildcard_prefixes_and_the_type() -> None:
    assert matching_filters("rfp.status.changed") == ["*", "rfp.*", "rfp.status.*", "rfp.status.changed"]
    assert matching_filters("rfp") == ["*", "rfp"]


def test_matching_filters_agrees_with_matches() -> None:
    filters = ["*", "rfp.*", "rfp.status.*", "rfp.created", "rfp", "rfpx.*", "rfp.status.changed.*"]
    for event_type in ["rfp", "rfp.created", "rfp.status.changed", "rfpx.created", "other"]:
        listed = set(matching_filters(event_type))
        for f in filters:
            assert (f in listed) is matches(f, event_type), (f, event_type)


def test_every_generated_filter_is_valid_even_for_the_longest_type() -> None:
    longest = ".".join(["ab"] * 42) + ".c"
    assert len(longest) <= MAX_LENGTH
    assert all(validate_filter(f) is None for f in matching_filters(longest))


def test_matching_filters_rejects_invalid_types() -> None:
    with pytest.raises(ValueError):
        matching_filters("RFP.created")


def test_a_catch_all_subscription_is_not_sent_the_services_own_events() -> None:
    assert matching_filters("webhookd.webhook.paused") == [
        "webhookd.*",
        "webhookd.webhook.*",
        "webhookd.webhook.paused",
    ]
    assert not matches("*", "webhookd.webhook.paused")
    assert matches("webhookd.*", "webhookd.webhook.paused")
    assert matches("webhookd.webhook.paused", "webhookd.webhook.paused")
    assert matches("*", "webhookdx.created")
