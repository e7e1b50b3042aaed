"""gRPC server reflection in both versions clients speak: grpc.reflection.v1alpha, and
grpc.reflection.v1, which current grpcurl, grpcui and Postman ask for.

grpcio-reflection serves v1alpha only. v1 is the same protocol under a new package name (its
messages are field-for-field copies of v1alpha's, so their bytes are the same), so the v1 service
is the v1alpha servicer behind the v1 method name. v1's descriptors, derived from v1alpha's by
renaming the package, go into the descriptor pool, so `describe grpc.reflection.v1.ServerReflection`
answers like every other service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_METHOD = "ServerReflectionInfo"


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection of `service_names` (and of reflection itself) in both versions."""
    _add_v1_descriptors(descriptor_pool.Default())
    names = [*service_names, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME]
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            _METHOD: grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


def _add_v1_descriptors(pool: Any) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
        return  # added by an earlier server in this process
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name, file.package = _V1_FILE, _V1_PACKAGE
    file.ClearField("options")  # v1alpha's language options name v1alpha's packages
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(file)
