"""Bearer JWT checks: every WebhookService call needs a valid token; health and reflection do not."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from webhook_calls import error_info, rpc_error

from support import JWT_SECRET, new_tenant_id
from webhookd.auth.tokens import LEEWAY_SECONDS, TokenVerifier, mint
from webhookd.config import Settings, SettingsError
from webhookd.domain.errors import Unauthenticated
from webhookd.domain.scope import Scope


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"tenant_id": new_tenant_id(), "sub": "person_1", "exp": int(time.time()) + 600}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = JWT_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_signed_hs256(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 token built by hand: PyJWT itself refuses to HMAC with a PEM key."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def with_claims_swapped(token: str, **changes: Any) -> str:
    """The token's signature on a payload the attacker changed."""
    header, _, signature = token.split(".")
    forged = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    return f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"


async def list_with(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
    stub = rpc.WebhookServiceStub(channel)
    return await rpc_error(stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=metadata))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


BAD_TOKENS = {
    "garbage": "not.a.jwt",
    "expired": mint(JWT_SECRET, tenant_id="tnt_1", ttl_seconds=-120),
    "wrong_secret": mint("another-secret-another-secret-another!", tenant_id="tnt_1"),
    "alg_none": unsigned(claims()),
    "alg_none_capitalised": unsigned(claims(), alg="None"),
    "no_tenant_id": hs256(claims(tenant_id=None)),
    "empty_tenant_id": hs256(claims(tenant_id="")),
    "tenant_id_not_a_string": hs256(claims(tenant_id=42)),
    "no_exp": hs256(claims(exp=None)),
    "tenant_id_too_long": hs256(claims(tenant_id="t" * 257)),
    "not_yet_valid": hs256(claims(nbf=int(time.time()) + 600)),
    "other_tenant_under_a_valid_signature": with_claims_swapped(mint(JWT_SECRET, tenant_id="tnt_1"), tenant_id="tnt_2"),
    "truncated": mint(JWT_SECRET, tenant_id="tnt_1")[:-5],
    # Ids are stored: a lone surrogate failed the query (INTERNAL); an invisible or line-breaking
    # character would make one id look like another.
    "app_id_lone_surrogate": hs256(claims(app_id="\ud800")),
    "sub_lone_surrogate": hs256(claims(sub="\udfff")),
    "sub_right_to_left_override": hs256(claims(sub="person_\u202e1")),
    "app_id_line_separator": hs256(claims(app_id="app\u2028crm")),
    # An app's token narrowed to nothing must not widen to the whole tenant.
    "empty_app_id": hs256(claims(app_id="")),
    "null_app_id": hs256({**claims(), "app_id": None}),
    # PyJWT takes any `exp` int() reads; past a float's range it was an OverflowError (INTERNAL), and
    # a string of digits past it became an expiry of infinity (remembered, and streams, for ever).
    "exp_past_a_floats_range": hs256(claims(exp=10**400)),
    "exp_string_past_a_floats_range": hs256(claims(exp="9" * 400)),
}


async def test_missing_token_is_unauthenticated(channel) -> None:
    error = await list_with(channel, ())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "UNAUTHENTICATED"


