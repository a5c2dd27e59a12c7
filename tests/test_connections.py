"""Every tier's Redis client rides out a Redis restart and waits for a connection instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from concur_postback.connections import SentinelTarget, async_client, sentinel_target, sync_client
from concur_postback.embedded import EmbeddedRedis
from concur_postback.errors import ConfigurationError


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


def test_more_concurrent_commands_than_connections_wait_their_turn(redis_url: str) -> None:
    async def scenario() -> int:
        client = async_client(redis_url, connect_timeout=1, max_connections=4)
        try:
            replies = await asyncio.gather(*(client.blpop([f"empty{n}"], 0.05) for n in range(40)))
            return len(replies)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == 40


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
