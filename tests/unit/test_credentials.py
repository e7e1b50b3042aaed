"""The delivery credential's rules: which record's credential may be sent, and how a receiver's answer
that quotes it is recorded."""

from __future__ import annotations

import pytest

from webhookd.domain.credentials import REDACTED, Credential, credential_of, hidden, with_credential, without_replaced

TOKEN = Credential("Authorization", "Bearer tok-81c4e2a9f07d")


def test_a_records_credential_is_sent_only_when_the_row_names_that_very_one() -> None:
    record = with_credential({"current": "s"}, TOKEN, named_id="")
    named = record["credential_id"]

    assert credential_of(record, named) == TOKEN
    assert credential_of(record, "") is None  # left behind by a failed change: the row shows none
    assert credential_of(record, "crd_another") is None  # a change not yet (or never) committed
    assert credential_of({"current": "s"}, named) is None


@pytest.mark.parametrize(
    ("answer", "recorded"),
    [
        ("no: Bearer tok-81c4e2a9f07d", f"no: {REDACTED}"),
        ("unknown token tok-81c4e2a9f07d, twice: tok-81c4e2a9f07d", f"unknown token {REDACTED}, twice: {REDACTED}"),
        ("cut short: Bearer tok-81", f"cut short: {REDACTED}"),  # an excerpt ends inside the value
        ("cut short: tok-81c4", f"cut short: {REDACTED}"),
        ("Bearer tokens only", "Bearer tokens only"),  # a short part alone ("Bearer") is no secret
        ("ends with Bea", "ends with Bea"),  # under four characters of its start: nothing to hide
        ("", ""),
    ],
)
def test_an_answer_quoting_the_credential_is_recorded_with_it_hidden(answer: str, recorded: str) -> None:
    assert hidden(answer, TOKEN) == recorded


def test_a_replaced_credential_leaves_the_record_only_once_the_row_no_longer_names_it() -> None:
    first = with_credential({"current": "s"}, TOKEN, named_id="")
    first_id = first["credential_id"]
    second = with_credential(first, Credential("Authorization", "Bearer other"), named_id=first_id)

    assert without_replaced(second, first_id) is second  # its row update may not have committed
    assert without_replaced(second, second["credential_id"]) == {
        key: value for key, value in second.items() if not key.startswith("replaced_")
    }
    removed = with_credential(first, None, named_id=first_id)
    assert without_replaced(removed, "") == {"current": "s"}
