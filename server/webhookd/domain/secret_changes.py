"""One change at a time of a webhook's secret record in Vault, from any process.

A rotation and a credential change each read the record, write it changed, then commit the row. Two at
once each wrote a record the other's row commit could contradict: a committed secret pushed out of the
record by the cap on previous secrets, a record put back over another's write, a row naming a
credential Vault no longer held. So a change holds a lease on the webhook's row (migration 0018) from
before it reads Vault until the row UPDATE that commits it, and a second change meanwhile is refused at
once (ABORTED, HTTP 409, like a lost race before): answering now lets the caller retry on its own terms
instead of holding a call, and a waiting queue, behind a Vault that may be frozen. No database
connection is held across the Vault calls. The lease lapses by itself, so a process that died holding
it wedges the webhook for a lease's length at most.
"""

from __future__ import annotations

from datetime import timedelta

from webhookd.domain.errors import Aborted

SECRET_CHANGE_UNDER_WAY = (
    "webhook {webhook_id}'s signing secret or delivery credential is being changed by another call:"
    " retry in a few seconds"
)
# Not VERSION_MISMATCH, which tells a client to re-read before retrying: here the same call goes ahead
# once the other change ends, a few seconds at most.
SECRET_CHANGE_IN_PROGRESS = "SECRET_CHANGE_IN_PROGRESS"


def change_under_way(webhook_id: str) -> Aborted:
    """What a change is told while another holds the webhook's lease (ABORTED, HTTP 409)."""
    return Aborted(SECRET_CHANGE_UNDER_WAY.format(webhook_id=webhook_id), reason=SECRET_CHANGE_IN_PROGRESS)


# Beyond the calls a change makes, for the loop and the thread hand-offs between them.
LEASE_MARGIN = timedelta(seconds=5)
# A Vault call is given up this long after the client's own timeout (secrets/vault.py).
_VAULT_CALL_GRACE = timedelta(seconds=1)


def lease_lasting(*, vault_timeout: timedelta, database_timeout: timedelta) -> timedelta:
    """How long a change's lease holds: its Vault read and write, each bounded by the Vault client's
    timeout, and its row commit, plus a margin. A holder slower than that keeps its record safe all the
    same (its commit is refused once another took the lease, and Vault's check-and-set keeps its
    put-back from undoing the other's write); the lease only bounds how long others are refused."""
    return 2 * (vault_timeout + _VAULT_CALL_GRACE) + database_timeout + LEASE_MARGIN
