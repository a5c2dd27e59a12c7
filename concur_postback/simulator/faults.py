"""What stands between a request and its answer: the token check, the rate limit, scripted faults and
latency, and the record of every request (`GET /_simulator/requests`; tests await each arrival)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from concur_postback.concur.redaction import mask
from concur_postback.simulator.documents import XML, error_document


@dataclass
class Fault:
    match: str
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    delay_ms: int = 0
    body: str = ""
    seconds: float = 0  # > 0: every matching request for this long from now, however many ("times" unused)
    until: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.seconds > 0:
            self.until = time.monotonic() + self.seconds

    def applies(self, path: str, token: str) -> bool:
        if self.match not in path and self.match != token:
            return False
        if self.seconds > 0:
            return time.monotonic() < self.until
        return self.times > 0


@dataclass
class SeenRequest:
    """One API request as the simulator saw it (the token masked) and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    scheme: str
    token: str
    correlation_id: str | None = None  # the concur-correlationid a v4 call forwarded
    status: int = 0
    at: float = field(default_factory=time.time)


@dataclass
class RateLimit:
    """Concur's request limit as this stand-in enforces it (`--max-rps`): a token bucket refilled at
    ``rps`` per second holding a tenth of a second's worth, so a client that keeps to the rate (with
    the jitter of real scheduling) is never refused, and one that does not gets 429s."""

    rps: float
    tokens: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(1.0, self.rps / 10), self.tokens + (now - self.updated) * self.rps)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Gate:
    latency_ms: int = 0
    limit: RateLimit | None = None
    on_request: Callable[[SeenRequest], None] | None = None
    expired: Callable[[str], bool] = lambda token: False  # a token the simulator issued, no longer valid
    faults: list[Fault] = field(default_factory=list)
    # The latest requests, for /_simulator/requests: enough for a benchmark run of 18,000 notifications.
    requests: deque[SeenRequest] = field(default_factory=lambda: deque(maxlen=50_000))

    async def admit(self, request: Request) -> tuple[SeenRequest, str, Response | None]:
        """Record the request, check the token, apply faults and latency; a Response ends it early."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        seen = SeenRequest(
            request.method,
            request.url.path,
            dict(request.query_params),
            scheme,
            mask(token),
            request.headers.get("concur-correlationid"),
        )
        self.requests.append(seen)
        if self.on_request is not None:
            self.on_request(seen)
        if scheme not in ("OAuth", "Bearer") or not token or (scheme == "Bearer" and self.expired(token)):
            seen.status = 401
            return seen, token, Response(error_document("Unauthorized", stamped=False), 401, media_type=XML)
        if self.limit is not None and not self.limit.take():
            seen.status = 429
            return seen, token, Response(error_document("Rate limit exceeded"), 429, {"Retry-After": "1"})
        fault = self._take_fault(request.url.path, token)
        delay = (fault.delay_ms if fault else 0) or self.latency_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        if fault is not None and fault.status:  # status 0: only the delay, then the normal answer
            seen.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            body = fault.body or error_document(f"HTTP {fault.status}", stamped=False)
            return seen, token, Response(body, fault.status, headers, media_type=XML)
        return seen, token, None

    def _take_fault(self, path: str, token: str) -> Fault | None:
        for fault in self.faults:
            if fault.applies(path, token):
                fault.times -= 1
                return fault
        return None
