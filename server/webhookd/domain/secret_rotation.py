"""Which secrets sign a delivery while a rotation overlaps, and how Vault's record of them changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from webhookd.domain.credentials import credential_part
from webhookd.domain.signing import public_key
from webhookd.domain.webhooks import Webhook

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)


def active_secrets(record: dict[str, str], now: datetime) -> list[str]:
    """The current secret first, then the previous one while its overlap lasts."""
    secrets = [record["current"]]
    previous, expires = record.get("previous"), record.get("previous_expires_at")
    if previous and expires and datetime.fromisoformat(expires) > now:
        secrets.append(previous)
    return secrets


def rotated(record: dict[str, str], new_secret: str, *, overlap: timedelta, now: datetime) -> dict[str, str]:
    """The record after a rotation: the new secret current, the old one kept until now + overlap, and
    the delivery credential, if any, as it was."""
    kept = credential_part(record)
    if overlap <= timedelta(0):
        return {"current": new_secret, **kept}
    return {
        "current": new_secret,
        "previous": record["current"],
        "previous_expires_at": (now + overlap).isoformat(),
        **kept,
    }


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


def public_keys(record: dict[str, str], now: datetime) -> PublicKeys:
    """The public halves of the record's active private keys (active_secrets' rule for the overlap)."""
    active = active_secrets(record, now)
    previous = public_key(active[1]) if len(active) > 1 else None
    expires = datetime.fromisoformat(record["previous_expires_at"]) if previous is not None else None
    return PublicKeys(public_key(active[0]), previous, expires)
