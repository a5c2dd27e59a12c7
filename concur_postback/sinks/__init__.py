"""Sinks: where events go. `SINKS` names one or more by URL, separated by spaces or commas.

A sink is small: a ``name`` safe to log, ``deliver(event, payload)`` (payload is the event's JSON,
serialised once for all sinks) which raises to report failure, and ``aclose()``. A factory builds one
from its URL; built-in schemes are below, and a package adds its own through the Python entry point
group ``concur_postback.sinks`` (entry point name = URL scheme, value = factory). A URL that cannot be
used fails at start-up, not at the first event.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol
from urllib.parse import urlsplit

from concur_postback.errors import ConfigurationError
from concur_postback.events import Event

ENTRY_POINT_GROUP = "concur_postback.sinks"


class Sink(Protocol):
    @property
    def name(self) -> str: ...

    async def deliver(self, event: Event, payload: bytes) -> None: ...

    async def aclose(self) -> None: ...


SinkFactory = Callable[[str], Sink]


def _builtin() -> dict[str, SinkFactory]:
    from concur_postback.sinks.file import FileSink  # noqa: PLC0415 - avoid import cycles at package import
    from concur_postback.sinks.log import LogSink  # noqa: PLC0415

    return {"log": LogSink.from_url, "file": FileSink.from_url}


def factories() -> dict[str, SinkFactory]:
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    plugins: dict[str, SinkFactory] = {name: ep.load() for name, ep in found.items()}
    return {**plugins, **_builtin()}  # built-in schemes cannot be shadowed


def build_sinks(spec: str) -> list[Sink]:
    urls = [url for url in re.split(r"[\s,]+", spec.strip()) if url]
    if not urls:
        raise ConfigurationError("SINKS is empty: name at least one sink, e.g. `log:`")
    known = factories()
    sinks = []
    for url in urls:
        scheme = urlsplit(url).scheme.lower()
        factory = known.get(scheme)
        if factory is None:
            names = ", ".join(sorted(known))
            raise ConfigurationError(f"SINKS: unknown sink scheme {scheme or url!r} (known: {names})")
        try:
            sinks.append(factory(url))
        except ConfigurationError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise ConfigurationError(f"SINKS: cannot start sink {scheme}: {reason}") from exc
    return sinks
