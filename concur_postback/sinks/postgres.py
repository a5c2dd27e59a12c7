"""`postgresql://user:pass@host:5432/db?table=NAME` — one row per event in a PostgreSQL table.

Also `postgres://`. ``table`` (default ``concur_events``, optionally ``schema.table``; letters, digits
and underscores, folded to lower case as SQL folds unquoted names) is this sink's own parameter and
is removed from the URL before connecting; every other parameter goes to libpq as usual (``sslmode``,
``connect_timeout``, ...). ``connect_timeout`` defaults to 5 s, so a connection attempt fails before
SINK_TIMEOUT_SECONDS.

At start-up ``from_url`` connects once (synchronously) and creates the table and its indexes if they
do not exist: an unreachable server or a table that cannot be created stops the worker then, not at
the first event. Delivery is ``INSERT ... ON CONFLICT (id) DO NOTHING``: the same id is the same
change, so a redelivered event changes nothing. The whole event is stored as ``event`` (jsonb); the
other columns copy the fields one queries by.

Each sink holds one autocommit connection (psycopg 3 async), opened lazily inside the running event
loop and shared by concurrent deliveries (psycopg serialises them). A connection found dead when it
is used (server restarted, backend terminated, idle timeout) is replaced and the insert retried
once at once — safe, since the insert is idempotent; if the new connection fails too, the delivery
fails with a retryable ``SinkError``. A table dropped while running is created again the same way.

Failures: connection and server-state errors are retryable; ``DataError`` and ``IntegrityError``
(the event cannot be stored however often it is tried, e.g. an invalid timestamp or a ``\\u0000``
in a string, which jsonb refuses) are permanent. Messages and ``name`` never contain the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event

SCHEMES = ("postgresql", "postgres")
DEFAULT_TABLE = "concur_events"
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "concur-postback"
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_INDEXED = ("kind", "trip_id", "received_at")
_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(column)
    for column in (
        "id", "kind", "event_type", "received_at", "fetched_at", "trip_id", "subject", "login_id", "event",
        "stored_at",
    )
)  # fmt: skip

Connection = psycopg.AsyncConnection[TupleRow]

log = structlog.get_logger("concur_postback.sinks.postgres")


class PostgresSink:
    """Stores each event as one row of ``table``; see the module docstring."""

    def __init__(
        self, conninfo: str, table: tuple[str, ...], name: str, secrets: tuple[str, ...] = ()
    ) -> None:
        self._conninfo = conninfo  # holds the password: never log it
        self.table = table  # ("name",) or ("schema", "name"), validated
        self._name = name
        self._secrets = secrets
        self._kwargs = _connect_kwargs(conninfo)
        self._identifier = sql.Identifier(*table)
        self._insert = sql.SQL(
            "INSERT INTO {}"
            " (id, kind, event_type, received_at, fetched_at, trip_id, subject, login_id, event)"
            " VALUES (%s, %s, %s, %s::timestamptz, %s::timestamptz, %s, %s, %s, %s::jsonb)"
            " ON CONFLICT (id) DO NOTHING"
        ).format(self._identifier)
        self._schema_ready = False
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def qualified_table(self) -> str:
        return ".".join(self.table)

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
        tables = [unquote(item.partition("=")[2]) for key, item in query if key == "table"]
        rest = [(key, item) for key, item in query if key != "table"]
        raw = [parts.password or ""] + [item.partition("=")[2] for key, item in rest if key == "password"]
        secrets = tuple({secret for value in raw for secret in (value, unquote(value)) if secret})
        if len(tables) > 1:
            raise ConfigurationError("postgres sink: give `table=` at most once")
        table = parse_table(tables[0] if tables else DEFAULT_TABLE)
        conninfo = urlunsplit(parts._replace(query="&".join(item for _, item in rest)))
        name = _safe_name(parts, rest, table)
        try:
            conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise ConfigurationError(f"postgres sink {name}: invalid URL: {_scrub(exc, secrets)}") from exc
        sink = cls(conninfo, table, name, secrets)
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
                conn.execute(self._schema())
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
        params = (
            event.id,
            event.kind,
            event.event_type,
            event.received_at,
            event.fetched_at,
            event.trip_id,
            event.subject,
            event.login_id,
            document,
        )
        for attempt in (1, 2):
            conn, reused = await self._connection()
            try:
                await conn.execute(self._insert, params)
            except psycopg.Error as exc:
                dead = conn.closed  # also true when broken
                if dead:
                    await self._discard(conn)
                if isinstance(exc, psycopg.errors.UndefinedTable):
                    self._schema_ready = False
                retry = (dead and reused) or isinstance(exc, psycopg.errors.UndefinedTable)
                if retry and attempt == 1:
                    log.info(
                        "sink.postgres.retry", sink=self._name, event_id=event.id, reason=self._reason(exc)
                    )
                    continue
                raise self._error(event, exc) from exc
            return

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()  # only frees the socket: safe even from another event loop

    async def _connection(self) -> tuple[Connection, bool]:
        """The open connection (and True), or a new one (and False); the table exists in either case."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:  # a connection belongs to the loop it was made in
            await self.aclose()
            self._loop, self._lock = loop, asyncio.Lock()
        conn = self._conn
        if conn is not None and not conn.closed and self._schema_ready:
            return conn, True
        async with self._lock:
            reused = self._conn is not None and not self._conn.closed
            if not reused:
                await self.aclose()
                try:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, **self._kwargs
                    )
                except psycopg.Error as exc:
                    raise SinkError(f"cannot connect: {self._reason(exc)}") from exc
            assert self._conn is not None
            if not self._schema_ready:
                try:
                    # One execute: atomic (one implicit transaction) and no other delivery in between.
                    await self._conn.execute(self._schema())
                except psycopg.Error as exc:
                    if self._conn.closed:
                        await self.aclose()
                    raise SinkError(
                        f"cannot create table {self.qualified_table}: {self._reason(exc)}"
                    ) from exc
                self._schema_ready = True
            return self._conn, reused

    async def _discard(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
        await conn.close()

    def _schema(self) -> sql.Composed:
        """One script (no parameters: several statements may go in one execute), run as one transaction."""
        digest = hashlib.sha256(f"concur_postback:{self.qualified_table}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        table = self._identifier
        statements: list[sql.Composed] = [
            # Concurrent CREATE ... IF NOT EXISTS can collide (several workers starting at once): queue them.
            sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(key)),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "id text PRIMARY KEY, kind text NOT NULL, event_type text NOT NULL,"
                " received_at timestamptz NOT NULL, fetched_at timestamptz, trip_id text,"
                " subject text NOT NULL, login_id text, event jsonb NOT NULL,"
                " stored_at timestamptz NOT NULL DEFAULT now())"
            ).format(table),
        ]
        for column in _INDEXED:
            statements.append(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(_index_name(self.table[-1], column)), table, sql.Identifier(column)
                )
            )
        # a table that already existed must have the columns the insert names
        statements.append(sql.SQL("SELECT {} FROM {} LIMIT 0").format(_COLUMNS, table))
        return sql.SQL("; ").join(statements)

    def _error(self, event: Event, exc: psycopg.Error) -> SinkError:
        permanent = isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
        where = f"event {event.id} not stored in {self.qualified_table}"
        return SinkError(f"{where}: {self._reason(exc)}", permanent=permanent)

    def _reason(self, exc: psycopg.Error) -> str:
        state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        return f"{type(exc).__name__}{state}: {_scrub(_message(exc), self._secrets)}"


