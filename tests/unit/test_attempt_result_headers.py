"""domain/deliveries.py's AttemptResult.with_headers: the result with the headers sent and received."""

from __future__ import annotations

import dataclasses

from webhookd.domain.deliveries import AttemptResult
from webhookd.domain.statuses import Outcome


def test_every_other_field_is_carried_over_as_dataclasses_replace_would() -> None:
    # Each field unlike its default, so a field with_headers left out would show.
    result = AttemptResult(
        Outcome.FAILED,
        503,
        40,
        "HTTP 503",
        "busy",
        retry_after_seconds=30.0,
        gone=True,
        request_headers=(("old", "request"),),
        response_headers=(("old", "response"),),
    )
    defaults = {field.name: field.default for field in dataclasses.fields(AttemptResult)}
    assert all(getattr(result, name) != default for name, default in defaults.items())
    sent, received = (("webhook-id", "evt_1"),), (("Server", "x"), ("Server", "y"))

    assert result.with_headers(sent, received) == dataclasses.replace(
        result, request_headers=sent, response_headers=received
    )
