"""`redis+stream://[user:pass@]host:port/db?stream=NAME&maxlen=N` — appends each event to a Redis stream.

``rediss+stream://`` is the same over TLS (certificates verified). Query parameters, all optional:
``stream`` (default ``concur-postback:events``), ``maxlen`` (default 100000, trimmed approximately
with ``MAXLEN ~``: Redis drops whole internal nodes, so the stream can briefly hold up to about
``stream-node-max-entries``, 100 by default, more), ``dedup_ttl`` (seconds an event id is remembered,
default 604800 = 7 days; 0 turns de-duplication off) and ``timeout`` (seconds per connect or command,
default 5). The server is PINGed at start-up: a URL that cannot be used fails there, not at the first
event.

What a consumer sees (``XREAD``/``XREADGROUP`` on the stream): one entry per event, with the fields

- ``id``: the event id (stable: the same change always has the same id),
- ``kind``: ``itinerary``, ``profile`` or ``fop``,
- ``event_type``: ``CREATE``, ``UPDATE``, ``CANCEL`` or ``ERROR``,
- ``trip_id``: the trip id, empty for a profile or form-of-payment event,
- ``subject``: who the change is about (``login:<id>`` or a pseudonym of the traveller's token),
- ``event``: the whole event as JSON (``schemas/event.schema.json``), exactly what every sink gets.

Redelivery is de-duplicated: a retry after a timeout, or a re-run after a worker crashed between
``XADD`` and recording the delivery, does not append a second entry. One Lua script, atomic on the
server, checks a marker ``<stream>:seen:<event id>``, and only if it is absent appends the entry and
sets the marker (value: the entry's stream id) with a TTL of ``dedup_ttl``. The marker is written
after ``XADD``, so a failed append (e.g. the key holds another type) leaves nothing behind and the
retry still appends. A redelivery more than ``dedup_ttl`` later, or with ``dedup_ttl=0``, does add a
second entry with the same ``id`` field: consumers that must never see a change twice still
de-duplicate on ``id``. The markers cost roughly 100 bytes each for ``dedup_ttl``. The stream and its
markers are separate keys: on a Redis Cluster proxy, put a hash tag in the name (``stream={events}``).

Failures raise `SinkError`: an unreachable server or a timeout is retryable; a key of the wrong type
(``WRONGTYPE``) is permanent. Neither the sink's ``name`` nor any message contains the password.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis
import redis.asyncio
import structlog
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from concur_postback.connections import text
from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event
from concur_postback.sinks.credentials import scrub, userinfo

log = structlog.get_logger("concur_postback.sinks.redis_stream")

SCHEMES = {"redis+stream": False, "rediss+stream": True}  # scheme -> TLS
DEFAULT_PORT = 6379
DEFAULT_STREAM = "concur-postback:events"
DEFAULT_MAXLEN = 100_000
DEFAULT_DEDUP_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_TIMEOUT_SECONDS = 5.0
_PARAMETERS = ("stream", "maxlen", "dedup_ttl", "timeout")

# KEYS[1]: the stream, KEYS[2]: the event's marker. ARGV[1]: MAXLEN (approximate), ARGV[2]: the marker's
# TTL in seconds (0: no de-duplication), ARGV[3...]: the entry's field/value pairs.
# Returns {1, entry id} when appended, {0, entry id of the first delivery} when already there.
APPEND_SCRIPT = """
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  local seen = redis.call('GET', KEYS[2])
  if seen then return {0, seen} end
