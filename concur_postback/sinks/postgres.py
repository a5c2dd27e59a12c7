"""`postgresql://user:pass@host:5432/db?table=NAME&pool_size=N` — one row per event in a PostgreSQL table.

Also `postgres://`. ``table`` (default ``concur_events``, optionally ``schema.table``; letters, digits
and underscores, folded to lower case as SQL folds unquoted names) and ``pool_size`` are this sink's
own parameters and are removed from the URL before connecting; every other parameter goes to libpq
as usual (``sslmode``, ``connect_timeout``, ...). ``connect_timeout`` defaults to 5 s, so a
connection attempt (or a wait for a free pooled connection) fails before SINK_TIMEOUT_SECONDS.

At start-up ``from_url`` connects once (synchronously) and creates the table and its indexes if they
do not exist: an unreachable server or a table that cannot be created stops the worker then, not at
the first event. Delivery is ``INSERT ... ON CONFLICT (id) DO NOTHING``: the same id is the same
change, so a redelivered event changes nothing. The columns are in ``postgres_table``.

``pool_size`` (default 4) is the most connections one worker process holds: a worker delivers a
batch of notifications at once, and on one connection every insert (and its commit) waits for the
one before. The pool (psycopg_pool, autocommit connections) is made inside the running event loop,
after one connection attempt of our own has shown the server reachable; when no connection comes
within ``connect_timeout`` and that attempt fails, the pool is dropped. While the server stays
unreachable each delivery then fails at once (asked again at most once a second) instead of waiting
for a pool whose reconnection delays keep growing, and the first delivery after it answers again
gets a new pool. A connection found broken when it is used (server restarted, backend terminated,
idle timeout) makes the pool check all its idle ones, and the insert is retried once at once — safe,
since the insert is idempotent; if it fails again, the delivery fails with a retryable
``SinkError``. A table dropped while running is created again the same way.

Failures: connection and server-state errors are retryable; ``DataError`` and ``IntegrityError``
(the event cannot be stored however often it is tried, e.g. an invalid timestamp or a ``\\u0000``
in a string, which jsonb refuses) are permanent. Messages and ``name`` never contain the password.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event
from concur_postback.sinks.credentials import MASK, scrub, userinfo
from concur_postback.sinks.postgres_table import DEFAULT_TABLE, Table, parse_table

SCHEMES = ("postgresql", "postgres")
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "concur-postback"
DEFAULT_POOL_SIZE = 4
MAX_POOL_SIZE = 100
OWN_PARAMETERS = ("table", "pool_size")  # read by the sink, not passed to libpq
RECHECK_SECONDS = 1.0  # while unreachable, how long one failed attempt answers for every delivery


Connection = psycopg.AsyncConnection[TupleRow]
Pool = AsyncConnectionPool[Connection]

log = structlog.get_logger("concur_postback.sinks.postgres")


class PostgresSink:
    """Stores each event as one row of ``table``; see the module docstring."""

    def __init__(
        self,
        conninfo: str,
        table: tuple[str, ...],
        name: str,
        secrets: tuple[str, ...] = (),
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self._conninfo = conninfo  # holds the password: never log it
        self.pool_size = pool_size
        self._name = name
        self._secrets = secrets
        self._kwargs = _connect_kwargs(conninfo)
        self._timeout = _connect_timeout(conninfo, self._kwargs)
        self._table = Table(table)
        self._schema_ready = False
        self._pool: Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()  # guards making a pool and asking whether the server answers
        self._schema_lock = asyncio.Lock()
        self._unreachable: tuple[float, str] | None = None  # when a connection attempt last failed, why
        self._closing: set[asyncio.Task[None]] = set()
        self._checking: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def table(self) -> tuple[str, ...]:
        """("name",) or ("schema", "name"), validated."""
        return self._table.parts

    @property
    def qualified_table(self) -> str:
        return self._table.qualified

    def __repr__(self) -> str:
        return f"PostgresSink({self._name!r})"

    @classmethod
    def from_url(cls, url: str, *, check: bool = True) -> PostgresSink:
        """Build the sink; with ``check``, connect now and create the table (ConfigurationError if not)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in SCHEMES:
            raise ConfigurationError(
                f"postgres sink needs a postgresql:// or postgres:// URL, got {parts.scheme!r}"
            )
        # The query is split by hand, not decoded and re-encoded: libpq, not a form decoder, reads the rest.
        query = [(unquote(item.partition("=")[0]), item) for item in parts.query.split("&") if item]
        own = {name: [unquote(item.partition("=")[2]) for key, item in query if key == name]
               for name in OWN_PARAMETERS}  # fmt: skip
        rest = [(key, item) for key, item in query if key not in OWN_PARAMETERS]
        raw = [parts.password or ""] + [item.partition("=")[2] for key, item in rest if key == "password"]
        secrets = tuple({secret for value in raw for secret in (value, unquote(value)) if secret})
        for key, values in own.items():
            if len(values) > 1:
                raise ConfigurationError(f"postgres sink: give `{key}=` at most once")
        table = parse_table(own["table"][0] if own["table"] else DEFAULT_TABLE)
        pool_size = parse_pool_size(own["pool_size"][0]) if own["pool_size"] else DEFAULT_POOL_SIZE
        conninfo = urlunsplit(parts._replace(query="&".join(item for _, item in rest)))
        name = _safe_name(parts, rest, table)
        try:
            conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise ConfigurationError(f"postgres sink {name}: invalid URL: {scrub(exc, secrets)}") from exc
        sink = cls(conninfo, table, name, secrets, pool_size)
        if check:
            sink.check()
        return sink

    def check(self) -> None:
        """Connect synchronously and create the table and indexes if missing.

        A server that answers and refuses (credentials, database, table) is a ConfigurationError. One
        that cannot be reached is only logged: a worker restarted during a database outage still
        fetches from Concur while tokens are fresh, and its deliveries wait and retry."""
        prefix = f"postgres sink {self._name}"
        try:
            conn = psycopg.connect(self._conninfo, **self._kwargs)
        except psycopg.Error as exc:
            if lasting_refusal(str(exc)):
                raise ConfigurationError(f"{prefix}: cannot connect: {self._reason(exc)}") from exc
            log.warning("sink.unreachable_at_start", sink=self._name, reason=self._reason(exc))
            return
        try:
            with conn:  # commits at the end
                conn.execute(self._table.schema())
        except psycopg.errors.UndefinedColumn as exc:
            table = self.qualified_table
            raise ConfigurationError(
                f"{prefix}: table {table} exists with other columns: {self._reason(exc)}"
            ) from exc
        except psycopg.Error as exc:
            table = self.qualified_table
            raise ConfigurationError(f"{prefix}: cannot create table {table}: {self._reason(exc)}") from exc
        self._schema_ready = True

    async def deliver(self, event: Event, payload: bytes) -> None:
        try:
            document = payload.decode()
        except UnicodeDecodeError as exc:
            raise SinkError(f"event {event.id}: payload is not UTF-8 JSON", permanent=True) from exc
        params = self._table.row(event, document)
        for attempt in (1, 2):
            pool = await self._connections()
            try:
                async with pool.connection(timeout=self._timeout) as conn:
                    if not self._schema_ready:
                        await self._create_table(conn)
                    await conn.execute(self._table.insert, params)
            except (PoolTimeout, PoolClosed):  # no connection in time, or the pool was dropped meanwhile
                raise SinkError(f"cannot connect: {await self._lost(pool)}") from None
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.errors.UndefinedTable):
                    self._schema_ready = False
                elif isinstance(exc, psycopg.OperationalError):
                    await self._check(pool)
                retry = isinstance(exc, psycopg.OperationalError | psycopg.errors.UndefinedTable)
                if retry and attempt == 1:
                    log.info(
                        "sink.postgres.retry", sink=self._name, event_id=event.id, reason=self._reason(exc)
                    )
                    continue
                raise self._error(event, exc) from exc
            return

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            self._close_later(pool)
        if self._closing:
            await asyncio.gather(*self._closing)

    async def _connections(self) -> Pool:
        """This event loop's pool, made (after one connection attempt of our own) if there is none."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A pool (and its locks) belongs to the loop it was made in; one of a finished loop
            # (asyncio.run per call) is left to the garbage collector with its connections.
            self._loop, self._pool, self._closing, self._checking = loop, None, set(), None
            self._lock, self._schema_lock = asyncio.Lock(), asyncio.Lock()
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                if (reason := await self._why_unreachable()) is not None:
                    raise SinkError(f"cannot connect: {reason}")
                pool: Pool = AsyncConnectionPool(
                    self._conninfo,
                    kwargs={"autocommit": True, **self._kwargs},
                    min_size=1,
                    max_size=self.pool_size,
                    open=False,
                    name=f"sink-{self.qualified_table}",
                )
                try:  # the first connection made before any delivery asks (else each asking one adds one)
                    await pool.open(wait=True, timeout=self._timeout)
                except PoolTimeout:  # the pool closed itself
                    raise SinkError(f"cannot connect: no connection within {self._timeout:g} s") from None
                self._pool = pool
            return self._pool

    async def _lost(self, pool: Pool) -> str:
        """Why no connection came: the pool only says it timed out. If the server is unreachable, the
        pool is dropped: its reconnection attempts would go on with growing delays after it is back."""
        async with self._lock:
            reason = await self._why_unreachable()
            if reason is None:
                return f"no free connection within {self._timeout:g} s (pool_size={self.pool_size})"
            if self._pool is pool:
                self._pool = None
                self._close_later(pool)
            return reason

    async def _why_unreachable(self) -> str | None:
        """None if a connection can be made now, else why not. Called holding ``_lock``; a failure
        answers for RECHECK_SECONDS, so a batch of deliveries tries once, not once each."""
        if self._unreachable is not None and time.monotonic() - self._unreachable[0] < RECHECK_SECONDS:
            return self._unreachable[1]
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs)
        except psycopg.Error as exc:
            self._unreachable = (time.monotonic(), self._reason(exc))
            return self._unreachable[1]
        await conn.close()
        self._unreachable = None
        return None

    async def _check(self, pool: Pool) -> None:
        """Have the pool test its idle connections: a restarted server broke all of them, not only the
        one that failed. One check at a time, finished even if the delivery waiting for it is not."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(pool.check())
        await asyncio.shield(self._checking)

    def _close_later(self, pool: Pool) -> None:
        """Close ``pool`` without waiting here: closing waits for connection attempts in progress."""
        task = asyncio.ensure_future(pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _create_table(self, conn: Connection) -> None:
        async with self._schema_lock:  # one at a time: the first creates it, the others find it there
            if self._schema_ready:
                return
            try:
                await conn.execute(self._table.schema())  # one execute: atomic (one implicit transaction)
            except psycopg.Error as exc:
                raise SinkError(f"cannot create table {self.qualified_table}: {self._reason(exc)}") from exc
            self._schema_ready = True

    def _error(self, event: Event, exc: psycopg.Error) -> SinkError:
        permanent = isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
        where = f"event {event.id} not stored in {self.qualified_table}"
        return SinkError(f"{where}: {self._reason(exc)}", permanent=permanent)

    def _reason(self, exc: psycopg.Error) -> str:
        state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        return f"{type(exc).__name__}{state}: {scrub(_message(exc), self._secrets)}"


# FATAL start-up errors that pass: the server is busy, starting, stopping or recovering.
_TRANSIENT_FATAL = ("too many clients", "starting up", "shutting down", "in recovery", "not yet accepting")


def lasting_refusal(message: str) -> bool:
    """The server answered and refused us for good: wrong user, password or database. libpq gives no
    SQLSTATE for start-up failures, so this reads the (English) message."""
    return "FATAL:" in message and not any(transient in message for transient in _TRANSIENT_FATAL)


def parse_pool_size(value: str) -> int:
    """``pool_size``: a whole number of connections, 1 to MAX_POOL_SIZE."""
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_POOL_SIZE):
        raise ConfigurationError(
            f"postgres sink: invalid pool_size={value!r}: give a whole number from 1 to {MAX_POOL_SIZE}"
        )
    return int(value)


