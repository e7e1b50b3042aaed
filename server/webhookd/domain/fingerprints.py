"""A short, non-reversible identifier for a signing secret, safe to store and show next to the webhook."""

from __future__ import annotations

import hashlib

PREFIX = "sha256:"
# Domain separation: the digest of a secret here never equals its plain SHA-256 (or any other
# system's hash of it), so a fingerprint cannot be looked up in tables of known hashes.
_CONTEXT = b"webhookd signing-secret fingerprint v1\x00"


def fingerprint(secret: str) -> str:
    """`sha256:` + the first 32 hex digits (128 bits) of SHA-256 over a fixed context and the secret.

    Why: SHA-256 is one-way, and the secrets we generate carry 256 random bits, so the fingerprint
    reveals nothing usable; 128 bits are plenty to tell secrets apart (collisions need ~2^64 of them)
    while staying short enough to read and compare by eye.
    """
    if not secret:
        raise ValueError("cannot fingerprint an empty secret")
    digest = hashlib.sha256(_CONTEXT + secret.encode("utf-8")).hexdigest()
    return PREFIX + digest[:32]
