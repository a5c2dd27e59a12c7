"""Every tier's Redis client rides out a Redis restart and waits for a connection instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import redis.sentinel

from concur_postback.connections import (
    DEMOTED,
    PrimaryConnection,
    SentinelTarget,
    async_client,
    sentinel_target,
    sync_client,
)
from concur_postback.embedded import EmbeddedRedis
from concur_postback.errors import ConfigurationError
from tests.sentinel import MASTER, SentinelProcess, in_sync, wait_until


def test_clients_reconnect_after_redis_restarts(tmp_path: Path) -> None:
    """Without a retry policy, the first command on each pooled connection fails after a restart."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    sync = sync_client(server.url, connect_timeout=1)

    async def scenario() -> list[object]:
        client = async_client(server.url, connect_timeout=1)
        await asyncio.gather(*(client.set(f"k{n}", n) for n in range(8)))  # several pooled connections
        sync.set("s", 1)
        server.kill()
        server.start()  # AOF: the data is back, every pooled socket is dead
        try:
            return [*(await asyncio.gather(*(client.get(f"k{n}") for n in range(8)))), sync.get("s")]
        finally:
            await client.aclose()

    try:
        assert asyncio.run(scenario()) == [str(n).encode() for n in range(8)] + [b"1"]
    finally:
        sync.close()
        server.stop()


def _at_most_four_connections_serve_forty_commands(url: str, primary: redis.Redis) -> tuple[int, int]:
    """(replies, connections our client held on the primary) for 40 concurrent commands over 4."""

    async def scenario() -> int:
        client = async_client(url, connect_timeout=1, max_connections=4)
        try:
            replies = await asyncio.gather(*(client.blpop([f"empty{n}"], 0.05) for n in range(40)))
            return len(replies)
        finally:
            await client.aclose()

    def blocked_pops() -> int:
        listed = primary.execute_command("CLIENT", "LIST", "TYPE", "normal").decode().splitlines()
        return sum("cmd=blpop" in line for line in listed)  # only our client pops

    peak = 0

    async def watched() -> int:
        nonlocal peak
        task = asyncio.ensure_future(scenario())
        while not task.done():
            peak = max(peak, await asyncio.to_thread(blocked_pops))
        return await task

    return asyncio.run(watched()), peak


def test_more_concurrent_commands_than_connections_wait_their_turn(redis_url: str) -> None:
    primary = redis.Redis.from_url(redis_url)
    replies, peak = _at_most_four_connections_serve_forty_commands(redis_url, primary)
    primary.close()
    assert replies == 40
    assert 1 <= peak <= 4


def test_through_sentinels_too_commands_wait_for_one_of_max_connections(tmp_path: Path) -> None:
    primary = EmbeddedRedis(tmp_path / "a").start()
    sentinel = SentinelProcess(tmp_path / "sentinel", primary.port, quorum=1)
    client = redis.Redis(port=primary.port)
    try:
        wait_until(lambda: sentinel.primary_port() == primary.port, 30, "set up")
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{MASTER}/0"
        replies, peak = _at_most_four_connections_serve_forty_commands(url, client)
        assert replies == 40  # redis-py's own Sentinel pool raises "Too many connections" instead
        assert 1 <= peak <= 4
    finally:
        client.close()
        sentinel.stop()
        primary.stop()


def test_a_sentinel_url_names_the_sentinels_the_primary_and_its_credentials() -> None:
    target = sentinel_target(
        "rediss+sentinel://app:s%40cret@s1:26379, [::1]:26380/main-redis/2?sentinel_password=x"
    )
    assert target == SentinelTarget(
        sentinels=[("s1", 26379), ("::1", 26380)],
        master="main-redis",
        db=2,
        username="app",
        password="s@cret",
        sentinel_password="x",
        tls=True,
    )
    assert sentinel_target("redis://h:6379/0") is None
    for bad in (
        "redis+sentinel://:pw@s1/main",
        "redis+sentinel://:pw@s1:26379/",
        "redis+sentinel://s1:1/m/x",
    ):
        with pytest.raises(ConfigurationError) as caught:
            sentinel_target(bad)
        assert "pw" not in str(caught.value)


def test_a_client_on_a_primary_that_was_demoted_follows_the_sentinels(tmp_path: Path) -> None:
    """After a failover the old primary refuses a script's write from inside the script, a reply
    redis-py does not read as READONLY; the clients must still find the new primary by themselves."""
    primary = EmbeddedRedis(tmp_path / "a").start()
    follow = ("--replicaof", "127.0.0.1", str(primary.port))
    replica = EmbeddedRedis(tmp_path / "b", extra_args=follow).start()
    sentinel = SentinelProcess(tmp_path / "sentinel", primary.port, quorum=1)
    write = "return redis.call('INCR', KEYS[1])"
    try:
        wait_until(lambda: in_sync(replica) and sentinel.primary_port() == primary.port, 30, "set up")
        wait_until(lambda: bool(sentinel.client.execute_command("SENTINEL", "REPLICAS", MASTER)), 30, "seen")
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{MASTER}/0"
        client = sync_client(url, connect_timeout=1)

        def fail_over() -> None:
            sentinel.client.execute_command("SENTINEL", "FAILOVER", MASTER)
            wait_until(
                lambda: sentinel.primary_port() == replica.port and in_sync(primary), 30, "failed over"
            )

        async def scenario() -> list[object]:
            pooled = async_client(url, connect_timeout=1)
            try:
                before = [client.eval(write, 1, "k"), await pooled.eval(write, 1, "k")]
                await asyncio.to_thread(fail_over)
                # both pooled connections still lead to the old primary: each is replaced, by itself
                return [*before, client.eval(write, 1, "k"), await pooled.eval(write, 1, "k")]
            finally:
                await pooled.aclose()

        assert asyncio.run(scenario()) == [1, 2, 3, 4]
        client.close()
    finally:
        sentinel.stop()
        replica.stop()
        primary.stop()


class StaleSentinels:
    """Sentinels that still name a node that has become a replica (for a moment, during a failover)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def discover_master(self, service_name: str) -> tuple[str, int]:
        return "127.0.0.1", self.port


def test_a_script_refused_by_a_demoted_primary_drops_the_connection(tmp_path: Path) -> None:
    """Redis 6 refuses a script's write on a replica with a plain error reply ("Error running script
    ... -READONLY"), which redis-py does not take for READONLY: the connection must let go all the
    same, so that the retry asks the Sentinels again instead of failing every call on it."""
    primary = EmbeddedRedis(tmp_path / "a").start()
    replica = EmbeddedRedis(
        tmp_path / "b", extra_args=("--replicaof", "127.0.0.1", str(primary.port))
    ).start()
    try:
        pool = redis.sentinel.SentinelConnectionPool(
            MASTER, StaleSentinels(replica.port), connection_class=PrimaryConnection
        )
        client = redis.Redis(connection_pool=pool)
        for call in (lambda: client.eval("return redis.call('INCR', KEYS[1])", 1, "k"),
                     lambda: client.execute_command("WAIT", 1, 10)):  # fmt: skip
            with pytest.raises(redis.exceptions.ConnectionError, match=DEMOTED):
                call()
        assert pool._created_connections == 1 and not pool._in_use_connections  # let go, not kept
        client.close()
    finally:
        replica.stop()
        primary.stop()
