"""The one backoff schedule (fetches from Concur, backfill pages and sink deliveries all wait this
way) and the one retry loop around requests to Concur."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from concur_postback.config import Settings
from concur_postback.errors import FetchError, FetchGivenUp, RetryableFetch


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential from ``base``,
    capped at ``cap``, with "equal jitter" (a random point in the upper half, so retries of many
    notifications spread out), and never less than what the other side asked for in Retry-After."""
    backoff = min(cap, base * 2 ** (attempt - 1))
    return max(random.uniform(backoff / 2, backoff), retry_after or 0.0)  # noqa: S311 - jitter, not crypto


async def retry_fetch(
    attempt: Callable[[], Awaitable[bytes]],
    settings: Settings,
    on_retry: Callable[[int, float, BaseException | None], None],
    deadline: float | None = None,
) -> bytes:
    """``attempt()`` until it returns: 429, 5xx and network errors (RetryableFetch) are retried up to
    FETCH_ATTEMPTS times on the backoff schedule, never sooner than Retry-After; ``on_retry`` is told
    of each wait. With a ``deadline`` (``time.monotonic()``), a wait that would end past it, or a
    Retry-After beyond FETCH_BACKOFF_MAX_SECONDS, raises FetchGivenUp: a job must end in time."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, FetchError) else None
        if (
            deadline is not None
            and retry_after is not None
            and retry_after > settings.fetch_backoff_max_seconds
        ):
            raise FetchGivenUp(f"{exc}; Concur asked to retry after {retry_after:.0f} s")
        delay = backoff_delay(
            state.attempt_number,
            settings.fetch_backoff_seconds,
            settings.fetch_backoff_max_seconds,
            retry_after,
        )
        if deadline is not None and time.monotonic() + delay > deadline:
            raise FetchGivenUp(f"{exc} after {state.attempt_number} attempt(s); no time left in this job")
        on_retry(state.attempt_number, delay, exc)
        return delay

    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.fetch_attempts),
        wait=wait,
        retry=retry_if_exception_type(RetryableFetch),
        reraise=True,
    )
    body = b""
    async for try_ in retrying:
        with try_:
            body = await attempt()
    return body
