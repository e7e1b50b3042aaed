"""Server reflection answers in both versions: grpc.reflection.v1 (what current grpcurl, grpcui and
Postman ask for) and v1alpha, with v1 messages on the v1 service."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

SERVICE = "cpod.integration.v1.WebhookService"


def v1_message(name: str) -> type:
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(f"grpc.reflection.v1.{name}")
    )


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_services_and_serves_their_files(channel: grpc.aio.Channel, version: str) -> None:
    request_type, response_type = v1_message("ServerReflectionRequest"), v1_message("ServerReflectionResponse")
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    requests = [request_type(list_services=""), request_type(file_containing_symbol=SERVICE)]

    listed, files = [response async for response in call(iter(requests))]

    names = {service.name for service in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    assert files.file_descriptor_response.file_descriptor_proto
