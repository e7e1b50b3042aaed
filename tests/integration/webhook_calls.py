"""What the WebhookService integration tests share: creating a webhook and reading rich gRPC errors."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.rpc import error_details_pb2
from grpc_status import rpc_status

HTTPS_URL = "https://example.test/hook"


async def create(caller: Any, *, signing_secret: str = "", **fields: Any) -> pb.CreateWebhookResponse:
    """CreateWebhook with a valid name and url unless the test gives its own."""
    fields.setdefault("name", "hook")
    fields.setdefault("url", HTTPS_URL)
    request = pb.CreateWebhookRequest(webhook=wpb.Webhook(**fields), signing_secret=signing_secret)
    response: pb.CreateWebhookResponse = await caller.CreateWebhook(request)
    return response


async def create_webhook(caller: Any, **fields: Any) -> wpb.Webhook:
    return (await create(caller, **fields)).webhook


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error the call ends with; fails the test when it succeeds."""
    try:
        result = await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError(f"expected the call to fail, it returned {result!r}")


def _details(error: grpc.aio.AioRpcError) -> list[Any]:
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code()} carries no rich status: {error.details()}"
    return list(status.details)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field violations as {field: description}."""
    for detail in _details(error):
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return {v.field: v.description for v in bad_request.field_violations}
    raise AssertionError(f"no BadRequest detail in {error.code()}: {error.details()}")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in _details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo detail in {error.code()}: {error.details()}")
