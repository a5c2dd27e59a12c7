"""The one backoff schedule: fetches from Concur, backfill pages and sink deliveries all wait this way."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential from ``base``,
    capped at ``cap``, with "equal jitter" (a random point in the upper half, so retries of many
    notifications spread out), and never less than what the other side asked for in Retry-After."""
    backoff = min(cap, base * 2 ** (attempt - 1))
    return max(random.uniform(backoff / 2, backoff), retry_after or 0.0)  # noqa: S311 - jitter, not crypto
