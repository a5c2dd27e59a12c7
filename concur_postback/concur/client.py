"""The Concur API client: one pooled HTTP client per worker process, limits per Concur host.

Built on httpx with an aiohttp transport: httpx's own async transport costs ~15 ms of CPU per request
once dozens are in flight (encode/httpx#3215), aiohttp's well under 1 ms, and the worker keeps
dozens in flight. Every URL is checked against the host policy before the token is attached, and
every response is turned into bytes or a typed FetchError that says whether to try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import httpx
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport

from concur_postback import metrics
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import Kind, OAuthToken
from concur_postback.config import Settings
from concur_postback.errors import HostNotAllowed, InvalidPostback, PermanentFetch, RetryableFetch

DEFAULT_PAUSE_SECONDS = 5.0


class HostLimit:
    """Per-host request rate, requests in flight, and a pause that a 429 imposes on every caller."""

    def __init__(self, rate: float, in_flight: int) -> None:
        self._rate = AsyncLimiter(rate, 1)
        self._slots = asyncio.Semaphore(in_flight)
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            while (wait := self.paused_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            async with self._rate:
                yield


class ConcurClient:
    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._policy: HostPolicy = settings.host_policy
        pool = httpx.Limits(max_connections=settings.concur_max_in_flight * 4)
        self._http = http or httpx.AsyncClient(
            transport=AiohttpTransport(limits=pool),
            timeout=httpx.Timeout(
                settings.concur_read_timeout_seconds, connect=settings.concur_connect_timeout_seconds
            ),
            follow_redirects=False,  # a redirect could lead the token off Concur's hosts
        )
        self._limits: dict[str, HostLimit] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

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
        self, url: str, token: OAuthToken, params: dict[str, str] | None = None, kind: str = "other"
    ) -> bytes:
        """GET ``url`` with the token; ``kind`` labels the request's metrics."""
        limit = self._limit_for(url)
        async with limit.slot():
            started = time.perf_counter()
            try:
                response = await self._http.get(url, params=params, headers=self._headers(token))
            except httpx.TransportError as exc:
                failure = _network_failure(exc)
                metrics.record_fetch(kind, failure.outcome, time.perf_counter() - started)
                raise failure from None
            elapsed = time.perf_counter() - started
        status = response.status_code
        metrics.record_fetch(kind, "ok" if 200 <= status < 300 else f"http_{status}", elapsed)
        return _content_or_raise(response, limit)

    async def post(
        self, url: str, token: OAuthToken, params: dict[str, str] | None = None, body: bytes = b""
    ) -> httpx.Response:
        """POST to Concur (host policy and per-host limits as for `get`); the response whatever its
        status, so the caller can read Concur's `<Error>` document. Network failures raise FetchError."""
        headers = self._headers(token, **{"Content-Type": "application/xml"})
        async with self._limit_for(url).slot():
            try:
                return await self._http.post(url, params=params, headers=headers, content=body)
            except httpx.TransportError as exc:
                raise _network_failure(exc) from None

    def _limit_for(self, url: str) -> HostLimit:
        """The limits of the URL's host — after checking that the token may go there at all."""
        try:
            host = (self._policy.check_url(url).hostname or "").lower()
        except InvalidPostback as exc:
            raise HostNotAllowed(f"refusing to send a token to {exc.detail}") from None
        limit = self._limits.get(host)
        if limit is None:
            settings = self._settings
            limit = self._limits[host] = HostLimit(settings.concur_max_rps, settings.concur_max_in_flight)
        return limit

    def _headers(self, token: OAuthToken, **extra: str) -> dict[str, str]:
        authorization = f"{self._settings.concur_auth_scheme} {token.value}"
        return {"Authorization": authorization, "Accept": "application/xml", **extra}


class _NetworkFailure(RetryableFetch):
    def __init__(self, detail: str, outcome: str) -> None:
        super().__init__(detail)
        self.outcome = outcome  # the metrics label


def _network_failure(exc: httpx.TransportError) -> _NetworkFailure:
    """A timeout or connection error, as a retryable FetchError (never the URL: it may carry a query)."""
    if isinstance(exc, httpx.TimeoutException):
        return _NetworkFailure(f"timeout ({type(exc).__name__})", "timeout")
    return _NetworkFailure(f"connection error ({type(exc).__name__})", "connection_error")


def _content_or_raise(response: httpx.Response, limit: HostLimit) -> bytes:
    status = response.status_code
    if 200 <= status < 300:
        return response.content
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status == 429:
        limit.pause(retry_after if retry_after is not None else DEFAULT_PAUSE_SECONDS)
        raise RetryableFetch("HTTP 429 Too Many Requests", status, retry_after)
    if status >= 500 or status == 408:
        raise RetryableFetch(f"HTTP {status}", status, retry_after)
    if status in (401, 403):
        raise PermanentFetch(f"HTTP {status}: token revoked or not permitted", status)
    raise PermanentFetch(f"HTTP {status}", status)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
