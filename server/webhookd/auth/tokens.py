"""Bearer JWT verification and minting: the caller's token becomes a Scope or Unauthenticated."""

from __future__ import annotations

import asyncio
import math
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from webhookd.auth.jwks import ALGORITHMS, JwksError, JwksKeys, UnknownKey, file_loader, url_loader
from webhookd.config import Settings, SettingsError
from webhookd.domain.errors import Unauthenticated, Unavailable
from webhookd.domain.scope import Scope

MAX_CLAIM_LENGTH = 256
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# A compact JWS: three base64url parts without padding (RFC 7515). PyJWT also takes padded ones, and
# each padded spelling of one token was a cache entry of its own.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# NumericDate claims are JSON numbers (RFC 7519); PyJWT also takes strings of digits.
_TIME_CLAIMS = ("exp", "nbf", "iat")
MIN_HMAC_SECRET_BYTES = 32
# Verified tokens kept per process; the oldest leaves first.
TOKEN_CACHE_SIZE = 10_000
# Far longer than a real bearer JWT, and short enough that the REST gateway can always pass the header
# on as gRPC metadata (8 KiB for all of a call's metadata). The same bound over gRPC and REST.
MAX_AUTHORIZATION_LENGTH = 4096


@dataclass(frozen=True)
class _Keys:
    """Which algorithms are accepted and the key for each; never both HMAC and public-key ones."""

    algorithms: tuple[str, ...]
    static_key: Any = None
    jwks: JwksKeys | None = None


