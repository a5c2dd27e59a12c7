"""uvicorn's httptools protocol, as `serve` runs it: where each connection's own rules are applied.

These rules concern connections, not requests, and act before the app sees anything (or when it
never will), so they belong in the protocol uvicorn runs per connection, not in middleware: by the
time an ASGI app is called the request head is complete, and a connection that never completes one
never reaches it. uvicorn has no head timeout of its own and its protocol class is already pinned
to httptools here (see server.py), so a subclass adds them at no cost to other paths.

**Deadlines.** A request head (request line and headers) must arrive within HEAD_TIMEOUT_SECONDS of
the connection's start, or of the first byte of the next request on a kept-alive connection; a
body within MAX_BODY_SECONDS of its head. Past either, the connection is answered 408 (when nothing
was answered yet) and closed. The keep-alive idle timeout stays uvicorn's.

**Headroom.** A process may hold at most `max_connections` connections (by default its open-file
limit less a reserve for Redis, logs and the listeners). A connection beyond that closes the one that
has waited longest on its client (for a head, a body, or idle between requests), so slow clients
cannot crowd out Concur's deliveries; when every connection is being answered, the new one is closed
at once. Either is told 503 with Retry-After, which Concur (v1 and ESS alike) retries: a request
caught at the very start of a flood, before its bytes were read, is delivered again, not lost.

**Mutual TLS for ESS.** With `serve --ssl-ca-certs`, the TLS context verifies any certificate a client
presents; a connection to the public listener without one of ESS_CLIENT_CN is closed before a byte of
HTTP is read. The admin listener takes connections without one, so probes need none. uvicorn does not
pass the peer certificate to the app, which is one more reason this is the place.
"""

from __future__ import annotations

import asyncio
import functools
import math
import resource
import ssl
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from concur_postback.config import load_settings
from concur_postback.metrics import NAMESPACE

log = structlog.get_logger("concur_postback.service")

RESERVED_DESCRIPTORS = 64  # for Redis connections, log files, the listeners, uvicorn's own
RESERVED_SHARE = 0.1  # ... or this share of the limit, whichever is more
LOW_LIMIT = 4096  # below this many open files, `serve` warns at start
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout"
)
OVER_LIMIT = (  # Concur retries a 5xx (ESS no other 4xx than 401, 403 and 429): nothing is lost
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\n"
    b"content-length: 19\r\nconnection: close\r\n\r\nService Unavailable"
)
CLOSED = Counter(
    "connections_closed",
    "Connections the service closed by its own rules: head_timeout, body_timeout, evicted (to make "
    "room at max_connections), over_limit (no room), client_certificate.",
    ["reason"],
    namespace=NAMESPACE,
)


@dataclass(frozen=True)
class ConnectionRules:
    head_seconds: float
    body_seconds: float
    max_connections: int
    common_name: str
    admin_port: int | None


def connection_limit(open_files: int, configured: int | None = None) -> int:
    """How many connections a process may hold with ``open_files`` descriptors."""
    reserve = max(RESERVED_DESCRIPTORS, int(open_files * RESERVED_SHARE))
    derived = max(1, open_files - reserve)
    return min(configured, derived) if configured else derived


def raise_open_files_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit where allowed; the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


@functools.cache
def connection_rules() -> ConnectionRules:
    """Read once per process: uvicorn's worker processes import this module, not the parent's state."""
    settings = load_settings()
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return ConnectionRules(
        head_seconds=settings.head_timeout_seconds,
        body_seconds=settings.max_body_seconds,
        max_connections=connection_limit(open_files, settings.max_connections),
        common_name=settings.ess_client_cn,
        admin_port=settings.admin_port,
    )


