"""Redis Sentinel for tests: real `redis-server --sentinel` processes beside embedded Redis servers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from concur_postback.embedded import EmbeddedRedis, free_port, redis_server_binary

MASTER = "concur"


class SentinelProcess:
    """`redis-server <conf> --sentinel` watching the primary (``quorum`` of them decide)."""

    def __init__(self, directory: Path, primary_port: int, quorum: int = 2) -> None:
        directory.mkdir(parents=True)
        self.port = free_port()
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def primary_port(self) -> int | None:
        try:
            address = self.client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        except RedisError:
            return None
        return int(address[1]) if address else None

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


def in_sync(replica: EmbeddedRedis) -> bool:
    try:
        info = Redis.from_url(replica.url, socket_timeout=1).info("replication")
    except RedisError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll another process's state (there is no event to await across processes); return how long."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - began
