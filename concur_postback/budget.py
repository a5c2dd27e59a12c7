"""The deployment's request budget toward each Concur host, shared by every worker through Redis.

Concur limits requests per domain (4,000 a minute for itineraries), not per process, so CONCUR_MAX_RPS
is the whole deployment's budget per host: ten workers together send no more than one would.

One small Lua script, not a rate-limiting library: the libraries at hand (limits, pyrate-limiter)
answer "allowed or not" and leave the caller to poll until a slot frees up, which costs a round trip
per poll and lets many waiting callers race for the same slot. Here each request *reserves* the next
free slot (GCRA: a "theoretical arrival time" that advances by 1/rate per request, on Redis's own
clock so that hosts' clocks do not matter) and sleeps until it: one round trip per request,
requests evenly spaced across all workers, no polling, no thundering herd. A 429 sets a pause on the
same key that every later reservation respects. A slot (or the pause's end) further away than
MAX_WAIT_SECONDS is not reserved: the caller gets FetchDeferred and puts the notification back in the
retry schedule, so a job never sleeps long holding its batch.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis
from redis.typing import EncodableT

from concur_postback.errors import FetchDeferred
from concur_postback.keys import BUDGET_PREFIX

MAX_WAIT_SECONDS = 5.0
IDLE_EXPIRY_MS = 3_600_000  # a host not asked for an hour forgets its state

# KEYS[1]: the host's budget hash. ARGV: milliseconds per request, longest wait (ms), expiry (ms).
# Returns {1, wait ms} with the slot reserved, or {0, wait ms} without.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tat', 'pause')
local slot = math.max(tonumber(state[1]) or 0, tonumber(state[2]) or 0, now)
local wait = slot - now
if wait > tonumber(ARGV[2]) then
  return {0, math.ceil(wait)}
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', slot + tonumber(ARGV[1])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, math.floor(wait)}
"""
# KEYS[1]: the host's budget hash. ARGV: pause (ms), expiry (ms). The longer of two pauses wins.
_PAUSE = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + tonumber(ARGV[1])
if until_ms > (tonumber(redis.call('HGET', KEYS[1], 'pause')) or 0) then
  redis.call('HSET', KEYS[1], 'pause', string.format('%.3f', until_ms))
end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[1]), tonumber(ARGV[2])))
return 0
"""


class SharedBudget:
    """`RequestBudget` (concur/client.py) for every worker of a deployment, over one Redis."""

    def __init__(self, redis: Redis, requests_per_second: float, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._interval_ms = 1000.0 / requests_per_second
        self._max_wait_ms = int(max_wait * 1000)
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)

    async def reserve(self, host: str) -> float:
        """Seconds until this request's slot; FetchDeferred if that is further than the longest wait."""
        args: list[EncodableT] = [f"{self._interval_ms:.3f}", self._max_wait_ms, IDLE_EXPIRY_MS]
        reserved, wait_ms = await self._reserve(keys=[_key(host)], args=args)
        if not reserved:
            raise FetchDeferred(f"request budget for {host} taken for the next {wait_ms / 1000:.1f} s",
                                retry_after=wait_ms / 1000)  # fmt: skip
        return int(wait_ms) / 1000

    async def pause(self, host: str, seconds: float) -> None:
        await self._pause(keys=[_key(host)], args=[int(seconds * 1000), IDLE_EXPIRY_MS])


def _key(host: str) -> str:
    """Host names are short, but a key should not grow with whatever a URL says."""
    return BUDGET_PREFIX + (host if len(host) <= 100 else hashlib.sha256(host.encode()).hexdigest())
