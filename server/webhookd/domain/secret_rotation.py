"""Which secrets sign a delivery while a rotation overlaps, and how Vault's record of them changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from webhookd.domain.credentials import credential_part
from webhookd.domain.fingerprints import fingerprint
from webhookd.domain.signing import public_key
from webhookd.domain.webhooks import Webhook

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)


def active_secrets(record: dict[str, str], now: datetime, named: str) -> list[str]:
    """The secrets that sign (and verify) now, the current one first, then the previous one while its
    overlap lasts; but only the row's secret (`named` is the fingerprint the webhook's row states)
    while the record is ahead of the row (`_ahead_of_row`)."""
    if _ahead_of_row(record, named):
        return [record["previous"]]
    secrets = [record["current"]]
    previous, expires = record.get("previous"), record.get("previous_expires_at")
    if previous and expires and datetime.fromisoformat(expires) > now:
        secrets.append(previous)
    return secrets


def overlap_end(record: dict[str, str], now: datetime, named: str) -> datetime:
    """When the previous secret stops signing beside the current one (active_secrets' rule); `now` when
    none does."""
    if len(active_secrets(record, now, named)) > 1:
        return datetime.fromisoformat(record["previous_expires_at"])
    return now


def rotated(
    record: dict[str, str], new_secret: str, *, overlap: timedelta, now: datetime, named: str
) -> dict[str, str]:
    """The record after a rotation: the new secret current, the one in use (the row's, `named`) kept
    until now + overlap, and the delivery credential, if any, as it was."""
    kept = credential_part(record)
    if overlap <= timedelta(0):
        return {"current": new_secret, **kept}
    return {
        "current": new_secret,
        "previous": record["previous"] if _ahead_of_row(record, named) else record["current"],
        "previous_expires_at": (now + overlap).isoformat(),
        **kept,
    }


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
class PublicKeys:
    """The public keys that verify an ed25519 webhook's deliveries now."""

    public_key: str
    previous_public_key: str | None  # while a rotation overlaps
    previous_expires_at: datetime | None


def public_keys(record: dict[str, str], now: datetime, named: str) -> PublicKeys:
    """The public halves of the record's active private keys (active_secrets' rule)."""
    active = active_secrets(record, now, named)
    previous = public_key(active[1]) if len(active) > 1 else None
    expires = datetime.fromisoformat(record["previous_expires_at"]) if previous is not None else None
    return PublicKeys(public_key(active[0]), previous, expires)
