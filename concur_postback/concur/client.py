"""The Concur API client: one pooled HTTP client per worker process, one attempt per call.

Built on httpx's request and response types over an aiohttp transport: httpx's own async transport is
far costlier in CPU per request once dozens are in flight (encode/httpx#3215), and the worker keeps
dozens in flight. Requests go to the transport directly, not through an `httpx.AsyncClient`: no
redirect is ever followed (one could lead the token off Concur's hosts) and no auth flow applies,
and the client's layers for those cost about as much CPU as the transport. No cookie is ever kept
(aiohttp's session is given a jar that keeps none): one jar, shared by every traveller's requests,
would carry one answer's cookies into the next traveller's request. Every
URL is checked against the host policy before the token is attached; every request waits for a slot
of its host's request budget (a `RequestBudget`: the deployment's, shared through Redis, or this
process's own) within this process's in-flight limit; and every response is turned into bytes or a
typed FetchError that says whether another attempt could help. Retrying is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Protocol

import aiohttp
import httpx
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport

from concur_postback.backoff import retry_after_seconds
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import Kind, OAuthToken
from concur_postback.config import Settings
from concur_postback.errors import HostNotAllowed, InvalidPostback, PermanentFetch, RetryableFetch

DEFAULT_PAUSE_SECONDS = 5.0
XML, JSON = "application/xml", "application/json"
# Sent with every request (an httpx client would add its own, python-httpx as the User-Agent).
COMMON_HEADERS = {"User-Agent": "concur-postback", "Accept-Encoding": "gzip, deflate"}

# Told of every request: its kind label, its outcome ("ok", "http_404", "timeout", ...) and its
# seconds. The worker passes metrics.record_fetch; the domain itself knows no metrics library.
FetchObserver = Callable[[str, str, float], None]


def _unobserved(kind: str, outcome: str, seconds: float) -> None:
    pass


class RequestBudget(Protocol):
    """How many requests a Concur host may get: the deployment's shared budget (budget.py), or a
    process's own (LocalBudget) where no Redis is at hand."""

    async def reserve(self, host: str) -> float:
        """Seconds to wait before sending; raises FetchDeferred when that would be too long."""

    async def pause(self, host: str, seconds: float) -> None:
        """Concur answered 429: hold every request to ``host`` for ``seconds``."""


