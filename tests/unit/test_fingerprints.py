import hashlib
import re

import pytest

from webhookd.domain.fingerprints import fingerprint


def test_fingerprint_is_sha256_prefix_and_32_hex_digits() -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{32}", fingerprint("whsec_abc"))


def test_same_secret_gives_same_fingerprint_and_different_secrets_differ() -> None:
    assert fingerprint("whsec_one") == fingerprint("whsec_one")
    assert fingerprint("whsec_one") != fingerprint("whsec_two")


def test_fingerprint_is_not_the_plain_sha256_of_the_secret() -> None:
    secret = "whsec_abc"
    plain = hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in fingerprint(secret)
    assert plain[:32] not in fingerprint(secret)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        fingerprint("")
