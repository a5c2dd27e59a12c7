"""Redis clients for every tier, built in one place so that all of them ride out a Redis restart.

redis-py's ``from_url`` gives connections no retry policy: after a restart or a failover, the first
command on every pooled connection fails with "Connection closed by server". These clients retry
connection errors and timeouts a few times with jittered backoff (about 1.5 s in all), reconnecting
in between; an outage longer than that still surfaces (503 at the web tier, a re-run job at the
workers).

The asynchronous client uses a *blocking* pool: a batch of 100 notifications processed at once would
otherwise exceed redis-py's default of 100 connections and fail with MaxConnectionsError instead of
waiting a moment for a free connection.

``redis+sentinel://[user:pass@]host:port[,host:port…]/<master name>[/db]`` (``rediss+sentinel://``
for TLS) asks those Sentinels where the primary is, and asks again after a failover: a connection to
a primary that became a replica fails (READONLY), the retry reconnects, to the new primary. The
credentials are the data nodes'; ``?sentinel_password=`` gives the Sentinels' own, if they have one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEMOTED = "the primary it was connected to is now a replica"


def demoted(exc: ResponseError) -> bool:
    """A write refused by a replica. redis-py spots a plain READONLY reply, but not one from inside a
    script (Redis 6 wraps it: "Error running script ... -READONLY ...") nor WAIT's: a client left on
    a demoted primary (one it reached while the Sentinels still named it) would fail every script
    call for as long as that connection lives."""
    return "READONLY" in str(exc) or "WAIT cannot be used with replica" in str(exc)


class PrimaryConnection(redis.sentinel.SentinelManagedConnection):
    """A connection to the primary that notices when it is not one any more, and lets go of it."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not demoted(exc) or not self.connection_pool.is_master:
                raise
            self.disconnect()  # type: ignore[no-untyped-call]  # the next connect asks the Sentinels
            raise RedisConnectionError(DEMOTED) from None


class AsyncPrimaryConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    """`PrimaryConnection` for the asyncio clients."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not demoted(exc) or not self.connection_pool.is_master:
                raise
            await self.disconnect()
            raise RedisConnectionError(DEMOTED) from None


RETRIES = 5
BACKOFF = {"base": 0.05, "cap": 1.0}  # 50, 100, 200, 400, 800 ms at most
ASYNC_MAX_CONNECTIONS = 64


class BlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """redis-py's Sentinel pool raises "Too many connections" past ``max_connections``; this one makes
    the caller wait its turn, as the pool of a plain URL does, so a batch of a hundred commands holds
    ``max_connections`` connections whichever way the primary is found."""


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None = field(repr=False)
    sentinel_password: str | None = field(repr=False)
    tls: bool

    def node_options(self, connect_timeout: float) -> dict[str, Any]:
        options: dict[str, Any] = {"db": self.db, "socket_connect_timeout": connect_timeout, "ssl": self.tls}
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        return options

    def sentinel_options(self, connect_timeout: float) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
        }
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        return options


def sentinel_target(url: str) -> SentinelTarget | None:
    """The Sentinels and primary a ``redis+sentinel://`` URL names; None for any other URL. A malformed
    one is a ConfigurationError that never quotes the URL (it may hold a password)."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SENTINEL_SCHEMES:
        return None
    netloc, _, tail = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(
                "REDIS_URL: a redis+sentinel:// URL lists host:port, e.g. s1:26379,s2:26379"
            )
        sentinels.append((name.strip("[]"), int(port)))
    path = urlsplit("//x/" + tail)
    master, _, db = path.path.strip("/").partition("/")
    if not master or (db and not db.isdigit()):
        raise ConfigurationError(
            "REDIS_URL: a redis+sentinel:// URL names the primary, e.g. …:26379/mymaster/0"
        )
    sentinel_password = parse_qs(path.query).get("sentinel_password", [None])[0]
    return SentinelTarget(
        sentinels=sentinels,
        master=unquote(master),
        db=int(db or 0),
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=sentinel_password,
        tls=scheme.lower() == "rediss+sentinel",
    )


def sync_client(url: str, *, connect_timeout: float, socket_timeout: float | None = None) -> redis.Redis:
    retry = Retry(ExponentialWithJitterBackoff(**BACKOFF), RETRIES)
    target = sentinel_target(url)
    if target is not None:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels, sentinel_kwargs=target.sentinel_options(connect_timeout)
        )
        options = target.node_options(connect_timeout)
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master,
            socket_timeout=socket_timeout,
            retry=retry,
            connection_class=PrimaryConnection,
            **options,
        )
        return client
    return redis.Redis.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout, retry=retry
    )


def connect(settings: Settings) -> redis.Redis:
    """The synchronous client of REDIS_URL, for the worker and the commands."""
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set (use `concur-postback run` for an embedded Redis)")
    return sync_client(settings.redis_url, connect_timeout=settings.redis_timeout_seconds)


def async_client(
    url: str, *, connect_timeout: float, max_connections: int = ASYNC_MAX_CONNECTIONS
) -> redis.asyncio.Redis:
    """No per-reply socket timeout (a measurable cost on the ack path): callers bound whole batches."""
    target = sentinel_target(url)
    if target is not None:
        sentinels = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels, sentinel_kwargs=target.sentinel_options(connect_timeout)
        )
        retry = AsyncRetry(ExponentialWithJitterBackoff(**BACKOFF), RETRIES)
        primary: redis.asyncio.Redis = sentinels.master_for(
            target.master,
            connection_pool_class=BlockingSentinelPool,
            max_connections=max_connections,
            timeout=None,  # wait for a free connection; the caller's own deadline bounds the wait
            retry=retry,
            connection_class=AsyncPrimaryConnection,
            **target.node_options(connect_timeout),
        )
        return primary
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
