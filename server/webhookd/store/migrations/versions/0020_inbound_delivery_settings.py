"""Inbound webhooks lose the delivery settings stored on them before validation refused them.

Validation refuses `headers`, `retry_policy`, `channels`, `rate_limit_per_second` and `ordering` on an
inbound webhook unless each is at its default (domain/validation.py `_delivery_settings_of_inbound`),
and an update validates the whole webhook it makes: one stored with any of them set earlier refused
every update, even of its name, until that update reset them as well. Nothing is delivered to an
inbound webhook, so they never did anything; this revision resets them to their create defaults
(domain/webhooks.py `WebhookSpec`, `RetryPolicy`), deleted webhooks included (an undelete brings them
back as they are).

`version`, the ETag, goes up by one: what a read shows changed, and a client revalidating with the
old ETag must not be told 304 and keep a copy that it could only send back to be refused. A
read-modify-write in flight with the old version fails once (ABORTED, or 412 on If-Match) and is
read again, as for any other change. `updated_at` / `updated_by` stay: nobody made the change.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The defaults as this revision found them, spelled out: a later change of a default is its own
    # revision's to carry.
    op.execute(
        "UPDATE webhooks SET headers = '{}'::jsonb, retry_max_attempts = 8, retry_backoff = 'exponential',"
        " retry_timeout_ms = 15000, channels = '{}', rate_limit_per_second = 0, ordering = 'unordered',"
        " version = version + 1"
        " WHERE direction = 'inbound' AND (headers <> '{}'::jsonb OR retry_max_attempts <> 8"
        " OR retry_backoff <> 'exponential' OR retry_timeout_ms <> 15000 OR channels <> '{}'"
        " OR rate_limit_per_second <> 0 OR ordering <> 'unordered')"
    )


def downgrade() -> None:
    # Data only, and what was reset did nothing: there is nothing to put back.
    pass
