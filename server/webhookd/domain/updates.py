"""Applying an update mask's changes to a webhook spec (AIP-134)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from webhookd.domain.webhooks import RetryPolicy, WebhookSpec

_RETRY_PREFIX = "retry_policy."


def apply_changes(spec: WebhookSpec, changes: Mapping[str, object]) -> WebhookSpec:
    """The spec with each masked field replaced; `retry_policy.x` paths change one sub-field.

    `changes` maps validated mask paths to their new, already typed values.
    """
    top_level = {path: value for path, value in changes.items() if not path.startswith(_RETRY_PREFIX)}
    retry_fields = {
        path.removeprefix(_RETRY_PREFIX): value for path, value in changes.items() if path.startswith(_RETRY_PREFIX)
    }
    updated = dataclasses.replace(spec, **top_level)  # type: ignore[arg-type]
    if retry_fields:
        policy: RetryPolicy = dataclasses.replace(updated.retry_policy, **retry_fields)  # type: ignore[arg-type]
        updated = dataclasses.replace(updated, retry_policy=policy)
    return updated
