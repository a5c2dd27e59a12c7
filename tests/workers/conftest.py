"""Worker-side helpers (the pipeline fixture itself is in tests/conftest.py)."""

from __future__ import annotations

import time

from redis import Redis

from concur_postback.keys import LEASED_KEY


def lease(redis: Redis, *ids: str) -> None:
    """Give stored notifications a lease, as a take does (a job claims only what has one)."""
    redis.zadd(LEASED_KEY, dict.fromkeys(ids, time.time() + 300))
