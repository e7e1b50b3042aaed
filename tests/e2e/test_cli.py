"""The `webhookd` command as an operator meets it: dev prints working commands, serve refuses to
start on unreachable dependencies, token mints what the server accepts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import sys
import tempfile
from pathlib import Path

import grpc
import jwt
import psutil
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from ports import free_port
from support import JWT_SECRET, make_caller

# Each test runs the `webhookd` command as a process of its own.
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
WEBHOOKD = str(BIN / "webhookd")


def dev_environment(data_dir: str, **settings: str) -> dict[str, str]:
    """The environment of a `webhookd dev` on embedded backends in `data_dir` and free loopback ports,
    with `settings` on top."""
    env = os.environ | {
        "WEBHOOKD_DATA_DIR": data_dir,
        "WEBHOOKD_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "WEBHOOKD_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        **settings,
    }
    env.pop("VAULT_ADDR", None)
    env.pop("WEBHOOKD_DATABASE_URL", None)
    return env


def serve_environment(backends, database_url: str, **settings: str) -> dict[str, str]:
    """The environment of `webhookd serve` or `server` on the session's OpenBao and `database_url`,
    with `settings` on top."""
    return os.environ | {
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        **settings,
    }


async def start_dev_as_a_job(env: dict[str, str], *, stderr: int) -> asyncio.subprocess.Process:
    """`webhookd dev` in a process group of its own, as a shell's job is: a signal sent to the group
    reaches every process in it."""
    return await asyncio.create_subprocess_exec(
        WEBHOOKD, "dev", env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True
    )


def webhookd_children(process: psutil.Process) -> list[psutil.Process]:
    """`process`'s server and worker processes. Its other children (initdb, pg_ctl, bao) come and go,
    and one that just ended is a zombie until reaped, whose command line cannot be read."""
    found = []
    for child in process.children():
        with contextlib.suppress(psutil.Error):
            if "webhookd.cli" in " ".join(child.cmdline()):
                found.append(child)
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def run(*args: str, env: dict[str, str], within: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_serve_refuses_to_start_when_the_database_is_unreachable() -> None:
    env = os.environ | {
        "WEBHOOKD_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        "WEBHOOKD_JWT_SECRET": "x" * 40,
        "VAULT_ADDR": f"http://127.0.0.1:{free_port()}",
        "VAULT_TOKEN": "unused",
    }
    code, _, err = await run(WEBHOOKD, "serve", env=env)
    assert code == 2
    assert "cannot start" in err and "unreachable" in err


async def test_token_mints_a_jwt_with_the_requested_claims() -> None:
    env = os.environ | {"WEBHOOKD_JWT_SECRET": "y" * 40}
    code, out, _ = await run(WEBHOOKD, "token", "--tenant", "tnt_a", "--sub", "p1", "--app", "app_1", env=env)
    claims = jwt.decode(out.strip(), "y" * 40, algorithms=["HS256"])
    assert code == 0
    assert (claims["tenant_id"], claims["sub"], claims["app_id"]) == ("tnt_a", "p1", "app_1")


async def test_dev_prints_a_token_and_grpcurl_commands_that_work_as_printed() -> None:
    """As a new user runs them: pasted into a shell in the same folder, whose PATH has no `.venv/bin`
    (`make run` installs grpcurl there and nowhere else)."""
    with tempfile.TemporaryDirectory(prefix="webhookd-cli-") as data_dir:
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN)
        # The printed token must carry every claim the server checks.
        env = dev_environment(data_dir, WEBHOOKD_JWT_ISSUER="me", WEBHOOKD_JWT_AUDIENCE="you", PATH=path)
        env.pop("VIRTUAL_ENV", None)
        process = await asyncio.create_subprocess_exec(
            WEBHOOKD, "dev", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        assert process.stdout is not None
        banner: list[str] = []
        try:
            async with asyncio.timeout(90):
                while not any("grpcurl" in line and "ListWebhooks" in line for line in banner):
                    line = (await process.stdout.readline()).decode()
                    assert line, "webhookd dev exited before printing its banner"
                    banner.append(line.rstrip("\n"))
            token = next(re.sub(r".*TOKEN=", "", line) for line in banner if "export TOKEN=" in line)
            # Join the banner's continued lines, then run each command as printed.
            tried = "\n".join(banner[banner.index("Try it:") + 1 :]).replace("\\\n", " ")
            commands = [line.strip() for line in tried.splitlines() if line.strip()]
            outputs = []
            for command in commands:
                shell = f"export TOKEN={shlex.quote(token)}; {command}"
                code, out, err = await run("bash", "-c", shell, env=env)
                assert code == 0, f"{shell}\n{err}"
                outputs.append(out)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    assert len(outputs) == 3
    assert "cpod.integration.v1.WebhookService" in outputs[0]
    assert '"signingSecret"' in outputs[1] or '"signing_secret"' in outputs[1]
    assert "demo" in outputs[2]
    assert process.returncode == 0


async def test_ctrl_c_while_dev_starts_stops_everything_quietly() -> None:
    """Ctrl-C in a terminal signals the whole foreground process group. Pressed while `make run` is
    still starting, it is a stop, not a failure: no `cannot start` line, no tracebacks, exit 0, and
    nothing left running."""
    with tempfile.TemporaryDirectory(prefix="webhookd-cli-") as data_dir:
        process = await start_dev_as_a_job(dev_environment(data_dir), stderr=asyncio.subprocess.PIPE)
        supervisor = psutil.Process(process.pid)
        children: list[psutil.Process] = []
        # Press it once the first child process is spawned and still starting.
        for _ in range(900):
            children = webhookd_children(supervisor)
            if children:
                break
            await asyncio.sleep(0.1)
        assert children, "webhookd dev spawned no child process"
        os.killpg(process.pid, signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        postmaster = Path(data_dir) / "postgres" / "postmaster.pid"
        left = [c.pid for c in children if alive(c)]

    said = err.decode()
    assert "cannot start" not in said and "Traceback" not in said, said[-3000:]
    assert "webhookd dev is running" not in out.decode()
    assert process.returncode == 0
    assert left == []
    assert not postmaster.exists()


async def test_dev_stops_everything_it_started_when_its_terminal_closes() -> None:
    """A shell whose terminal closes sends SIGHUP to its jobs: `make run` must not leave the embedded
    PostgreSQL (a daemon in a session of its own) and OpenBao (for which SIGHUP is a reload) behind."""
    with tempfile.TemporaryDirectory(prefix="webhookd-cli-") as data_dir:
        process = await start_dev_as_a_job(dev_environment(data_dir), stderr=asyncio.subprocess.DEVNULL)
        assert process.stdout is not None
        async with asyncio.timeout(90):
            while b"webhookd dev is running" not in (line := await process.stdout.readline()):
                assert line, "webhookd dev exited before printing its banner"
        started = psutil.Process(process.pid).children(recursive=True)
        postmaster = Path(data_dir) / "postgres" / "postmaster.pid"
        database = psutil.Process(int(postmaster.read_text().split()[0]))
        os.killpg(process.pid, signal.SIGHUP)
        await asyncio.wait_for(process.communicate(), 60)
        left = [p for p in [*started, database] if alive(p)]
        for stray in left:  # not to outlive the test, which fails below
            with contextlib.suppress(psutil.NoSuchProcess):
                stray.send_signal(signal.SIGINT if stray is database else signal.SIGKILL)
        assert [p.pid for p in left] == []
    assert process.returncode == 0


async def test_dev_stops_what_it_started_and_exits_2_when_its_http_port_is_taken() -> None:
    with tempfile.TemporaryDirectory(prefix="webhookd-cli-") as data_dir, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = dev_environment(data_dir, WEBHOOKD_HTTP_ADDR=f"127.0.0.1:{taken.getsockname()[1]}")
        code, out, err = await run(WEBHOOKD, "dev", env=env, within=90)
        postmaster = Path(data_dir) / "postgres" / "postmaster.pid"

        lines = [line for line in err.splitlines() if line.startswith("webhookd:")]
        assert code == 2
        assert len(lines) == 1 and lines[0].startswith("webhookd: cannot start: cannot listen on 127.0.0.1:"), err
        assert "webhookd dev is running" not in out
        # The embedded PostgreSQL it started was stopped on the way out.
        assert not postmaster.exists()


@pytest.mark.parametrize("grpc_host", ["127.0.0.1", "0.0.0.0"], ids=["same-host", "wildcard"])
async def test_serve_refuses_one_port_for_grpc_and_http_in_one_line(backends, own_database, grpc_host) -> None:
    # Both would bind (the servers share their ports through SO_REUSEPORT), and each protocol's
    # connections would be spread over both protocols' servers.
    port = free_port()
    env = serve_environment(
        backends,
        own_database,
        WEBHOOKD_JWT_SECRET="x" * 40,
        WEBHOOKD_GRPC_ADDR=f"{grpc_host}:{port}",
        WEBHOOKD_HTTP_ADDR=f"127.0.0.1:{port}",
    )
    code, out, err = await run(WEBHOOKD, "serve", env=env, within=90)

    lines = [line for line in err.splitlines() if line.startswith("webhookd:")]
    assert code == 2, err
    assert lines == [
        f"webhookd: cannot start: cannot listen on 127.0.0.1:{port} (WEBHOOKD_HTTP_ADDR):"
        " WEBHOOKD_GRPC_ADDR names the same port"
    ], err
    assert "serving" not in out


@pytest.mark.parametrize("public_url", [None, "https://hooks.example.com/in"], ids=["default", "set"])
async def test_a_server_alone_on_http_port_0_makes_callback_urls_with_the_port_it_drew(
    backends, own_database, public_url
) -> None:
    env = serve_environment(
        backends,
        own_database,
        WEBHOOKD_JWT_SECRET=JWT_SECRET,
        WEBHOOKD_GRPC_ADDR="127.0.0.1:0",
        WEBHOOKD_HTTP_ADDR="127.0.0.1:0",
    )
    env.pop("WEBHOOKD_PUBLIC_URL", None)
    if public_url is not None:
        env["WEBHOOKD_PUBLIC_URL"] = public_url
    process = await asyncio.create_subprocess_exec(
        WEBHOOKD, "server", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        ready = re.search(r"gRPC on (\S+), HTTP on port (\d+)", line)
        assert ready, line
        async with grpc.aio.insecure_channel(ready[1]) as channel:
            caller = make_caller(channel)
            created = await caller.CreateWebhook(
                pb.CreateWebhookRequest(
                    webhook=wpb.Webhook(name="in", direction=wpb.DIRECTION_INBOUND, event_types=["order.*"])
                )
            )
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 60)

    base = public_url or f"http://127.0.0.1:{ready[2]}"
    assert created.webhook.url == f"{base}/api/v1/integration/inbound/{created.webhook.id}"


async def test_serve_refuses_a_jwt_key_its_servers_would_refuse_in_one_line_before_starting_anything() -> None:
    env = os.environ | {
        # Nothing answers here: the key must be judged before the backends are asked.
        "WEBHOOKD_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        "VAULT_ADDR": f"http://127.0.0.1:{free_port()}",
        "VAULT_TOKEN": "unused",
        "WEBHOOKD_JWT_SECRET": "too short",
    }
    code, _, err = await run(WEBHOOKD, "serve", env=env)

    assert code == 2
    assert err.splitlines() == ["webhookd: WEBHOOKD_JWT_SECRET must be at least 32 bytes"]


async def test_migrate_says_in_one_line_that_the_database_is_unreachable() -> None:
    env = os.environ | {"WEBHOOKD_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"}
    code, out, err = await run(WEBHOOKD, "migrate", env=env)

    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("webhookd: cannot migrate: database unreachable: "), err


@pytest.mark.parametrize("command", ["dev", "serve", "migrate"])
async def test_a_data_dir_that_cannot_hold_the_embedded_backends_is_one_line(command: str, tmp_path: Path) -> None:
    """WEBHOOKD_DATA_DIR naming a file (or anything a directory cannot be made at), with nothing else
    configured: the embedded PostgreSQL, OpenBao and dev JWT secret have nowhere to go."""
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    env = dev_environment(str(occupied), WEBHOOKD_JWT_SECRET="s" * 32 if command == "serve" else "")

    code, _, err = await run(WEBHOOKD, command, env=env)

    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("webhookd: ") and "WEBHOOKD_DATA_DIR" in err and str(occupied) in err, err