# FATAL start-up errors that pass: the server is busy, starting, stopping or recovering.
_TRANSIENT_FATAL = ("too many clients", "starting up", "shutting down", "in recovery", "not yet accepting")


def lasting_refusal(message: str) -> bool:
    """The server answered and refused us for good: wrong user, password or database. libpq gives no
    SQLSTATE for start-up failures, so this reads the (English) message."""
    return "FATAL:" in message and not any(transient in message for transient in _TRANSIENT_FATAL)


def parse_table(value: str) -> tuple[str, ...]:
    """``name`` or ``schema.name``: letters, digits, underscores, not starting with a digit; lower-cased."""
    parts = tuple(value.lower().split("."))
    valid = len(parts) <= 2 and all(_IDENTIFIER.fullmatch(p) and len(p) <= MAX_IDENTIFIER for p in parts)
    if not valid or not value.isascii():
        raise ConfigurationError(
            f"postgres sink: invalid table={value!r}: use letters, digits and underscores (not first),"
            f" at most {MAX_IDENTIFIER} characters, optionally as schema.table"
        )
    return parts


def _index_name(table: str, column: str) -> str:
    name = f"{table}_{column}_idx"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]  # distinct long tables, distinct index names
    suffix = f"_{digest}_{column}_idx"
    return table[: MAX_IDENTIFIER - len(suffix)] + suffix


def _connect_kwargs(conninfo: str) -> dict[str, Any]:
    given = conninfo_to_dict(conninfo)
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_SECONDS
    if "application_name" not in given:
        kwargs["application_name"] = APPLICATION_NAME
    return kwargs


def _safe_name(parts: SplitResult, query: list[tuple[str, str]], table: tuple[str, ...]) -> str:
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    shown = ["password=***" if key == "password" else item for key, item in query]
    shown.append("table=" + ".".join(table))
    return urlunsplit(("postgresql", netloc, parts.path, "&".join(shown), ""))


def _message(exc: psycopg.Error) -> str:
    """A server error's message and detail, without its CONTEXT (which can quote the statement)."""
    primary = exc.diag.message_primary
    if not primary:  # raised by libpq or psycopg: connection failures, NUL in a string
        return str(exc)
    detail = exc.diag.message_detail
    return f"{primary} ({detail})" if detail else primary


def _scrub(message: str | Exception, secrets: tuple[str, ...]) -> str:
    """The message on one line, any password replaced (libpq does not echo it: this is a second guard)."""
    text = " ".join(str(message).split())
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # a shorter one would garble the message without protecting anything
            text = text.replace(secret, "***")
    return text
