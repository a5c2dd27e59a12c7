"""`http://…` and `https://…` — POSTs each event to a webhook receiver, signed per Standard Webhooks.

The body is the event's JSON exactly as serialised for every sink. Headers: ``Content-Type:
application/json``, ``User-Agent: concur-postback``, ``webhook-id`` (the event id: the same on every
retry, so the receiver de-duplicates on it), ``webhook-timestamp`` (integer seconds, taken at each
attempt) and, when ``SINK_HTTP_SECRET`` is set (``whsec_<base64 key>``, as the receiver hands it out),
``webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">``
(https://www.standardwebhooks.com). Without a secret nothing is signed.

Options on the URL, removed before it is used (every other query parameter goes to the receiver):
``timeout=SECONDS``, how long to wait for the answer (default 10; connecting waits at most 5, or
``timeout`` if that is lower). User-info in the URL (``https://user:password@host/``) is sent as HTTP
Basic authentication and never shown: ``name`` masks it and drops the query.

Outcomes: 2xx delivered. 408, 429, 5xx, a timeout, a connection error or an answer that is not HTTP
raise a retryable `HttpSinkError` (with ``retry_after`` seconds when the receiver sent Retry-After);
any other answer, redirects included (they are not followed: the receiver's URL is to be configured as
it is), raises a permanent one. Messages name the status and its standard reason, never the body either way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import math
import time
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport

from concur_postback.backoff import retry_after_seconds
from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event
from concur_postback.sinks.credentials import MASK

log = structlog.get_logger("concur_postback.sinks.http")

SECRET_ENV = "SINK_HTTP_SECRET"  # noqa: S105 - the variable's name, not a secret
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix
MIN_SECRET_BYTES = 16
USER_AGENT = "concur-postback"
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 300.0
OPTIONS = frozenset({"timeout"})
DRAIN_LIMIT_BYTES = 64 * 1024  # read this much of an answer to keep its connection; never used otherwise


class HttpSinkError(SinkError):
    """A webhook receiver did not take an event. ``status`` is the HTTP status (None for a timeout or a
    connection error), ``retry_after`` the seconds its Retry-After header asked for, if any."""

    def __init__(
        self, detail: str, *, permanent: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail, permanent=permanent)
        self.status = status
        self.retry_after = retry_after


def parse_secret(value: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. The message never repeats the value."""
    if not value.startswith(SECRET_PREFIX):
        raise ConfigurationError(f"{SECRET_ENV} must look like {SECRET_PREFIX}<base64 key>")
    encoded = value[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{SECRET_ENV}: the part after {SECRET_PREFIX} is not base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{SECRET_ENV}: the key is {len(key)} bytes, at least {MIN_SECRET_BYTES} needed"
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class HttpSink:
    """One sink per URL; its pooled client is created in the running loop at the first delivery."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        timeout: httpx.Timeout,
        key: bytes | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self._url = url  # what is requested: no user-info, no sink options
        self._name = name
        self._timeout = timeout
        self._key = key
        self._auth = auth
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"HttpSink({self._name!r}, signed={self._key is not None})"

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def configure(cls, url: str, secret: str | None) -> HttpSink:
        """Validate ``url`` and ``secret`` (``whsec_…``; None or blank: unsigned) and build the sink."""
        target, name, timeout, auth = _parse_url(url)
        secret = (secret or "").strip()
        key = parse_secret(secret) if secret else None
        if key is None:
            log.info("sink.http.unsigned", sink=name, hint=f"set {SECRET_ENV} to sign deliveries")
        return cls(target, name=name, timeout=timeout, key=key, auth=auth)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=AiohttpTransport(),  # see concur/client.py: far less CPU per request than httpx's
                timeout=self._timeout,
                follow_redirects=False,
                auth=httpx.BasicAuth(*self._auth) if self._auth else None,
                trust_env=False,
            )
        return self._client

    def headers(self, event: Event, payload: bytes, timestamp: int | None = None) -> dict[str, str]:
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
        }
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, event.id, timestamp, payload)
        return headers

    async def deliver(self, event: Event, payload: bytes) -> None:
        client = self._http()
        headers = self.headers(event, payload)
        try:
            async with client.stream("POST", self._url, content=payload, headers=headers) as response:
                await _drain(response, self._timeout.read)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            # aiohttp's own errors (e.g. a malformed answer) pass the transport unmapped; their text
            # includes the URL, query and all, so only _describe's summary is shown.
            raise HttpSinkError(_describe(exc), permanent=False) from None
        _raise_for(response)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _raise_for(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    phrase = httpx.codes.get_reason_phrase(status)  # the standard one: the receiver's text is not shown
    detail = f"HTTP {status} {phrase}".rstrip()
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if retry_after is not None:
            detail += f" (retry after {retry_after:.0f} s)"
        raise HttpSinkError(detail, permanent=False, status=status, retry_after=retry_after)
    if 300 <= status < 400:
        location = response.headers.get("location")
        where = f" to {_display(location)}" if location else ""
        detail += f": redirect{where} not followed, configure the final URL"
    raise HttpSinkError(detail, permanent=True, status=status)


async def _drain(response: httpx.Response, seconds: float | None) -> None:
    """Read a short answer so its connection goes back to the pool; a long or slow one is dropped."""
    received = 0
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(seconds):
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > DRAIN_LIMIT_BYTES:
                    return


def _describe(exc: Exception) -> str:
    """Timeout, connection or protocol error, with the exception types down the chain and the OS error's
    text (e.g. "Connect call failed"): never the URL or the body. The aiohttp transport reports a refused
    connection or a dropped one as httpx.ConnectTimeout, so the kind is decided by the causes."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if isinstance(exc, httpx.HTTPError) and len(chain) > 1:
        chain = chain[1:]  # the transport's mapping of what aiohttp raised: the cause tells what happened
    if any(isinstance(e, TimeoutError | httpx.TimeoutException) for e in chain):
        kind = "timeout"
    elif any(isinstance(e, aiohttp.ClientResponseError | httpx.ProtocolError) for e in chain):
        kind = "protocol error"  # an answer that is not HTTP
    else:
        kind = "connection error"
    reason = next((e.strerror for e in chain if isinstance(e, OSError) and e.strerror), None)
    names = " < ".join(type(e).__name__ for e in chain)
    return f"{kind} ({names}{f': {reason}' if reason else ''})"


def _parse_url(url: str) -> tuple[str, str, httpx.Timeout, tuple[str, str] | None]:
    """(URL to request, name to show, timeouts, Basic credentials) from a sink URL."""

    def invalid(why: str) -> ConfigurationError:
        return ConfigurationError(f"http sink {_display(url)!r}: {why}")

    if any(char.isspace() or ord(char) < 32 for char in url):
        raise invalid("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [IPv6] bracket
        raise invalid(str(exc)) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid("the URL must start with http:// or https://")
    try:
        port = parts.port
    except ValueError:
        raise invalid("the port is not a number between 0 and 65535") from None
    host = parts.hostname
    if not host:
        raise invalid("the URL names no host, e.g. https://hooks.example.com/concur")
    if port == 0:
        raise invalid("port 0 cannot be connected to")

    kept: list[str] = []
    options: dict[str, str] = {}
    for item in parts.query.split("&") if parts.query else []:
        key, _, value = item.partition("=")
        key = unquote(key)
        if key not in OPTIONS:
            kept.append(item)
        elif key in options:
            raise invalid(f"option {key} is given twice")
        else:
            options[key] = unquote(value)
    read = READ_TIMEOUT_SECONDS
    if "timeout" in options:
        try:
            read = float(options["timeout"])
        except ValueError:
            raise invalid(f"timeout must be a number of seconds, got {options['timeout']!r}") from None
        if not (math.isfinite(read) and 0 < read <= MAX_TIMEOUT_SECONDS):
            raise invalid(f"timeout must be more than 0 and at most {MAX_TIMEOUT_SECONDS:.0f} seconds")
    timeout = httpx.Timeout(read, connect=min(CONNECT_TIMEOUT_SECONDS, read))

    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if "@" in parts.netloc else None
    netloc = parts.netloc.rpartition("@")[2]
    target = urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "&".join(kept), ""))
    return target, _display(url), timeout, auth


def _display(url: str) -> str:
    """A URL safe to log: scheme and host only. User-info can be a token, and webhook paths often are
    secrets (Slack-style `https://hooks.example/T000/B000/XXXX`); the sink's id (`sink_label`) tells
    two sinks on one host apart."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, "/…" if parts.path.strip("/") else "", "", ""))