def subject_common_names(certificate: dict[str, Any] | None) -> list[str]:
    """The CNs of a peer certificate as `SSLSocket.getpeercert()` gives it."""
    if not certificate:
        return []
    return [value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"]


def verifies_clients(transport: asyncio.Transport) -> bool:
    """Whether this connection's TLS context checks client certificates (serve --ssl-ca-certs)."""
    tls = transport.get_extra_info("ssl_object")
    return tls is not None and tls.context.verify_mode != ssl.CERT_NONE


# This process's connections waiting on their client (for a head, a body, or idle between requests),
# each with its deadline, longest waiting first: a dict keeps insertion order, and a connection is
# re-inserted when it waits anew. One sweep a second closes those past their deadline: cheaper on the
# hot path than a timer per request, and a deadline of seconds needs no finer grain.
_waiting: dict[HttpProtocol, float] = {}
_sweeping: list[asyncio.TimerHandle] = []
SWEEP_SECONDS = 1.0


def _sweep(loop: asyncio.AbstractEventLoop) -> None:
    now = loop.time()
    for connection in [c for c, deadline in _waiting.items() if deadline <= now]:
        connection._close(f"{connection._phase}_timeout")
    _sweeping[:] = [loop.call_later(SWEEP_SECONDS, _sweep, loop)] if _waiting else []


class CoalescingTransport:
    """A connection's transport that sends a response in one system call: uvicorn writes its head and
    its body apart, which costs two sends, two packets and two wake-ups of the client. The protocol
    sends a response the moment it is complete (`flush`); any other write (a 100 Continue) goes at
    the end of the loop's turn, or at once past FLUSH_BYTES, so that flow control sees it. Closing
    sends what is pending first; aborting drops it, as it would."""

    FLUSH_BYTES = 65536  # uvicorn's high-water mark: beyond it the transport pauses the writer

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        if sum(map(len, self._pending)) >= self.FLUSH_BYTES:  # a head and a body, mostly
            self.flush()

    def writelines(self, data: list[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    _phase = "head"  # what the connection waits for: head, body, idle (between requests), answer

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._out = CoalescingTransport(transport, self.loop)
        super().connection_made(self._out)  # type: ignore[arg-type]
        rules = connection_rules()
        if not self._certificate_accepted(transport, rules) or not self._room(rules):
            return
        self._wait("head", rules.head_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        _waiting.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle":  # the first byte of a kept-alive connection's next request
            self._wait("head", connection_rules().head_seconds)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._wait("body", connection_rules().body_seconds)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        _waiting.pop(self, None)  # the request is whole: being answered, not waiting on its client
        self._phase = "answer"
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._out.flush()  # now, not at the end of the turn: other replies may be built in it
        super().on_response_complete()
        if not self.transport.is_closing():  # idle until the next request: uvicorn's keep-alive timeout
            self._wait("idle", math.inf)

    def _wait(self, phase: str, seconds: float) -> None:
        self._phase = phase
        _waiting.pop(self, None)
        _waiting[self] = self.loop.time() + seconds
        if not _sweeping:
            _sweeping.append(self.loop.call_later(SWEEP_SECONDS, _sweep, self.loop))

    def _close(self, reason: str, answer: bytes | None = None) -> None:
        """Close, with ``answer`` or, if a request waits on its client unanswered, a 408."""
        _waiting.pop(self, None)
        if self.transport.is_closing():
            return
        answered = self.cycle is not None and self.cycle.response_started
        if answer is None and (self._phase == "head" or (self._phase == "body" and not answered)):
            answer = REQUEST_TIMEOUT
        if answer:
            self.transport.write(answer)
        self.transport.close()
        CLOSED.labels(reason).inc()

    def _room(self, rules: ConnectionRules) -> bool:
        """Make room for this connection, or close it: False when it was closed."""
        if len(self.connections) <= rules.max_connections:
            return True
        oldest = next((other for other in _waiting if other is not self), None)  # longest waiting
        if oldest is None:
            self._close("over_limit", OVER_LIMIT)
            return False
        oldest._close("evicted", OVER_LIMIT if oldest._phase != "idle" else b"")
        return True

    def _certificate_accepted(self, transport: asyncio.Transport, rules: ConnectionRules) -> bool:
        on_admin = self.server is not None and self.server[1] == rules.admin_port
        if on_admin or not verifies_clients(transport):
            return True
        names = subject_common_names(transport.get_extra_info("peercert"))
        if rules.common_name in names:
            return True
        log.warning(
            "tls.client_refused",
            client=self.client[0] if self.client else None,
            reason="no client certificate" if not names else "client certificate of another CN",
            common_names=names,
        )
        self._close("client_certificate", b"")
        return False
