"""A webhook's delivery credential: one header its deliveries carry, for a receiver that authenticates
its callers as well as checking the signature (`Authorization: Bearer …`, `X-Api-Key: …`).

The value lives in the webhook's secret record in Vault, beside the signing secrets, under its own
keys, with a random id that the webhook's row also holds: the worker's cache of records keys on that
id, so a new credential is read at the first delivery after it is set. Nothing derived from the value
is stored in the database: a credential may be a guessable password.
"""

from __future__ import annotations

import secrets as random_source
from dataclasses import dataclass
from urllib.parse import urlsplit

HEADER_KEY = "credential_header"
VALUE_KEY = "credential_value"
ID_KEY = "credential_id"
_KEYS = (HEADER_KEY, VALUE_KEY, ID_KEY)
# The credential a change replaced or removed, while the row may still name it (with_credential).
REPLACED_PREFIX = "replaced_"
_REPLACED_KEYS = tuple(REPLACED_PREFIX + key for key in _KEYS)
ID_PREFIX = "crd_"
_DEFAULT_PORTS = {"https": 443, "http": 80}
# What a recorded attempt shows for the credential's value.
REDACTED = "[redacted]"
# Parts of a value this long are hidden on their own too: a receiver refusing `Bearer <token>` may
# quote the token alone.
_SHORTEST_HIDDEN_PART = 8
# An answer cut short inside the value keeps at most this much of its start in view.
_SHORTEST_HIDDEN_CUT = 4


@dataclass(frozen=True)
class Credential:
    header: str
    value: str

    def __repr__(self) -> str:  # never the value, wherever a Credential ends up printed
        return f"Credential(header={self.header!r}, value={REDACTED!r})"


def credential_of(record: dict[str, str], named_id: str) -> Credential | None:
    """The credential a secret record holds when it is the one the webhook's row names (`named_id`),
    else None. The row is the authority: a record that outlived a failed change, or got ahead of a
    change still committing, holds a credential the row does not show, and so one whose url the
    origin rule (same_origin) does not hold to where it was set. The one a change replaced is sent
    while the row still names it."""
    for prefix in ("", REPLACED_PREFIX):
        header, value = record.get(prefix + HEADER_KEY), record.get(prefix + VALUE_KEY)
        if header and value and named_id and record.get(prefix + ID_KEY) == named_id:
            return Credential(header, value)
    return None


def hidden(text: str, credential: Credential) -> str:
    """`text` (what a receiver answered) with the credential's value, and each long part of it, shown
    as REDACTED, also where the text was cut inside one: a receiver may echo what it was sent, and
    whoever may read attempts need not be able to read the credential."""
    value = credential.value
    parts = {value, *(part for part in value.split() if len(part) >= _SHORTEST_HIDDEN_PART)}
    for part in sorted(parts, key=len, reverse=True):
        text = _without_cut_start(text.replace(part, REDACTED), part)
    return text


def _without_cut_start(text: str, secret: str) -> str:
    """`text` with a tail that is the start of `secret` (at least _SHORTEST_HIDDEN_CUT long) hidden."""
    at = text.find(secret[0], max(0, len(text) - len(secret) + 1))
    while at != -1 and len(text) - at >= _SHORTEST_HIDDEN_CUT:
        if secret.startswith(text[at:]):
            return text[:at] + REDACTED
        at = text.find(secret[0], at + 1)
    return text


def with_credential(record: dict[str, str], credential: Credential | None, *, named_id: str) -> dict[str, str]:
    """`record` holding `credential` under a new id instead of any it held (None: without one). The one
    the row names (`named_id`) is kept beside it as replaced, and sent while the row names it: until the
    change's row update commits, or for good when it never does (Vault carried this write out after the
    call answered UNAVAILABLE, and its caller takes the credential it had set to be the one sent)."""
    kept = {key: value for key, value in record.items() if key not in _KEYS + _REPLACED_KEYS}
    in_use = credential_of(record, named_id)
    if in_use is not None:
        kept |= {f"{REPLACED_PREFIX}{HEADER_KEY}": in_use.header, f"{REPLACED_PREFIX}{VALUE_KEY}": in_use.value}
        kept[REPLACED_PREFIX + ID_KEY] = named_id
    if credential is None:
        return kept
    new_id = ID_PREFIX + random_source.token_hex(16)
    return {**kept, HEADER_KEY: credential.header, VALUE_KEY: credential.value, ID_KEY: new_id}


def without_replaced(record: dict[str, str], named_id: str) -> dict[str, str]:
    """`record` without the credential a change replaced or removed once the row no longer names it
    (`record` itself when it holds none such): it is never sent again (credential_of)."""
    if REPLACED_PREFIX + ID_KEY not in record or record[REPLACED_PREFIX + ID_KEY] == named_id:
        return record
    return {key: value for key, value in record.items() if key not in _REPLACED_KEYS}


def credential_part(record: dict[str, str]) -> dict[str, str]:
    """The credential's keys of `record`, the replaced one's too (none when it holds none), for a
    rewrite of its secrets to keep."""
    return {key: record[key] for key in _KEYS + _REPLACED_KEYS if key in record}


def credential_id_of(record: dict[str, str]) -> str:
    return record.get(ID_KEY, "")


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs reach the same scheme, host and port: a credential set for one may go to the other."""
    return _origin(url) == _origin(other)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # not a port: no origin to match
        port = -1
    return scheme, (parts.hostname or "").lower(), port
