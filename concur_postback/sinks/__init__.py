"""Sinks: where events go. `SINKS` names one or more by URL, separated by spaces or commas.

A sink is small: a ``name`` safe to log, ``deliver(event, payload)`` (payload is the event's JSON,
serialised once for all sinks) which raises to report failure, and ``aclose()``. A factory builds one
from its URL; built-in schemes are below, and a package adds its own through the Python entry point
group ``concur_postback.sinks`` (entry point name = URL scheme, value = factory). A URL that cannot be
used fails at start-up, not at the first event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError
from concur_postback.events import Event

ENTRY_POINT_GROUP = "concur_postback.sinks"


class Sink(Protocol):
    @property
    def name(self) -> str: ...

    async def deliver(self, event: Event, payload: bytes) -> None: ...

    async def aclose(self) -> None: ...


SinkFactory = Callable[[str], Sink]


def _builtin(settings: Settings) -> dict[str, SinkFactory]:
    # Imported here: each sink pulls in its own client library only when SINKS names it.
    from concur_postback.sinks.file import FileSink  # noqa: PLC0415
    from concur_postback.sinks.http import HttpSink  # noqa: PLC0415
    from concur_postback.sinks.log import LogSink  # noqa: PLC0415
    from concur_postback.sinks.postgres import PostgresSink  # noqa: PLC0415
    from concur_postback.sinks.redis_stream import RedisStreamSink  # noqa: PLC0415

    secret = settings.sink_http_secret.get_secret_value() if settings.sink_http_secret else None

    def http(url: str) -> Sink:
        return HttpSink.configure(url, secret)

    return {
        "log": LogSink.from_url,
        "file": FileSink.from_url,
        "http": http,
        "https": http,
        "redis+stream": RedisStreamSink.from_url,
        "rediss+stream": RedisStreamSink.from_url,
        "postgresql": PostgresSink.from_url,
        "postgres": PostgresSink.from_url,
    }


def factories(settings: Settings) -> dict[str, SinkFactory]:
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    plugins: dict[str, SinkFactory] = {name: ep.load() for name, ep in found.items()}
    return {**plugins, **_builtin(settings)}  # built-in schemes cannot be shadowed


def sink_id(url: str) -> str:
    """A sink's id, in Redis keys and dead-letter ids: a digest of its whole URL but the password, so
    that two URLs differing in a query parameter, a path or a user are two sinks, while rotating a
    password keeps the sink (and the deliveries it owes); the password is not in it at all, and the
    rest cannot be read back from it."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}@{host}")
    return hashlib.sha256(b"concur-postback sink\x00" + urlunsplit(parts).encode()).hexdigest()[:12]


def sink_label(ident: str, sink: Sink) -> str:
    """How logs, metrics, `status` and `failed list` show a sink: its credential-free name and its id
    (two sinks may share a name: `https://h/in?tenant=a` and `?tenant=b`)."""
    return f"{sink.name} [{ident}]"


def build_sinks(settings: Settings) -> dict[str, Sink]:
    """The sinks SINKS names, by id, in its order."""
    spec = settings.sinks
    urls = [url for url in re.split(r"[\s,]+", spec.strip()) if url]
    if not urls:
        raise ConfigurationError("SINKS is empty: name at least one sink, e.g. `log:`")
    known = factories(settings)
    sinks: dict[str, Sink] = {}
    for number, url in enumerate(urls, 1):
        scheme = urlsplit(url).scheme.lower()
        factory = known.get(scheme)
        if factory is None:
            names = ", ".join(sorted(known))
            raise ConfigurationError(f"SINKS: unknown sink scheme {scheme or url!r} (known: {names})")
        ident = sink_id(url)
        if ident in sinks:
            raise ConfigurationError(f"SINKS: sink {number} ({scheme}) repeats an earlier one: each once")
        try:
            sinks[ident] = factory(url)
        except ConfigurationError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise ConfigurationError(f"SINKS: cannot start sink {scheme}: {reason}") from exc
    return sinks
