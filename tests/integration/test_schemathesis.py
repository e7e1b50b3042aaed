"""schemathesis against the real gateway's /api/v1/openapi.json, with a valid bearer token: for every
operation, generated requests (valid and invalid) never get a 5xx, and every response (status,
content type, headers, body) is one the document declares."""

from __future__ import annotations

import asyncio
import traceback

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support import JWT_SECRET, new_tenant_id
from webhookd.auth.tokens import mint

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# A stream asked to follow never ends; the test reads each response whole, so streams are asked
# for their backlog only (following is what the SSE/NDJSON tests cover).
FINITE_STREAM_QUERY = {"follow": "false"}

pytestmark = pytest.mark.slow


def run_schemathesis(base_url: str, token: str) -> list[str]:
    """Runs every operation's examples (blocking: call it in a thread); returns the failures."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", timeout=10)
    auth = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            query = FINITE_STREAM_QUERY if any(p.name == "follow" for p in operation.query) else None
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(mode, query=query)

                @hypothesis.settings(
                    max_examples=MAX_EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @hypothesis.given(case=strategy)
                def examples(case: schemathesis.Case) -> None:
                    response = case.call(base_url=base_url, session=session, headers=auth, timeout=15)
                    case.validate_response(response, checks=CHECKS, headers=auth)

                try:
                    examples()
                except hypothesis.errors.Unsatisfiable:
                    continue  # nothing to make invalid: an operation without parameters or body
                except (Exception, FailureGroup) as error:  # noqa: BLE001 - all are collected and reported
                    failures.append(f"{operation.label} ({mode.value}):\n{_summary(error)}")
    return failures


def _summary(error: BaseException) -> str:
    text = str(error) or "".join(traceback.format_exception_only(error))
    return text[:4000]


async def test_every_operation_conforms_to_the_openapi_document(gateway) -> None:
    tenant_id = new_tenant_id()
    token = mint(JWT_SECRET, tenant_id=tenant_id, subject="person_schemathesis")

    failures = await asyncio.to_thread(run_schemathesis, gateway.url, token)

    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
