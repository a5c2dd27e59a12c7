"""The one backoff schedule (fetch retries, sink retries and backfill pages all wait this way), how
a Retry-After header is read (Concur's and a webhook's), and the in-process retry loop of the one
caller that may wait in place: backfill, a command a person runs.

Workers never wait in place for a retry: a failed fetch goes to the durable retry schedule in Redis
(workers/ledger.py), a failed sink delivery to its sink's schedule (workers/deliveries.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from concur_postback.config import Settings
from concur_postback.errors import FetchDeferred, FetchError, RetryableFetch

PAGE_ATTEMPTS = 8  # backfill: attempts per summary page before the command gives up


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential from ``base``,
    capped at ``cap``, with "equal jitter" (a random point in the upper half, so retries of many
    notifications spread out), and never less than what the other side asked for in Retry-After."""
    backoff = min(cap, base * 2 ** min(attempt - 1, 64))
    return max(random.uniform(backoff / 2, backoff), retry_after or 0.0)  # noqa: S311 - jitter, not crypto


def next_try(
    attempt: int, base: float, cap: float, *, retry_after: float | None, now: float, horizon_end: float
) -> float | None:
    """When the attempt after failed attempt number ``attempt`` is due (the schedule above), or None
    if that would fall after ``horizon_end``: then it is time to give up."""
    due = now + backoff_delay(attempt, base, cap, retry_after)
    return None if due > horizon_end else due


def gave_up(reason: str, attempts: int, since: float, now: float, limit: str) -> str:
    """Why retrying stopped, as `failed list` shows it; ``limit`` names the setting that ended it."""
    return f"gave up after {attempts} attempt(s) in {(now - since) / 3600:.1f} h ({limit}): {reason}"


async def retry_fetch(
    attempt: Callable[[], Awaitable[bytes]],
    settings: Settings,
    on_retry: Callable[[int, float, BaseException | None], None],
    attempts: int = PAGE_ATTEMPTS,
) -> bytes:
    """``attempt()`` until it returns: 429, 5xx and network errors (RetryableFetch) are retried up to
    ``attempts`` times on the backoff schedule, never sooner than Retry-After, and a deferral by the
    request budget waits as long as it says without counting; ``on_retry`` is told of each wait."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, FetchError) else None
        if isinstance(exc, FetchDeferred):
            return retry_after or 0.0
        delay = backoff_delay(
            state.attempt_number,
            settings.fetch_backoff_seconds,
            settings.fetch_backoff_max_seconds,
            retry_after,
        )
        on_retry(state.attempt_number, delay, exc)
        return delay

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return not isinstance(exc, FetchDeferred) and stop_after_attempt(attempts)(state)

    retrying = AsyncRetrying(
        stop=stop, wait=wait, retry=retry_if_exception_type((RetryableFetch, FetchDeferred)), reraise=True
    )
    body = b""
    async for try_ in retrying:
        with try_:
            body = await attempt()
    return body


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
