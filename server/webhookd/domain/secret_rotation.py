"""Which secrets sign a delivery while a rotation overlaps, and how Vault's record of them changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from webhookd.domain.credentials import credential_part, without_replaced
from webhookd.domain.errors import FailedPrecondition
from webhookd.domain.fingerprints import fingerprint
from webhookd.domain.signing import public_key
from webhookd.domain.webhooks import Webhook

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)
# A secret a rotation replaced signs until its own overlap ends, however many rotations follow it:
# each rotation promised its caller that long. At most this many beside the current one, so a burst of
# rotations cannot grow every delivery's signatures unbounded: a rotation that would keep more is
# refused rather than end a promised overlap early (`signing_secrets_full`).
MAX_PREVIOUS = 4
TOO_MANY_SIGNING_SECRETS = "TOO_MANY_SIGNING_SECRETS"
# The record's previous secrets before "previous", newest first: JSON [[secret, expires_at], ...].
OLDER = "older"
_PREVIOUS_KEYS = ("previous", "previous_expires_at", OLDER)


def active_secrets(record: dict[str, str], now: datetime, named: str) -> list[str]:
    """The secrets that sign (and verify) now, the current one first, then each previous one while its
    overlap lasts, newest first; but the row's secret in place of the current one (`named` is the
    fingerprint the webhook's row states) while the record is ahead of the row (`_ahead_of_row`)."""
    return [secret for secret, _ in _signing(record, now, named)]


def overlap_end(record: dict[str, str], now: datetime, named: str) -> datetime:
    """When the secret the current one replaced stops signing beside it (active_secrets' rule); `now`
    when none does."""
    signing = _signing(record, now, named)
    if len(signing) > 1 and not _ahead_of_row(record, named):
        return signing[1][1] or now
    return now


def rotated(
    record: dict[str, str], new_secret: str, *, overlap: timedelta, now: datetime, named: str
) -> dict[str, str]:
    """The record after a rotation: the new secret current, the one in use (the row's, `named`) kept
    until now + overlap, the ones before it until their own overlaps end, a rotation the row has not
    committed (`_ahead_of_row`) until now + overlap too, and the delivery credential, if any, as it
    was; FAILED_PRECONDITION when that would keep more than MAX_PREVIOUS previous secrets. Without
    overlap only the new secret signs once the row names it: that is how a leaked secret is retired,
    never refused. The one in use is kept, ended now, for as long as the row does not
    (`_signing`): a row update still committing, or one that never will because Vault carried this write
    out after the call answered UNAVAILABLE, whose caller still holds the secret in use."""
    kept = credential_part(record)
    in_use, *before = _signing(record, now, named)
    if overlap <= timedelta(0):
        ended = [(in_use[0], now)] if in_use[0] != new_secret else []
        return {"current": new_secret, **_previous_fields(ended), **kept}
    replaced = [(in_use[0], now + overlap), *((secret, until) for secret, until in before if until is not None)]
    if _ahead_of_row(record, named):
        # A rotation whose row has not committed may still commit, or may have already and this one read
        # the row before it did: its secret may have reached its caller, so it is kept, not dropped.
        replaced.insert(1, (record["current"], now + overlap))
    previous: list[tuple[str, datetime]] = []
    for secret, until in replaced:
        if secret != new_secret and secret not in (held for held, _ in previous):
            previous.append((secret, until))
    if len(previous) > MAX_PREVIOUS:
        # A slot frees when the first secret an earlier rotation replaced stops signing.
        raise signing_secrets_full(min(until for _, until in before if until is not None))
    return {"current": new_secret, **_previous_fields(previous), **kept}


def signing_secrets_full(first_end: datetime) -> FailedPrecondition:
    """What a rotation with an overlap is told while MAX_PREVIOUS replaced secrets already sign beside
    the current one: keeping one more would break the overlap promised to an earlier rotation's caller,
    and dropping one would too. A rotation without overlap ends them all, so it is never refused."""
    return FailedPrecondition(
        f"overlap: {MAX_PREVIOUS} secrets replaced by earlier rotations still sign beside the current one,"
        f" each until its own overlap ends (the first at {first_end.isoformat()}): rotate again after then,"
        " or with overlap 0s to end them all now",
        reason=TOO_MANY_SIGNING_SECRETS,
    )


