"""gRPC status → HTTP status and the AIP-193 body, from one table."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from webhookd.domain.errors import (
    ERROR_DOMAIN,
    MESSAGE_MAX,
    VIOLATION_DESCRIPTION_MAX,
    VIOLATION_FIELD_MAX,
    VIOLATIONS_MAX,
    PayloadTooLarge,
)
from webhookd.gateway.jsonshape import FieldViolation
from webhookd.http.errors import (
    CODE_BY_HTTP_ONLY_STATUS,
    HTTP_STATUS_BY_CODE,
    ApiError,
    from_domain_error,
    from_rpc_error,
    head_too_large,
    http_status_for,
    internal,
    invalid_argument,
    malformed_json,
    malformed_request,
    method_not_allowed,
    precondition_failed,
    request_timeout,
    route_not_found,
    status_name_for_http,
    unsupported_media_type,
)

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

EXPECTED = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
}


class FakeRpcError(grpc.RpcError):
    def __init__(
        self, code: grpc.StatusCode, message: str, *details: object, trailer_message: str | None = None
    ) -> None:
        self._code, self._message = code, message
        status = status_pb2.Status(code=code.value[0], message=trailer_message or message)
        for detail in details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),) if details else ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


@pytest.mark.parametrize("name,status", sorted(EXPECTED.items()))
def test_every_grpc_code_has_its_http_status(name: str, status: int) -> None:
    assert http_status_for(grpc.StatusCode[name]) == status


def test_the_table_covers_every_grpc_code() -> None:
    assert set(HTTP_STATUS_BY_CODE) == set(grpc.StatusCode)


def test_not_found_keeps_message_status_and_error_info() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="WEBHOOK_NOT_FOUND", domain="integration.cpod.io", metadata={"id": "whk_1"}
    )
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "webhook whk_1 not found", info))
    assert error.body() == {
        "error": {
            "code": 404,
            "message": "webhook whk_1 not found",
            "status": "NOT_FOUND",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "WEBHOOK_NOT_FOUND",
                    "domain": "integration.cpod.io",
                    "metadata": {"id": "whk_1"},
                }
            ],
        }
    }


def test_bad_request_renders_field_violations() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="webhook.url", description="must be https")]
    )
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "webhook.url: must be https", bad))
    assert error.http_status == 400
    assert error.details == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "webhook.url", "description": "must be https"}],
        }
    ]


def test_unauthenticated_asks_for_a_bearer_token() -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "missing token"))
    assert (error.http_status, error.headers) == (401, {"WWW-Authenticate": "Bearer"})


@pytest.mark.parametrize("code,status", [(grpc.StatusCode.RESOURCE_EXHAUSTED, 429), (grpc.StatusCode.UNAVAILABLE, 503)])
def test_retry_info_becomes_retry_after(code: grpc.StatusCode, status: int) -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=100_000_000))
    error = from_rpc_error(FakeRpcError(code, "slow down", retry))
    assert (error.http_status, error.headers["Retry-After"]) == (status, "3")
    assert error.details[0]["retryDelay"] == "2.100s"


def test_retry_after_only_on_429_and_503() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2))
    assert "Retry-After" not in from_rpc_error(FakeRpcError(grpc.StatusCode.ABORTED, "x", retry)).headers


def test_aborted_is_412_failed_precondition_only_when_if_match_asked_for_the_check() -> None:
    stale = FakeRpcError(grpc.StatusCode.ABORTED, "version 3 is not current")
    assert (from_rpc_error(stale).http_status, from_rpc_error(stale).status) == (409, "ABORTED")
    conditional = from_rpc_error(stale, precondition_from_header=True)
    assert (conditional.http_status, conditional.status) == (412, "FAILED_PRECONDITION")


def in_the_table(error: ApiError) -> bool:
    code = grpc.StatusCode[error.status]
    return HTTP_STATUS_BY_CODE[code] == error.http_status or CODE_BY_HTTP_ONLY_STATUS.get(error.http_status) == code


@pytest.mark.parametrize(
    "error",
    [
        method_not_allowed("PUT", "/x", ["GET"]),
        unsupported_media_type("text/plain"),
        precondition_failed("weak", reason="WEAK_ETAG"),
        from_domain_error(PayloadTooLarge(10)),
        route_not_found("GET", "/x"),
        malformed_json("x"),
        malformed_request(),
        request_timeout(60),
        head_too_large(65536),
        from_rpc_error(FakeRpcError(grpc.StatusCode.ABORTED, "stale"), precondition_from_header=True),
    ],
    ids=lambda error: str(error.http_status),
)
def test_every_error_the_http_layer_makes_is_a_pair_of_the_one_table(error: ApiError) -> None:
    assert in_the_table(error), (error.http_status, error.status)


@pytest.mark.parametrize("http_status", [400, 404, 405, 409, 412, 413, 415, 429, 503])
def test_the_table_read_backwards_gives_a_code_that_maps_forward_to_the_status(http_status: int) -> None:
    name = status_name_for_http(http_status)
    assert in_the_table(ApiError(http_status, name, "x"))


def test_unknown_detail_types_still_show_their_type() -> None:
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.Unknown", value=b"\x08\x01")
    status = status_pb2.Status(code=13, message="boom", details=[unknown])
    error = FakeRpcError(grpc.StatusCode.INTERNAL, "boom")
    error._trailers = (("grpc-status-details-bin", status.SerializeToString()),)
    assert from_rpc_error(error).details == [{"@type": "type.googleapis.com/acme.Unknown"}]


def test_trailer_message_preferred_even_if_it_differs() -> None:
    error = from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.NOT_FOUND, "short", error_details_pb2.ErrorInfo(reason="R"), trailer_message="long"
        )
    )
    assert error.message == "long"


def test_gateway_made_violations_have_the_servers_shape_error_info_then_bad_request() -> None:
    error = invalid_argument([FieldViolation("webhook.colour", "unknown field")])
    assert error.body()["error"]["status"] == "INVALID_ARGUMENT"
    assert error.details == [
        {"@type": ERROR_INFO, "reason": "INVALID_ARGUMENT", "domain": ERROR_DOMAIN},
        {"@type": BAD_REQUEST, "fieldViolations": [{"field": "webhook.colour", "description": "unknown field"}]},
    ]


def test_gateway_made_violations_are_bounded_as_the_servers_are() -> None:
    many = [FieldViolation(f"webhook.{'k' * 500}{n}", "unknown field " + "x" * 500) for n in range(1000)]
    error = invalid_argument(many)
    [_, bad_request] = error.details
    assert len(bad_request["fieldViolations"]) == VIOLATIONS_MAX
    assert all(len(v["field"]) <= VIOLATION_FIELD_MAX for v in bad_request["fieldViolations"])
    assert all(len(v["description"]) <= VIOLATION_DESCRIPTION_MAX for v in bad_request["fieldViolations"])
    assert len(error.message) <= MESSAGE_MAX


def test_an_error_without_rich_details_still_carries_error_info() -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert error.details == [{"@type": ERROR_INFO, "reason": "UNAVAILABLE", "domain": ERROR_DOMAIN}]


def test_a_server_out_of_reach_is_503_with_retry_after_other_codes_without() -> None:
    unreachable = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert unreachable.headers["Retry-After"] == "1"
    too_big = from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max"))
    assert "Retry-After" not in too_big.headers


def test_an_unexpected_error_carries_error_info_and_the_request_id_to_quote() -> None:
    error = internal("rid-7")
    assert error.details == [
        {"@type": ERROR_INFO, "reason": "INTERNAL", "domain": ERROR_DOMAIN, "metadata": {"request_id": "rid-7"}}
    ]
    assert "rid-7" in error.message
