"""An app that raises before it started a response is answered by our outermost wrapper, not by
uvicorn's plain-text 500: the default headers, the JSON error body of every other answer (no
traceback, nothing of the exception's text), and the exception logged once, with the request id the
body quotes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webhookd.http.response_headers import DEFAULT_HEADERS
from webhookd.http.server import HttpServer

SECRET = "whsec_not_for_the_body"
REQUEST_ID = "req-unexpected-1"


class Broken(RuntimeError):
    pass


async def raises_before_answering(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        raise Broken(f"the signing secret was {SECRET}")


async def route_that_raises(_: object) -> None:
    raise Broken(f"the signing secret was {SECRET}")


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    server = HttpServer(app, "127.0.0.1:0")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=15) as http:
            yield http
    finally:
        await server.stop()


def logged_once(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    logged = [record for record in caplog.records if record.exc_info and isinstance(record.exc_info[1], Broken)]
    assert len(logged) == 1, [record.getMessage() for record in logged]
    return logged[0]


async def test_an_app_raising_before_it_answers_gets_a_json_500_with_the_default_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with served(raises_before_answering) as http:
        response = await http.get("/", headers={"X-Request-Id": REQUEST_ID})

    assert response.status_code == 500
    assert {name: response.headers.get(name) for name in DEFAULT_HEADERS} == DEFAULT_HEADERS
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (500, "INTERNAL")
    assert error["message"] == f"internal error; quote request id {REQUEST_ID} when reporting it"
    assert SECRET not in response.text and "Traceback" not in response.text
    assert getattr(logged_once(caplog), "request_id", None) == REQUEST_ID


async def test_a_route_whose_500_was_already_written_is_logged_once_and_answered_with_the_defaults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Starlette writes its own 500 and raises again: the answer stands, and the exception is one line."""
    caplog.set_level(logging.INFO)
    async with served(Starlette(routes=[Route("/", route_that_raises)])) as http:
        response = await http.get("/")

    assert response.status_code == 500
    assert {name: response.headers.get(name) for name in DEFAULT_HEADERS} == DEFAULT_HEADERS
    assert SECRET not in response.text and "Traceback" not in response.text
    logged_once(caplog)
