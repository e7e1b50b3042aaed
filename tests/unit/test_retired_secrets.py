"""secret_rotation.without_ended: which previous secrets may leave Vault's record, and which must stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webhookd.domain.fingerprints import fingerprint
from webhookd.domain.secret_rotation import active_secrets, rotated, without_ended

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_previous_secrets_whose_overlap_ended_leave_the_record_and_the_others_stay() -> None:
    record = rotated({"current": "a"}, "b", overlap=timedelta(hours=1), now=NOW, named=fingerprint("a"))
    record = rotated(record, "c", overlap=timedelta(hours=3), now=NOW, named=fingerprint("b"))
    later = NOW + timedelta(hours=2)

    kept = without_ended(record, later, fingerprint("c"))

    assert kept == {"current": "c", "previous": "b", "previous_expires_at": (NOW + timedelta(hours=3)).isoformat()}
    assert active_secrets(kept, later, fingerprint("c")) == active_secrets(record, later, fingerprint("c"))


def test_the_secret_in_use_stays_while_the_row_has_not_committed_the_rotation_that_ended_it() -> None:
    """A rotation without overlap ends the secret in use at once, but the row still names it until the
    rotation commits (or for good, when it never does): it is what signs until then."""
    record = rotated({"current": "a"}, "b", overlap=timedelta(0), now=NOW, named=fingerprint("a"))

    assert without_ended(record, NOW, fingerprint("a")) is record
    assert without_ended(record, NOW, fingerprint("b")) == {"current": "b"}


def test_a_record_with_nothing_ended_is_left_as_it_is() -> None:
    record = rotated(
        {"current": "a", "credential_id": "crd_1"}, "b", overlap=timedelta(hours=1), now=NOW, named=fingerprint("a")
    )

    assert without_ended(record, NOW, fingerprint("b")) is record
    assert without_ended({"current": "a"}, NOW, fingerprint("a")) == {"current": "a"}
