"""Worker-side helpers (the pipeline fixture itself is in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.keys import LEASED_KEY


def lease(redis: Redis, *ids: str) -> None:
    """Give stored notifications a lease, as a take does (a job claims only what has one)."""
    redis.zadd(LEASED_KEY, dict.fromkeys(ids, time.time() + 300))


async def blocked_takes(client: AsyncRedis, count: int) -> None:
    """Until ``count`` takes block on the inbox (BLMOVE) in this client's database: no event says so."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    while sum(c["cmd"] == "blmove" and c["db"] == db for c in await client.client_list()) < count:
        await asyncio.sleep(0.01)


def run(redis_url: str, step: Callable[[AsyncRedis], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``step`` with an asyncio client of ``redis_url`` in a loop of its own."""

    async def main() -> Any:
        client = AsyncRedis.from_url(redis_url)
        try:
            return await step(client)
        finally:
            await client.aclose()

    return asyncio.run(main())