def without_ended(record: dict[str, str], now: datetime, named: str) -> dict[str, str]:
    """`record` without the previous secrets whose overlap has ended by `now` (`record` itself when there
    are none): they sign nothing any more (`_signing`). The one in use while the record is ahead of its
    row (`named`) stays, ended or not, as does everything else the record holds."""
    previous = _previous(record)
    in_use = previous[:1] if _ahead_of_row(record, named) else []
    kept = in_use + [(secret, until) for secret, until in previous[len(in_use) :] if until > now]
    if len(kept) == len(previous):
        return record
    rest = {key: value for key, value in record.items() if key not in _PREVIOUS_KEYS}
    return {**rest, **_previous_fields(kept)}


def without_retired(record: dict[str, str], now: datetime, webhook: Webhook) -> dict[str, str]:
    """`record` without what `webhook`'s committed row no longer uses (`record` itself when nothing):
    previous secrets whose overlap has ended (`without_ended`), a credential replaced or removed
    (credentials.without_replaced)."""
    return without_replaced(without_ended(record, now, webhook.secret_fingerprint), webhook.credential_id)


def next_overlap_end(record: dict[str, str], named: str) -> datetime | None:
    """When the first of the record's previous secrets that `without_ended` would drop once ended stops
    signing (ended already or not), or None when it holds none: when the workers' sweep
    (services/ended_overlaps.py) should next look at the record. The one in use while the record is ahead
    of its row (`named`) is not such a secret."""
    previous = _previous(record)
    droppable = previous[1:] if _ahead_of_row(record, named) else previous
    return min((until for _, until in droppable), default=None)


def _signing(record: dict[str, str], now: datetime, named: str) -> list[tuple[str, datetime | None]]:
    """active_secrets' secrets, each with when it stops signing (None: the one in use, it does not)."""
    previous = _previous(record)
    if previous and _ahead_of_row(record, named):
        in_use, *before = previous
        signing = [(in_use[0], None), *before]
    else:
        signing = [(record["current"], None), *previous]
    return [(secret, until) for secret, until in signing if until is None or until > now]


def _previous(record: dict[str, str]) -> list[tuple[str, datetime]]:
    """The record's previous secrets with when each overlap ends, the one replaced last first."""
    if not (record.get("previous") and record.get("previous_expires_at")):
        return []
    older = [(str(secret), datetime.fromisoformat(str(until))) for secret, until in json.loads(record.get(OLDER, "[]"))]
    return [(record["previous"], datetime.fromisoformat(record["previous_expires_at"])), *older]


def _previous_fields(previous: list[tuple[str, datetime]]) -> dict[str, str]:
    if not previous:
        return {}
    (secret, until), *older = previous
    fields = {"previous": secret, "previous_expires_at": until.isoformat()}
    if older:
        fields[OLDER] = json.dumps([[held, held_until.isoformat()] for held, held_until in older])
    return fields


def _ahead_of_row(record: dict[str, str], named: str) -> bool:
    """Whether the record holds a rotation its webhook's row has not committed: the row names the
    previous secret, not the current one. It is committing, or never will (the row update failed and
    putting the record back failed too, or Vault carried the write out after the call had answered
    UNAVAILABLE); either way its new secret may have reached nobody, so it must not sign yet. The row is
    the authority, as for the delivery credential (credentials.credential_of). A row that names neither
    secret (a record put back under a row update that committed late) leaves the record's secrets."""
    previous = record.get("previous")
    return previous is not None and fingerprint(record["current"]) != named and fingerprint(previous) == named


@dataclass(frozen=True)
class Rotation:
    """What RotateWebhookSecret hands back: the new secret is returned this once (for ed25519, the new
    public key instead: the private key is never handed out)."""

    webhook: Webhook
    signing_secret: str
    previous_secret_expires_at: datetime
    public_key: str = ""


@dataclass(frozen=True)
class PreviousKey:
    """A public key a rotation replaced, which verifies deliveries until `expires_at`."""

    public_key: str
    expires_at: datetime


@dataclass(frozen=True)
class PublicKeys:
    """The public keys that verify an ed25519 webhook's deliveries now."""

    public_key: str
    # Every replaced key that still signs (up to MAX_PREVIOUS, while rotations overlap), newest first.
    previous: tuple[PreviousKey, ...] = ()


def public_keys(record: dict[str, str], now: datetime, named: str) -> PublicKeys:
    """The public halves of the record's active private keys (active_secrets' rule): the current one,
    then each previous one while it signs, newest first."""
    (current, _), *previous = _signing(record, now, named)
    return PublicKeys(
        public_key(current),
        tuple(PreviousKey(public_key(secret), until) for secret, until in previous if until is not None),
    )