def _connect_kwargs(conninfo: str) -> dict[str, Any]:
    given = conninfo_to_dict(conninfo)
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_SECONDS
    if "application_name" not in given:
        kwargs["application_name"] = APPLICATION_NAME
    return kwargs


def _connect_timeout(conninfo: str, kwargs: dict[str, Any]) -> float:
    """How long a delivery waits for a connection: libpq's ``connect_timeout`` (0 is "forever" to
    libpq; a delivery is bounded by SINK_TIMEOUT_SECONDS anyway, so the default stands in)."""
    given = conninfo_to_dict(conninfo).get("connect_timeout", kwargs.get("connect_timeout"))
    try:
        seconds = float(given) if given is not None else 0.0
    except ValueError:
        seconds = 0.0
    return seconds if seconds > 0 else float(DEFAULT_CONNECT_TIMEOUT_SECONDS)


def _safe_name(parts: SplitResult, query: list[tuple[str, str]], table: tuple[str, ...]) -> str:
    user = unquote(parts.username) if parts.username is not None else None
    netloc = userinfo(user, parts.password) + parts.netloc.rpartition("@")[2]
    shown = [f"password={MASK}" if key == "password" else item for key, item in query]
    shown.append("table=" + ".".join(table))
    return urlunsplit(("postgresql", netloc, parts.path, "&".join(shown), ""))


def _message(exc: psycopg.Error) -> str:
    """A server error's message and detail, without its CONTEXT (which can quote the statement)."""
    primary = exc.diag.message_primary
    if not primary:  # raised by libpq or psycopg: connection failures, NUL in a string
        return str(exc)
    detail = exc.diag.message_detail
    return f"{primary} ({detail})" if detail else primary