def _public_key_algorithm(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    # ES256 is P-256 only: PyJWT checking a token with a key on another curve raises InvalidKeyError.
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise SettingsError("WEBHOOKD_JWT_PUBLIC_KEY_FILE must hold an RSA or EC P-256 public key")


def _load_keys(settings: Settings) -> _Keys:
    if settings.jwt_jwks_url is not None:
        # Loaded by keep_keys_fresh once the server runs (or by the first call): the provider may be
        # down at start-up, which must not stop webhookd from starting.
        return _Keys(algorithms=ALGORITHMS, jwks=JwksKeys(url_loader(settings.jwt_jwks_url), settings.jwt_jwks_url))
    if settings.jwt_jwks_file is not None:
        path = Path(settings.jwt_jwks_file)
        jwks = JwksKeys(file_loader(path), str(path))
        try:
            jwks.use(path.read_bytes())
        except (OSError, JwksError) as error:
            raise SettingsError(f"WEBHOOKD_JWT_JWKS_FILE: {error}") from None
        return _Keys(algorithms=ALGORITHMS, jwks=jwks)
    if settings.jwt_public_key_file is not None:
        try:
            key = load_pem_public_key(Path(settings.jwt_public_key_file).read_bytes())
        except OSError as error:
            raise SettingsError(f"WEBHOOKD_JWT_PUBLIC_KEY_FILE cannot be read: {error.strerror or error}") from None
        except ValueError:
            raise SettingsError("WEBHOOKD_JWT_PUBLIC_KEY_FILE must hold a PEM public key") from None
        return _Keys(algorithms=(_public_key_algorithm(key),), static_key=key)
    if settings.jwt_secret is not None:
        if len(settings.jwt_secret.encode()) < MIN_HMAC_SECRET_BYTES:
            raise SettingsError(f"WEBHOOKD_JWT_SECRET must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        try:
            # PyJWT refuses to HMAC with what looks like a public key (PEM, ssh): asked here, not on
            # every call, where its InvalidKeyError would be INTERNAL.
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(settings.jwt_secret)
        except jwt.InvalidKeyError:
            raise SettingsError(
                "WEBHOOKD_JWT_SECRET holds a public key; set WEBHOOKD_JWT_PUBLIC_KEY_FILE to verify with one"
            ) from None
        return _Keys(algorithms=("HS256",), static_key=settings.jwt_secret)
    raise SettingsError(
        "no JWT key: set WEBHOOKD_JWT_SECRET (HS256), WEBHOOKD_JWT_PUBLIC_KEY_FILE or WEBHOOKD_JWT_JWKS_FILE"
    )


def check_keys(settings: Settings) -> None:
    """SettingsError when the JWT settings give no key a server could verify tokens with; a
    supervisor asks before it starts anything, so the line is the one its servers would print."""
    _load_keys(settings)


# Clocks drift: a token is accepted this long past its `exp` (and before its `nbf`, `iat`).
LEEWAY_SECONDS = 30
_NOT_IN_IDS = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _optional_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_CLAIM_LENGTH:
        raise Unauthenticated(f"token claim {name!r} must be a string of at most {MAX_CLAIM_LENGTH} characters")
    # Claims are stored (app_id, created_by): PostgreSQL text holds no NUL and UTF-8 no lone surrogate,
    # and no control, invisible format (U+202E) or line-separating character belongs in an id anyway.
    if any(unicodedata.category(character) in _NOT_IN_IDS for character in value):
        raise Unauthenticated(
            f"token claim {name!r} must not contain control, format, separator or unpaired surrogate characters"
        )
    # " " as an app would be an app no console shows apart from "", and " app_1" another than "app_1".
    if value != value.strip():
        raise Unauthenticated(f"token claim {name!r} must not begin or end with whitespace")
    return value


def _expiry(exp: Any) -> float:
    """`exp` as time.time() counts. PyJWT accepts whatever int() reads: past a float's range that is
    an OverflowError, or infinity (a token remembered, and a stream kept open, for ever)."""
    try:
        expires_at = float(exp)
    except OverflowError:
        expires_at = math.inf
    if not math.isfinite(expires_at):
        raise Unauthenticated("token claim 'exp' is not a time")
    return expires_at


class TokenVerifier:
    """Verifies bearer tokens, and remembers the ones it accepted until they expire: a caller sends the
    same token with every call, and verifying it (signature, claims) costs far more than the call."""

    def __init__(
        self, settings: Settings, *, cache_size: int = TOKEN_CACHE_SIZE, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = _load_keys(settings)
        self._refresh_seconds = settings.jwt_jwks_refresh_seconds
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._clock = clock
        self._cache_size = cache_size
        self._accepted: OrderedDict[str, tuple[Scope, float]] = OrderedDict()
        self._keys_generation = 0  # of the JWKS keys the accepted tokens were checked with

    async def authenticate(self, token: str) -> tuple[Scope, float]:
        """`verify`, after loading the JWKS again when the token names a key not held (or none is held
        yet): the provider may have published a new key. With the scope, the time (as time.time()
        counts) past which the token is no longer accepted."""
        try:
            return self._checked(token)
        except (UnknownKey, Unavailable):
            if self._keys.jwks is None:
                raise
            await self._keys.jwks.reload_for(jwt.get_unverified_header(token).get("kid"))
            return self._checked(token)

    async def keep_keys_fresh(self) -> None:
        """Runs until cancelled, loading a JWKS again every WEBHOOKD_JWT_JWKS_REFRESH_SECONDS; returns
        at once for keys that cannot change (a secret or a PEM file)."""
        if self._keys.jwks is not None:
            await self._keys.jwks.keep_fresh(self._refresh_seconds)

    async def until_refused(self, token: str) -> None:
        """Returns once `token`, accepted before, is refused for a reason other than its expiry: a
        load of the JWKS dropped its key (perhaps compromised). A stream opened with it ends then, as
        its next call would be refused. Keys that cannot change (a secret, a PEM file): never."""
        if self._keys.jwks is None:
            await asyncio.get_running_loop().create_future()  # never done; cancelled with the stream
            return
        while True:
            await self._keys.jwks.changed()
            try:
                self._checked(token)
            except Unauthenticated:
                return

    def verify(self, token: str) -> Scope:
        return self._checked(token)[0]

    def _checked(self, token: str) -> tuple[Scope, float]:
        if self._keys.jwks is not None and self._keys.jwks.generation != self._keys_generation:
            # New keys: a token accepted with a key the provider has since dropped must not stay accepted.
            self._accepted.clear()
            self._keys_generation = self._keys.jwks.generation
        accepted = self._accepted.get(token)
        if accepted is not None:
            scope, expires_at = accepted
            if self._clock() < expires_at:
                return scope, expires_at + LEEWAY_SECONDS
            del self._accepted[token]
        scope, expires_at = self._verify(token)
        self._accepted[token] = (scope, expires_at)
        if len(self._accepted) > self._cache_size:
            self._accepted.popitem(last=False)
        return scope, expires_at + LEEWAY_SECONDS

    def _verify(self, token: str) -> tuple[Scope, float]:
        check_authorization_length(token)
        if not _COMPACT_JWS.fullmatch(token):
            raise Unauthenticated("token is not a compact JWS: three base64url parts, without padding")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            # Only the configured family is accepted: no `none`, no HS256 signed with a public key.
            if algorithm not in self._keys.algorithms:
                raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key_for(header),
                algorithms=list(self._keys.algorithms),
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "tenant_id"], "verify_aud": self._audience is not None},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        for name in _TIME_CLAIMS:
            if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], int | float)):
                raise Unauthenticated(f"token claim {name!r} must be a number (seconds since the epoch)")
        tenant_id = _optional_claim(claims, "tenant_id")
        if tenant_id is None:
            raise Unauthenticated("token claim 'tenant_id' is empty")
        if not _TENANT_ID.fullmatch(tenant_id):
            # It names storage paths (Vault) as well as rows: only a safe alphabet is accepted.
            raise Unauthenticated("token claim 'tenant_id' may only hold letters, digits and . _ : -")
        # An app's token sees only that app: an app_id present but empty is an issuer's mistake, and
        # taking it for "no app" would widen the token to the whole tenant.
        if "app_id" in claims and claims["app_id"] in (None, ""):
            raise Unauthenticated("token claim 'app_id' is empty: a token for the whole tenant leaves it out")
        scope = Scope(
            tenant_id=tenant_id,
            app_id=_optional_claim(claims, "app_id"),
            person_id=_optional_claim(claims, "sub"),
        )
        # Kept no later than the token's own expiry (leeway not included: a cached token never
        # outlives what a fresh check would accept).
        return scope, _expiry(claims["exp"])

    def _key_for(self, header: dict[str, Any]) -> Any:
        if self._keys.jwks is None:
            return self._keys.static_key
        return self._keys.jwks.key_for(header.get("kid"), header["alg"])