@pytest.mark.parametrize("authorization", ["", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token abc"])
async def test_malformed_authorization_header_is_unauthenticated(channel, authorization: str) -> None:
    error = await list_with(channel, (("authorization", authorization),))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_token_is_unauthenticated(channel, kind: str) -> None:
    error = await list_with(channel, bearer(BAD_TOKENS[kind]))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()


@pytest.mark.parametrize("method", ["GetWebhook", "CreateWebhook", "UpdateWebhook", "DeleteWebhook", "UndeleteWebhook"])
async def test_every_rpc_needs_a_token(channel, method: str) -> None:
    stub = rpc.WebhookServiceStub(channel)
    request_type = getattr(pb, f"{method}Request")
    error = await rpc_error(getattr(stub, method)(request_type()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_following_stream_ends_unauthenticated_when_its_token_expires(channel) -> None:
    """Checked only when it opened, it went on reading for as long as it stayed open. This token is
    accepted by the leeway for about two seconds more."""
    token = hs256(claims(exp=int(time.time()) - LEEWAY_SECONDS + 2))
    stub = rpc.WebhookServiceStub(channel)

    stream = stub.DeliveryLog(pb.DeliveryLogRequest(follow=True), metadata=bearer(token))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async with asyncio.timeout(15):  # the bound on a stream that never ends: a failure
            async for _ in stream:
                pass

    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED, ended.value.details()
    assert "token expired" in (ended.value.details() or "")


async def test_several_authorization_entries_are_unauthenticated_even_when_alike(channel) -> None:
    token = mint(JWT_SECRET, tenant_id=new_tenant_id())
    error = await list_with(channel, bearer(token) + bearer(token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "send one authorization header, not 2" in (error.details() or "")


async def test_valid_token_is_accepted(channel) -> None:
    stub = rpc.WebhookServiceStub(channel)
    response = await stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=bearer(hs256(claims())))
    assert list(response.webhooks) == []


async def test_lowercase_bearer_scheme_is_accepted(channel) -> None:
    stub = rpc.WebhookServiceStub(channel)
    metadata = (("authorization", f"bearer {hs256(claims())}"),)
    response = await stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=metadata)
    assert list(response.webhooks) == []


async def test_health_check_needs_no_token(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    overall = await health.Check(health_pb2.HealthCheckRequest())
    service = await health.Check(health_pb2.HealthCheckRequest(service="cpod.integration.v1.WebhookService"))
    assert overall.status == service.status == health_pb2.HealthCheckResponse.SERVING


# -- TokenVerifier on its own: issuer/audience, public keys, algorithm confusion ---------------------


def hs_verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=JWT_SECRET, **settings))


def test_token_becomes_the_scope() -> None:
    scope = hs_verifier().verify(hs256(claims(tenant_id="tnt_a", sub="p_1", app_id="app_1")))
    assert scope == Scope(tenant_id="tnt_a", app_id="app_1", person_id="p_1")


def test_issuer_and_audience_are_checked_when_configured() -> None:
    verifier = hs_verifier(jwt_issuer="https://auth.cpod.test", jwt_audience="webhookd")
    good = claims(iss="https://auth.cpod.test", aud="webhookd")
    assert verifier.verify(hs256(good)).tenant_id == good["tenant_id"]
    for bad in (
        {**good, "iss": "https://evil.test"},
        {**good, "aud": "another-service"},
        {name: value for name, value in good.items() if name != "iss"},
        {name: value for name, value in good.items() if name != "aud"},
    ):
        with pytest.raises(Unauthenticated):
            verifier.verify(hs256(bad))


def test_issuer_and_audience_are_not_required_when_not_configured() -> None:
    token = hs256(claims(iss="anyone", aud="anything"))
    assert hs_verifier().verify(token).person_id == "person_1"


def test_short_hmac_secret_is_a_settings_error() -> None:
    with pytest.raises(SettingsError):
        TokenVerifier(Settings(jwt_secret="short"))


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.OpenSSH], ids=str)
def test_a_public_key_given_as_the_hmac_secret_is_a_settings_error(encoding: serialization.Encoding) -> None:
    """An identity provider's public key pasted into WEBHOOKD_JWT_SECRET: PyJWT refuses to HMAC with
    it, and that InvalidKeyError made every call INTERNAL instead of a refusal at start-up."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    formats = {
        serialization.Encoding.PEM: serialization.PublicFormat.SubjectPublicKeyInfo,
        serialization.Encoding.OpenSSH: serialization.PublicFormat.OpenSSH,
    }
    secret = public.public_bytes(encoding, formats[encoding]).decode()
    with pytest.raises(SettingsError, match="WEBHOOKD_JWT_SECRET"):
        TokenVerifier(Settings(jwt_secret=secret))


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[rsa.RSAPrivateKey, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path_factory.mktemp("jwt") / "public.pem"
    path.write_bytes(pem)
    return private, path


def test_rs256_token_verifies_with_the_pem_public_key(rsa_key) -> None:
    private, path = rsa_key
    verifier = TokenVerifier(Settings(jwt_public_key_file=path))
    token = jwt.encode(claims(tenant_id="tnt_rsa"), private, algorithm="RS256")
    assert verifier.verify(token).tenant_id == "tnt_rsa"


def test_rs256_token_signed_by_another_key_is_rejected(rsa_key) -> None:
    _, path = rsa_key
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated):
        TokenVerifier(Settings(jwt_public_key_file=path)).verify(jwt.encode(claims(), stranger, algorithm="RS256"))


def test_hs256_token_signed_with_the_public_pem_is_rejected(rsa_key) -> None:
    """Algorithm confusion: the public key is no secret, so it must never work as an HMAC key."""
    _, path = rsa_key
    verifier = TokenVerifier(Settings(jwt_public_key_file=path))
    pem = path.read_bytes()
    for key in (pem, pem.strip()):
        with pytest.raises(Unauthenticated):
            verifier.verify(hand_signed_hs256(claims(), key))


def test_unsigned_token_is_rejected_with_a_public_key(rsa_key) -> None:
    _, path = rsa_key
    with pytest.raises(Unauthenticated):
        TokenVerifier(Settings(jwt_public_key_file=path)).verify(unsigned(claims()))


def test_es256_token_verifies_with_an_ec_public_key(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    verifier = TokenVerifier(Settings(jwt_public_key_file=path))
    assert verifier.verify(jwt.encode(claims(tenant_id="tnt_ec"), private, algorithm="ES256")).tenant_id == "tnt_ec"
    with pytest.raises(Unauthenticated):
        verifier.verify(jwt.encode(claims(), JWT_SECRET, algorithm="HS256"))


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()], ids=lambda curve: curve.name)
def test_an_ec_public_key_on_another_curve_than_p256_is_a_settings_error(
    tmp_path: Path, curve: ec.EllipticCurve
) -> None:
    """ES256 verifies with P-256 only: such a key was taken, and every token checked with it raised
    PyJWT's InvalidKeyError, INTERNAL on every call instead of a refusal at start-up."""
    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(curve)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SettingsError, match="P-256"):
        TokenVerifier(Settings(jwt_public_key_file=path))
