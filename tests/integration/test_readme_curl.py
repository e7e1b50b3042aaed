"""The README's curl examples (REST, and an inbound webhook called as its sender would) run as
printed, against the real gateway: only the base URL (http://127.0.0.1:8080) is swapped for the
test gateway's, and $TOKEN is a minted token."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from support import JWT_SECRET, new_tenant_id
from webhookd.auth.tokens import mint

README = Path(__file__).resolve().parents[2] / "README.md"
# The sections whose ```bash blocks run as they stand (others continue these, with $ID and placeholders).
HEADINGS = ("## REST with curl", "## Inbound webhooks")
PRINTED_BASE_URL = "http://127.0.0.1:8080"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.slow


def curl_blocks(readme: str, heading: str) -> list[str]:
    """The ```bash blocks under `heading`, up to the next second-level heading."""
    start = readme.find(f"\n{heading}\n")
    if start < 0:
        return []
    section = readme[start + len(heading) + 2 :]
    end = re.search(r"^## ", section, re.MULTILINE)
    return BASH_BLOCK.findall(section[: end.start()] if end else section)


def curl_commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if re.match(r"\s*(\S+=\$\()?curl\b", line)]


def blocks_or_skip() -> list[str]:
    if not README.exists():
        pytest.skip("no README.md beside the tests")
    readme = README.read_text()
    blocks = []
    for heading in HEADINGS:
        found = curl_blocks(readme, heading)
        assert found, f"README.md has no ```bash block under {heading!r}"
        blocks += found
    return blocks


def test_every_printed_curl_fails_on_http_errors() -> None:
    # Exit status 0 then means HTTP success: curl exits 22 on a 4xx/5xx with --fail-with-body.
    commands = [command for block in blocks_or_skip() for command in curl_commands(block)]
    assert commands
    for command in commands:
        assert "--fail-with-body" in command, command


async def test_readme_curl_examples_run_as_printed(gateway, tmp_path: Path) -> None:
    assert shutil.which("curl"), "curl is needed to run the README's examples"
    token = mint(JWT_SECRET, tenant_id=new_tenant_id(), subject="person_readme")
    env = {**os.environ, "TOKEN": token}

    for block in blocks_or_skip():
        script = block.replace(PRINTED_BASE_URL, gateway.url)
        # Stop at the first failing command and name it; the block's variables carry across its lines.
        guarded = "set -eo pipefail\ntrap 'echo \"failed: $BASH_COMMAND\" >&2' ERR\n" + script
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            guarded,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)

        assert process.returncode == 0, f"{stderr.decode()}\n{stdout.decode()[-2000:]}"
        assert b'"error"' not in stdout
