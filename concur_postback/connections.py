"""Redis clients for every tier, built in one place so that all of them ride out a Redis restart.

redis-py's ``from_url`` gives connections no retry policy: after a restart or a failover, the first
command on every pooled connection fails with "Connection closed by server". These clients retry
connection errors and timeouts a few times with jittered backoff (about 1.5 s in all), reconnecting
in between; an outage longer than that still surfaces (503 at the web tier, a re-run job at the
workers).

The asynchronous client uses a *blocking* pool: a batch of 100 notifications processed at once would
otherwise exceed redis-py's default of 100 connections and fail with MaxConnectionsError instead of
waiting a moment for a free connection.
"""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

RETRIES = 5
BACKOFF = {"base": 0.05, "cap": 1.0}  # 50, 100, 200, 400, 800 ms at most
ASYNC_MAX_CONNECTIONS = 64


def sync_client(url: str, *, connect_timeout: float, socket_timeout: float | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        retry=Retry(ExponentialWithJitterBackoff(**BACKOFF), RETRIES),
    )


def async_client(
    url: str, *, connect_timeout: float, max_connections: int = ASYNC_MAX_CONNECTIONS
) -> redis.asyncio.Redis:
    """No per-reply socket timeout (a measurable cost on the ack path): callers bound whole batches."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,  # wait for a free connection; the caller's own deadline bounds the wait
        socket_connect_timeout=connect_timeout,
        retry=AsyncRetry(ExponentialWithJitterBackoff(**BACKOFF), RETRIES),
    )
    return redis.asyncio.Redis.from_pool(pool)  # closes the pool with the client


def text(reply: object) -> str:
    """A Redis reply as text: clients here return bytes (payloads are binary, so no decode_responses)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)
