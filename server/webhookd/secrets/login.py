"""How a process gets its Vault token: given to it, read from a file that Vault Agent keeps fresh,
or by logging in with AppRole or Kubernetes auth.

A given token is the only one there is. The others can be had again, so when a token nears the end
of its maximum TTL, or Vault refuses it, the store gets a new one (secrets/vault.py) instead of
failing until someone restarts the process. Logging in runs on the store's Vault threads through
hvac, as every other call does. Credentials never reach logs, errors or reprs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

# Where Kubernetes mounts a pod's service account token.
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class LoginFailed(Exception):
    """A token could not be had; the message says why without any credential in it. `passing` when
    Vault answered with a fault that asking again a moment later may not meet (HTTP 5xx, 429)."""

    def __init__(self, message: str, *, passing: bool = False) -> None:
        super().__init__(message)
        self.passing = passing


class VaultLogin(ABC):
    # What the method is called in messages to operators.
    name: ClassVar[str]
    # Whether asking again can give a different token (not so for a token given once).
    renews_by_login: ClassVar[bool] = True
    # Whether the token is the process's own, to revoke when it exits (not one given to it, or Agent's).
    owns_token: ClassVar[bool] = False

    @abstractmethod
    def log_in(self, client: Any) -> str:
        """A token, obtained through `client` (an hvac.Client sending no token of its own)."""


@dataclass(frozen=True)
class GivenToken(VaultLogin):
    """VAULT_TOKEN, or the embedded OpenBao's root token."""

    name: ClassVar[str] = "VAULT_TOKEN"
    renews_by_login: ClassVar[bool] = False
    token: str = field(repr=False)

    def log_in(self, client: Any) -> str:
        return self.token


@dataclass(frozen=True)
class TokenFile(VaultLogin):
    """A token in a file, read afresh each time: Vault Agent's auto-auth sink replaces it there."""

    name: ClassVar[str] = "token file"
    path: Path

    def log_in(self, client: Any) -> str:
        return _read(self.path, "WEBHOOKD_VAULT_TOKEN_FILE")


@dataclass(frozen=True)
class AppRoleLogin(VaultLogin):
    """AppRole: a role id and, unless the role binds none, a secret id given or read from a file
    (afresh at each login, so a rotated secret id is picked up)."""

    name: ClassVar[str] = "AppRole"
    owns_token: ClassVar[bool] = True
    role_id: str
    secret_id: str | None = field(default=None, repr=False)
    secret_id_file: Path | None = None
    mount: str = "approle"

    def log_in(self, client: Any) -> str:
        secret_id = self.secret_id
        if self.secret_id_file is not None:
            secret_id = _read(self.secret_id_file, "WEBHOOKD_VAULT_SECRET_ID_FILE")
        response = client.auth.approle.login(self.role_id, secret_id, use_token=False, mount_point=self.mount)
        return _client_token(response)


@dataclass(frozen=True)
class KubernetesLogin(VaultLogin):
    """Kubernetes auth: the pod's service account token (read afresh: the kubelet rotates it) for a
    Vault role."""

    name: ClassVar[str] = "Kubernetes"
    owns_token: ClassVar[bool] = True
    role: str
    token_file: Path = SERVICE_ACCOUNT_TOKEN
    mount: str = "kubernetes"

    def log_in(self, client: Any) -> str:
        jwt = _read(self.token_file, "WEBHOOKD_VAULT_KUBERNETES_TOKEN_FILE")
        return _client_token(client.auth.kubernetes.login(self.role, jwt, use_token=False, mount_point=self.mount))


def _read(path: Path, setting: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LoginFailed(f"cannot read {setting} ({type(exc).__name__})") from None
    if not text:
        raise LoginFailed(f"{setting} is empty")
    return text


def _client_token(response: Any) -> str:
    try:
        return str(response["auth"]["client_token"])
    except (KeyError, TypeError):
        raise LoginFailed("the login's answer holds no token") from None
