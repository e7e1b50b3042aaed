"""Which secrets sign a delivery while a rotation overlaps, and how Vault's record of them changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
    """The record after a rotation: the new secret current, the old one kept until now + overlap."""
    if overlap <= timedelta(0):
        return {"current": new_secret}
    return {
        "current": new_secret,
        "previous": record["current"],
        "previous_expires_at": (now + overlap).isoformat(),
    }


@dataclass(frozen=True)
class Rotation:
    """What RotateWebhookSecret hands back: the new secret is returned this once."""

    webhook: Webhook
    signing_secret: str
    previous_secret_expires_at: datetime
