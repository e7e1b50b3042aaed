"""Operators' view: the real grpcurl binary against the server, through reflection, with a bearer token."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from support import AuthedStub
from webhookd.app import Service

# Each test runs grpcurl as a process.
pytestmark = pytest.mark.slow

GRPCURL = Path(sys.executable).parent / "grpcurl"
SERVICE = "cpod.integration.v1.WebhookService"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    # The server runs in this event loop: wait for the subprocess without blocking it.
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def call(service: Service, caller: AuthedStub, method: str, body: dict[str, Any]) -> dict[str, Any]:
    code, out, err = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {caller.token}",
        "-d",
        json.dumps(body),
        service.grpc_target,
        f"{SERVICE}/{method}",
    )
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


async def test_list_shows_the_webhook_service_without_a_token(service) -> None:
    code, out, err = await grpcurl("-plaintext", service.grpc_target, "list")
    assert code == 0, err
    services = out.split()
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services


async def test_describe_shows_every_resource_rpc(service) -> None:
    code, out, err = await grpcurl("-plaintext", service.grpc_target, "describe", SERVICE)
    assert code == 0, err
    for rpc in ("ListWebhooks", "GetWebhook", "CreateWebhook", "UpdateWebhook", "DeleteWebhook", "UndeleteWebhook"):
        assert f"rpc {rpc} (" in out
    code, out, err = await grpcurl("-plaintext", service.grpc_target, "describe", "cpod.integration.v1.RetryPolicy")
    assert code == 0, err
    assert "max_attempts" in out and "timeout_ms" in out


async def test_create_then_list_through_grpcurl(service, caller) -> None:
    created = await call(service, caller, "CreateWebhook", {"webhook": {"name": "x", "url": "https://example.test/h"}})
    webhook = created["webhook"]
    assert webhook["id"].startswith("whk_")
    # grpcurl prints the proto's own field names.
    assert webhook["tenant_id"] == caller.tenant_id
    assert webhook["direction"] == "DIRECTION_OUTBOUND"
    assert created["signing_secret"].startswith("whsec_")

    listed = await call(service, caller, "ListWebhooks", {})
    assert [w["id"] for w in listed["webhooks"]] == [webhook["id"]]
    assert listed["webhooks"][0]["name"] == "x"
    assert created["signing_secret"] not in json.dumps(listed)


async def test_grpcurl_call_without_a_token_is_unauthenticated(service) -> None:
    code, out, err = await grpcurl("-plaintext", "-d", "{}", service.grpc_target, f"{SERVICE}/ListWebhooks")
    assert code != 0
    assert "Unauthenticated" in out + err


async def test_grpcurl_health_check_needs_no_token(service) -> None:
    code, out, err = await grpcurl("-plaintext", service.grpc_target, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}


async def test_both_reflection_versions_are_listed(service) -> None:
    code, out, err = await grpcurl("-plaintext", service.grpc_target, "list")
    assert code == 0, err
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= set(out.split())


async def test_grpcurl_describes_and_calls_reflection_v1(service) -> None:
    # grpcurl 1.8 asks v1alpha for v1's descriptors, then calls the v1 service like any other RPC:
    # a client that speaks only v1 gets the same answers.
    v1 = "grpc.reflection.v1.ServerReflection"
    code, out, err = await grpcurl("-plaintext", service.grpc_target, "describe", v1)
    assert code == 0, err
    assert "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest )" in out

    code, out, err = await grpcurl(
        "-plaintext", "-d", '{"list_services": ""}', service.grpc_target, f"{v1}/ServerReflectionInfo"
    )
    assert code == 0, err
    listed = {entry["name"] for entry in json.loads(out)["list_services_response"]["service"]}
    assert {SERVICE, "grpc.health.v1.Health", v1} <= listed

    asked = json.dumps({"file_containing_symbol": SERVICE})
    code, out, err = await grpcurl("-plaintext", "-d", asked, service.grpc_target, f"{v1}/ServerReflectionInfo")
    assert code == 0, err
    assert json.loads(out)["file_descriptor_response"]["file_descriptor_proto"]