end
local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
if ttl > 0 then redis.call('SET', KEYS[2], entry, 'EX', ttl) end
return {1, entry}
"""


class RedisStreamSink:
    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        db: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        dedup_ttl: int = DEFAULT_DEDUP_TTL_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.username = username
        self._password = password
        self.tls = tls
        self.stream = stream
        self.maxlen = maxlen
        self.dedup_ttl = dedup_ttl
        self.timeout = timeout
        self._client: redis.asyncio.Redis | None = None
        self._script: Any = None  # redis.commands.core.AsyncScript: EVALSHA, loading the script if needed
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def name(self) -> str:
        scheme = "rediss+stream" if self.tls else "redis+stream"
        credentials = userinfo(self.username, self._password)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{credentials}{host}:{self.port}/{self.db}?stream={quote(self.stream, safe=':{}')}"

    @classmethod
    def parse(cls, url: str) -> RedisStreamSink:
        """The sink a URL describes, without contacting the server (`from_url` also checks it)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ConfigurationError(
                f"redis stream sink: scheme must be redis+stream or rediss+stream: {scheme!r}"
            )
        where = f"redis stream sink {scheme}://{parts.hostname or ''}"
        if not parts.hostname:
            raise ConfigurationError(f"{where}: no host, expected {scheme}://host:port/db?stream=NAME")
        try:
            port = DEFAULT_PORT if parts.port is None else parts.port
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ConfigurationError(f"{where}: the port must be a number from 1 to 65535")
        db_text = parts.path.removeprefix("/")
        if not db_text:
            db = 0
        elif db_text.isascii() and db_text.isdigit():
            db = int(db_text)
        else:
            raise ConfigurationError(f"{where}: the path must be a database number (/0, /1...): {db_text!r}")
        params: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in _PARAMETERS:
                raise ConfigurationError(
                    f"{where}: unknown parameter {key!r} (known: {', '.join(_PARAMETERS)})"
                )
            if key in params:
                raise ConfigurationError(f"{where}: parameter {key!r} given twice")
            params[key] = value
        stream = params.get("stream", DEFAULT_STREAM)
        if not stream:
            raise ConfigurationError(f"{where}: stream must not be empty")
        return cls(
            parts.hostname,
            port,
            db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=SCHEMES[scheme],
            stream=stream,
            maxlen=_number(params, "maxlen", DEFAULT_MAXLEN, minimum=1, where=where),
            dedup_ttl=_number(params, "dedup_ttl", DEFAULT_DEDUP_TTL_SECONDS, minimum=0, where=where),
            timeout=_seconds(params, "timeout", DEFAULT_TIMEOUT_SECONDS, where=where),
        )

    @classmethod
    def from_url(cls, url: str) -> RedisStreamSink:
        sink = cls.parse(url)
        sink.check()
        return sink

    def check(self) -> None:
        """PING the server (once, no retry) and make sure the stream key is a stream or absent.

        As for every sink, a server that cannot be reached is only logged (deliveries retry); one
        that answers and refuses is a ConfigurationError."""
        client = redis.Redis(**self._connection(), retry=Retry(NoBackoff(), 0))
        try:
            client.ping()
            kind = client.type(self.stream)
        except (AuthenticationError, ResponseError) as exc:
            raise ConfigurationError(f"{self.name}: cannot use Redis: {self._reason(exc)}") from None
        except (RedisError, OSError) as exc:
            log.warning("sink.unreachable_at_start", sink=self.name, reason=self._reason(exc))
            return
        finally:
            client.close()
        if kind not in (b"none", b"stream"):
            kind_text = kind.decode(errors="replace") if isinstance(kind, bytes) else str(kind)
            raise ConfigurationError(f"{self.name}: key {self.stream!r} holds a {kind_text}, not a stream")

    async def deliver(self, event: Event, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client belongs to the loop it first connected in; one left from another loop cannot be
            # closed from this one and is dropped (its sockets close when it is collected).
            retry = AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 2)  # safe: the script is idempotent
            self._client = redis.asyncio.Redis(**self._connection(), retry=retry)
            self._script = self._client.register_script(APPEND_SCRIPT)
            self._loop = loop
        args: list[str | int | bytes] = [
            self.maxlen,
            self.dedup_ttl,
            *("id", event.id),
            *("kind", event.kind),
            *("event_type", event.event_type),
            *("trip_id", event.trip_id or ""),
            *("subject", event.subject),
            *("event", payload),
        ]
        try:
            appended, entry = await self._script(keys=[self.stream, self.seen_key(event.id)], args=args)
        except (RedisError, OSError) as exc:
            raise self._failure(exc) from None
        if not appended:
            log.info("sink.duplicate", sink=self.name, event_id=event.id, entry_id=text(entry))

    def seen_key(self, event_id: str) -> str:
        return f"{self.stream}:seen:{event_id}"

    async def aclose(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._script = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()

    def _connection(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self._password,
            "ssl": self.tls,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
        }

    def _reason(self, exc: BaseException) -> str:
        return scrub(f"{type(exc).__name__}: {exc}", [self._password] if self._password else [])

    def _failure(self, exc: BaseException) -> SinkError:
        reason = self._reason(exc)
        if isinstance(exc, ResponseError) and "WRONGTYPE" in str(exc):
            return SinkError(f"{self.stream!r} or its marker is of another type: {reason}", permanent=True)
        return SinkError(f"XADD to {self.stream!r} failed: {reason}")


def _number(params: dict[str, str], key: str, default: int, *, minimum: int, where: str) -> int:
    text = params.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise ConfigurationError(f"{where}: {key} must be a whole number >= {minimum}, got {text!r}")
    return int(text)


def _seconds(params: dict[str, str], key: str, default: float, *, where: str) -> float:
    text = params.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigurationError(f"{where}: {key} must be a positive number of seconds, got {text!r}")
    return value