class LocalBudget:
    """A per-process budget: CONCUR_MAX_RPS for this process alone (commands such as `subscribe`)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._limiters: dict[str, AsyncLimiter] = {}
        self._paused_until: dict[str, float] = {}

    async def reserve(self, host: str) -> float:
        while (wait := self._paused_until.get(host, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        limiter = self._limiters.get(host)
        if limiter is None:
            limiter = self._limiters[host] = AsyncLimiter(self._rate, 1)
        await limiter.acquire()
        return 0.0

    async def pause(self, host: str, seconds: float) -> None:
        self._paused_until[host] = max(self._paused_until.get(host, 0.0), time.monotonic() + seconds)


class ConcurClient:
    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: RequestBudget | None = None,
        observe: FetchObserver = _unobserved,
    ) -> None:
        self._settings = settings
        self._observe = observe
        self._policy = HostPolicy.from_settings(settings)
        self._budget = budget or LocalBudget(settings.concur_max_rps)
        self._transport = transport or AiohttpTransport(
            client=partial(_session, settings.concur_max_in_flight * 4)
        )
        timeout = httpx.Timeout(
            settings.concur_read_timeout_seconds, connect=settings.concur_connect_timeout_seconds
        )
        self._extensions = {"timeout": timeout.as_dict()}
        self._in_flight: dict[str, asyncio.Semaphore] = {}

    async def aclose(self) -> None:
        await self._transport.aclose()

    def url_for(self, kind: Kind, object_uri: str | None) -> str:
        base = self._settings.concur_base_url
        if kind is Kind.ITINERARY:
            if object_uri is None:
                raise PermanentFetch("itinerary notification without ObjectURI")
            try:  # the same check as at ingest, for a record stored by an older version or behind its back
                self._policy.trip_id_from_uri(object_uri)
            except InvalidPostback as exc:
                raise HostNotAllowed(f"refusing to send a token to {exc.detail}") from None
            return object_uri
        if kind is Kind.PROFILE:
            return f"{base}/api/travelprofile/{self._settings.concur_profile_version}/profile"
        return f"{base}/api/travelprofile/v2.0/fop"

    async def fetch(
        self,
        kind: Kind,
        token: OAuthToken,
        object_uri: str | None = None,
        user: tuple[str, str] | None = None,
    ) -> bytes:
        """GET the changed object; company notifications name the user with userid_type/userid_value."""
        url = self.url_for(kind, object_uri)
        params = {"userid_type": user[0], "userid_value": user[1]} if user else None
        return await self.get(url, token, params, kind.value)

    async def get(
        self,
        url: str,
        token: OAuthToken,
        params: dict[str, str] | None = None,
        kind: str = "other",
        *,
        scheme: str | None = None,
        accept: str = XML,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """GET ``url`` with the token, once; ``kind`` labels the request's metrics; ``scheme`` the
        Authorization scheme (default CONCUR_AUTH_SCHEME; company JWTs are ``Bearer``); ``headers``
        more headers (the v4 APIs take Concur's correlation id)."""
        sent = self._headers(token, scheme, accept, **(headers or {}))
        response = await self._request("GET", url, kind, sent, params=params)
        if response.status_code == 429:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            pause = retry_after if retry_after is not None else DEFAULT_PAUSE_SECONDS
            await self._budget.pause(self._host_of(url), pause)
        return _content_or_raise(response)

    async def post_form(self, url: str, form: dict[str, str], kind: str = "token") -> tuple[int, bytes]:
        """POST a form without a token (the OAuth2 token service: the credentials are in the form);
        (status, body) whatever the status."""
        response = await self._request("POST", url, kind, {"Accept": JSON}, data=form)
        return response.status_code, response.content

    async def post(
        self, url: str, token: OAuthToken, params: dict[str, str] | None = None, body: bytes = b""
    ) -> httpx.Response:
        """POST XML to Concur (the v1 subscription calls); the response whatever its status, so the
        caller can read Concur's `<Error>` document."""
        return await self.send("POST", url, token, params=params, body=body, content_type=XML)

    async def send(
        self,
        method: str,
        url: str,
        token: OAuthToken,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
        scheme: str | None = None,
    ) -> httpx.Response:
        """Any request to Concur with the token; the response whatever its status."""
        headers = self._headers(token, scheme, content_type, **{"Content-Type": content_type})
        return await self._request(method, url, "other", headers, params=params, content=body)

    async def _request(
        self, method: str, url: str, kind: str, headers: dict[str, str], **options: Any
    ) -> httpx.Response:
        """Every request: under the host policy, this process's in-flight limit and the request
        budget, timed and observed as ``kind``; a network failure raises RetryableFetch."""
        async with self._slot(self._host_of(url)):
            started = time.perf_counter()
            request = httpx.Request(
                method, url, headers={**COMMON_HEADERS, **headers}, extensions=self._extensions, **options
            )
            try:
                response = await self._transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except NETWORK_ERRORS as exc:
                failure = _network_failure(exc)
                self._observe(kind, failure.outcome, time.perf_counter() - started)
                raise failure from None
            elapsed = time.perf_counter() - started
        status = response.status_code
        self._observe(kind, "ok" if 200 <= status < 300 else f"http_{status}", elapsed)
        return response

    def _host_of(self, url: str) -> str:
        """The URL's host — after checking that the token may go there at all."""
        try:
            return (self._policy.check_url(url).hostname or "").lower()
        except InvalidPostback as exc:
            raise HostNotAllowed(f"refusing to send a token to {exc.detail}") from None

    @contextlib.asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        """One of this process's CONCUR_MAX_IN_FLIGHT slots for ``host``, then a slot of the request
        budget (reserved only once in flight, so the request leaves when its budget slot comes)."""
        slots = self._in_flight.get(host)
        if slots is None:
            slots = self._in_flight[host] = asyncio.Semaphore(self._settings.concur_max_in_flight)
        async with slots:
            if wait := await self._budget.reserve(host):
                await asyncio.sleep(wait)
            yield

    def _headers(
        self, token: OAuthToken, scheme: str | None = None, accept: str = XML, **extra: str
    ) -> dict[str, str]:
        authorization = f"{scheme or self._settings.concur_auth_scheme} {token.value}"
        return {"Authorization": authorization, "Accept": accept, **extra}


def _session(max_connections: int) -> aiohttp.ClientSession:
    """What AiohttpTransport would build (its TLS context, its idle-connection expiry), without cookies."""
    limits = httpx.Limits(max_connections=max_connections)
    connector = aiohttp.TCPConnector(
        limit=max_connections, keepalive_timeout=limits.keepalive_expiry, ssl=httpx.create_ssl_context()
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class _NetworkFailure(RetryableFetch):
    def __init__(self, detail: str, outcome: str) -> None:
        super().__init__(detail)
        self.outcome = outcome  # the metrics label


# What a request can fail with short of an HTTP answer: httpx's own errors (connection, timeout, a
# truncated or garbled body) and aiohttp's, a few of which httpx-aiohttp passes through unmapped.
NETWORK_ERRORS = (httpx.RequestError, aiohttp.ClientError)


def _network_failure(exc: Exception) -> _NetworkFailure:
    """A timeout or connection error, as a retryable FetchError (never the URL: it may carry a query)."""
    if isinstance(exc, httpx.TimeoutException):
        return _NetworkFailure(f"timeout ({type(exc).__name__})", "timeout")
    return _NetworkFailure(f"connection error ({type(exc).__name__})", "connection_error")


def _content_or_raise(response: httpx.Response) -> bytes:
    status = response.status_code
    if 200 <= status < 300:
        return response.content
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status == 429:
        raise RetryableFetch("HTTP 429 Too Many Requests", status, retry_after)
    if status >= 500 or status == 408:
        raise RetryableFetch(f"HTTP {status}", status, retry_after)
    if status in (401, 403):
        raise PermanentFetch(f"HTTP {status}: token revoked or not permitted", status)
    raise PermanentFetch(f"HTTP {status}", status)
