"""Redocly CLI (its recommended rules) and Spectral (spectral:oas) find no error in the document the
gateway serves, and no warning but the known ones, each for a reason:

- info-license (Redocly), info-contact (Spectral): an internal service with no license or contact to
  publish; inventing one would be worse than the warning;
- operation-4xx-response (Redocly) on /healthz, /readyz, /metrics, the document, the manifest and
  the Playground page (GET and HEAD): those routes have no client error to describe (wrong methods
  are the router's 405, on every route alike).

The linters are the versions pinned in tools/openapi-lint, installed by tools/openapi-lint.sh
(`make test` runs it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from contract_session import served_document

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "build" / "openapi-lint" / "node_modules" / ".bin"
SPECTRAL_RULESET = ROOT / "tools" / "openapi-lint" / "spectral.yaml"
# No telemetry, no update check: the tests talk to loopback only.
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "REDOCLY_SUPPRESS_NOTIFICATIONS": "true"}
EXPECTED_REDOCLY_WARNINGS = {
    ("info-license", "#/info"),
    ("operation-4xx-response", "#/paths/~1healthz/get/responses"),
    ("operation-4xx-response", "#/paths/~1readyz/get/responses"),
    ("operation-4xx-response", "#/paths/~1metrics/get/responses"),
    ("operation-4xx-response", "#/paths/~1api~1v1~1openapi.json/get/responses"),
    ("operation-4xx-response", "#/paths/~1healthz/head/responses"),
    ("operation-4xx-response", "#/paths/~1readyz/head/responses"),
    ("operation-4xx-response", "#/paths/~1metrics/head/responses"),
    ("operation-4xx-response", "#/paths/~1api~1v1~1openapi.json/head/responses"),
    ("operation-4xx-response", "#/paths/~1api~1v1~1manifest/get/responses"),
    ("operation-4xx-response", "#/paths/~1api~1v1~1manifest/head/responses"),
    ("operation-4xx-response", "#/paths/~1playground/get/responses"),
    ("operation-4xx-response", "#/paths/~1playground/head/responses"),
}
EXPECTED_SPECTRAL_WARNINGS = {("info-contact", "info")}
SPECTRAL_SEVERITIES = {0: "error", 1: "warn", 2: "info", 3: "hint"}


def lint(tool: str, *args: str, cwd: Path) -> Any:
    executable = BIN / tool
    assert executable.exists(), f"{executable} is missing: run tools/openapi-lint.sh (make test does)"
    run = subprocess.run(
        [str(executable), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **QUIET},
        timeout=120,
        check=False,
    )
    try:
        return json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{tool} exited {run.returncode} without a JSON report:\n{run.stdout}\n{run.stderr}")


@pytest.fixture
async def document_file(gateway, tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(await asyncio.to_thread(served_document, gateway.url), indent=1))
    return path


async def test_redocly_finds_no_error_and_only_the_known_warnings(document_file: Path) -> None:
    report = await asyncio.to_thread(
        lint, "redocly", "lint", document_file.name, "--format=json", cwd=document_file.parent
    )

    problems = {(p["severity"], p["ruleId"], p["location"][0]["pointer"]) for p in report["problems"]}
    assert report["totals"]["errors"] == 0, problems
    assert {(rule, pointer) for severity, rule, pointer in problems if severity == "warn"} == EXPECTED_REDOCLY_WARNINGS
    assert {severity for severity, _, _ in problems} <= {"warn"}


async def test_spectral_finds_no_error_and_only_the_known_warnings(document_file: Path) -> None:
    report = await asyncio.to_thread(
        lint,
        "spectral",
        "lint",
        document_file.name,
        "--ruleset",
        str(SPECTRAL_RULESET),
        "-f",
        "json",
        cwd=document_file.parent,
    )

    problems = {(SPECTRAL_SEVERITIES[p["severity"]], p["code"], ".".join(map(str, p["path"]))) for p in report}
    assert not [p for p in problems if p[0] == "error"], problems
    assert {(code, path) for severity, code, path in problems if severity == "warn"} == EXPECTED_SPECTRAL_WARNINGS
