"""store/deliveries.py's attempt_batch_json: the recorder's batch as the JSON its statement reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from webhookd.domain.deliveries import AttemptRecord, AttemptResult, ClaimedDelivery
from webhookd.domain.statuses import Outcome
from webhookd.domain.webhooks import RetryPolicy, SignatureScheme
from webhookd.store.deliveries import attempt_batch_json

OCCURRED_AT = datetime(2026, 12, 3, 7, 0, 0, 123456, tzinfo=UTC)


def claimed(n: int, *, event_type: str = "order.created") -> ClaimedDelivery:
    return ClaimedDelivery(
        delivery_id=f"dlv_{n}",
        lease_token="token",
        attempt=2,
        tenant_id="tnt_a",
        app_id=None,
        event_id=f"evt_{n}",
        event_type=event_type,
        body=b"{}",
        webhook_id="wh_1",
        url="https://example.com/hook",
        headers={},
        signature_scheme=SignatureScheme.STANDARD_WEBHOOKS,
        retry_policy=RetryPolicy(),
        vault_path="tnt_a/wh_1",
        secret_fingerprint="fp",
    )


def recorded(result: AttemptResult, *, retry_at: datetime | None) -> AttemptRecord:
    return AttemptRecord.of(result, next_attempt_at=retry_at, occurred_at=OCCURRED_AT)


def test_each_attempt_is_an_object_with_its_columns_and_times_in_rfc3339() -> None:
    succeeded = AttemptResult(
        Outcome.SUCCEEDED,
        200,
        12,
        "",
        "réponse « ok » 😀",
        request_headers=(("webhook-id", "evt_1"), ("X-Team", "ünï"), ("X-Odd", "\ud800")),
        response_headers=(("Server", "x"), ("Server", "y")),
    )
    failed = AttemptResult(Outcome.FAILED, 503, 40, "HTTP 503", "busy\x00")
    retry_at = OCCURRED_AT + timedelta(seconds=30)

    rows = json.loads(
        attempt_batch_json(
            [(claimed(1), recorded(succeeded, retry_at=None)), (claimed(2), recorded(failed, retry_at=retry_at))]
        )
    )

    first, second = rows
    assert first["id"].startswith("att_") and first["id"] != second["id"]
    assert (first["delivery_id"], first["attempt"], first["status"], first["outcome"]) == (
        "dlv_1",
        2,
        "succeeded",
        "succeeded",
    )
    assert first["response_excerpt"] == "réponse « ok » 😀"
    assert first["request_headers"] == [["webhook-id", "evt_1"], ["X-Team", "ünï"], ["X-Odd", "\ufffd"]]
    assert first["response_headers"] == [["Server", "x"], ["Server", "y"]]  # order and repeats kept
    assert datetime.fromisoformat(first["occurred_at"]) == OCCURRED_AT
    assert datetime.fromisoformat(first["completed_at"]) == OCCURRED_AT
    assert first["next_attempt_at"] is None and first["app_id"] is None
    assert (second["status"], second["http_status"], second["error"]) == ("pending", 503, "HTTP 503")
    assert second["response_excerpt"] == "busy\ufffd"  # storable_text: PostgreSQL takes no NUL
    assert datetime.fromisoformat(second["next_attempt_at"]) == retry_at
    assert second["completed_at"] is None


def test_a_nul_in_plain_ascii_headers_is_still_replaced() -> None:
    # Headers that are all ASCII but one NUL: the quick look at them all must still catch it.
    result = AttemptResult(
        Outcome.SUCCEEDED,
        200,
        5,
        "",
        "",
        request_headers=(("webhook-id", "evt_1"), ("X-Nul", "a\x00b")),
        response_headers=(("Server\x00", "x"),),
    )

    [row] = json.loads(attempt_batch_json([(claimed(1), recorded(result, retry_at=None))]))

    assert row["request_headers"] == [["webhook-id", "evt_1"], ["X-Nul", "a\ufffdb"]]
    assert row["response_headers"] == [["Server\ufffd", "x"]]


def test_text_orjson_will_not_write_still_gives_the_batch_as_json() -> None:
    # A lone surrogate where storable_text does not look (here the event type, which comes from the
    # database): json.dumps escapes it, PostgreSQL refuses the batch and the recorder writes its
    # attempts one by one; nothing raises here.
    result = AttemptResult(Outcome.SUCCEEDED, 200, 5, "", "")

    rows = json.loads(attempt_batch_json([(claimed(1, event_type="order.\ud800"), recorded(result, retry_at=None))]))

    assert rows[0]["event_type"] == "order.\ud800"
    assert datetime.fromisoformat(rows[0]["occurred_at"]) == OCCURRED_AT