def check_authorization_length(authorization: str) -> None:
    if len(authorization) > MAX_AUTHORIZATION_LENGTH:
        raise Unauthenticated(f"authorization is longer than {MAX_AUTHORIZATION_LENGTH} characters")


def single_authorization(values: Sequence[str]) -> str | None:
    """The one authorization header sent, None for none. Several are refused: which one a proxy or a
    framework honours differs, and a token must not be chosen by a guess."""
    if len(values) > 1:
        raise Unauthenticated(f"send one authorization header, not {len(values)}")
    return values[0] if values else None


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing bearer token: send `authorization: Bearer <jwt>`")
    check_authorization_length(authorization)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be `Bearer <jwt>`")
    return token.strip()


def mint(
    secret: str,
    *,
    tenant_id: str,
    subject: str | None = None,
    app_id: str | None = None,
    ttl_seconds: int = 12 * 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for development and tests (`webhookd token`)."""
    now = int(time.time())
    claims: dict[str, Any] = {"tenant_id": tenant_id, "iat": now, "exp": now + ttl_seconds}
    optional = {"sub": subject, "iss": issuer, "aud": audience}
    claims.update({name: value for name, value in optional.items() if value})
    if app_id is not None:  # even "": an app token without its app is refused, not widened to the tenant
        claims["app_id"] = app_id
    return jwt.encode(claims, secret, algorithm="HS256")
