"""Whether this process is ready to serve: the one rule both transports answer from.

A process is ready when every one of its checks (the database, Vault; the gRPC target for
`webhookd gateway`) answers "ok" within the bound. A round asks them all at once. /readyz runs a round
per request and shows its answers; gRPC health (api/health.py) runs rounds of its own while idle, and
follows `ready`, which every round sets. So both say the same thing, whichever asked last.

A check that does not answer in time (a frozen Vault) is not asked again while its question is
still out: later rounds wait on that same question. A Vault question holds one of the client's few
threads until its own timeout, and rounds every two seconds would otherwise pile them up.

The database's check and the schema's share one statement a round (`database_checks`): reading the
schema's revision is as good a proof that the database answers as `SELECT 1` was, and each round still
reads it, so a schema migrated by a newer release, or put back, is seen by the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhookd.domain.errors import Unavailable

log = logging.getLogger("webhookd.readiness")
# How long a round waits for any one check: a frozen dependency answers nothing, and a probe that
# hangs is as bad as one that says "ready" (balancers time out and keep the instance).
CHECK_TIMEOUT_SECONDS = 2.0
OK = "ok"

# A check returns None when healthy, or a short reason (never a secret or a connection string).
Check = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Report:
    checks: dict[str, str]  # check name -> "ok" or why not

    @property
    def ready(self) -> bool:
        return all(answer == OK for answer in self.checks.values())


class Readiness:
    """The checks of a process and what the last round found (ready until a round says otherwise:
    a process starts only once its backends answered)."""

    def __init__(self, checks: Mapping[str, Check], *, timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> None:
        self._checks = dict(checks)
        self._timeout = timeout_seconds
        self._asking: dict[str, asyncio.Future[str | None]] = {}
        self._ready = True
        self._changed = asyncio.Event()  # set (and replaced) when `ready` changes

    @property
    def ready(self) -> bool:
        return self._ready

    def ready_changed(self) -> Coroutine[Any, Any, bool]:
        """Completes once `ready` changes after this call."""
        return self._changed.wait()  # this Event: a change before the awaiting starts still counts

    async def probe(self) -> Report:
        """One round: every check at once, each within the bound; `ready` is set from the answers."""
        answers = await asyncio.gather(*(self._answer(name) for name in self._checks))
        report = Report(dict(zip(self._checks, answers, strict=True)))
        self._record(report)
        return report

    async def close(self) -> None:
        """Ends the questions still out (a check that never answered)."""
        for question in self._asking.values():
            question.cancel()
        await asyncio.gather(*self._asking.values(), return_exceptions=True)
        self._asking.clear()

    async def _answer(self, name: str) -> str:
        question = self._asking.get(name)
        if question is None or question.done():
            question = self._asking[name] = asyncio.ensure_future(self._checks[name]())
        try:
            async with asyncio.timeout(self._timeout):
                # Shielded: a round that stops waiting leaves the question for the next one to join.
                return (await asyncio.shield(question)) or OK
        except TimeoutError:
            return f"no answer within {self._timeout:g}s"
        except Exception as error:  # noqa: BLE001 - a check's own fault is a reason too: the rounds must go on
            # Only the type, here and in the answer: a message may carry a host or a credential.
            log.debug("readiness check failed", extra={"check": name, "error": type(error).__name__})
            return f"check failed: {type(error).__name__}"

    def _record(self, report: Report) -> None:
        if report.ready == self._ready:
            return
        self._ready = report.ready
        self._changed.set()
        self._changed = asyncio.Event()
        if report.ready:
            log.warning("ready again")
        else:
            down = {name: answer for name, answer in report.checks.items() if answer != OK}
            log.warning("not ready", extra={"checks": down})


def database_checks(
    read_revision: Callable[[], Awaitable[Sequence[str]]], unlike: Callable[[Sequence[str]], object | None]
) -> dict[str, Check]:
    """The `database` and `schema` checks, answered from one `read_revision` a round (both checks ask
    at once, and the second joins the read the first started). `unlike` says why a revision is not
    this release's newest, or None when it is."""
    reading: asyncio.Future[Sequence[str]] | None = None

    async def revision() -> Sequence[str]:
        nonlocal reading
        if reading is None or reading.done():
            reading = asyncio.ensure_future(read_revision())
        return await reading

    async def database() -> str | None:
        try:
            await revision()
        except Unavailable as error:
            return error.message
        return None

    async def schema() -> str | None:
        try:
            changed = unlike(await revision())
        except Unavailable as error:
            return error.message
        return None if changed is None else f"database schema: {changed}"

    return {"database": database, "schema": schema}
