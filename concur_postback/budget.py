"""The deployment's request budget toward each Concur host, shared by every worker through Redis.

Concur limits requests per domain (4,000 a minute for itineraries), not per process, so CONCUR_MAX_RPS
is the whole deployment's budget per host: ten workers together send no more than one would.

One small Lua script, not a rate-limiting library: the libraries at hand (limits, pyrate-limiter)
answer "allowed or not" and leave the caller to poll until a slot frees up, which costs a round trip
per poll and lets many waiting callers race for the same slot. Here each request *reserves* the next
free slot (GCRA: a "theoretical arrival time" that advances by 1/rate per request, on Redis's own
clock so that hosts' clocks do not matter) and sleeps until it: at most one round trip per request,
requests evenly spaced across all workers, no polling, no thundering herd. A 429 sets a pause on the
same key that every later reservation respects. A slot (or the pause's end) further away than
MAX_WAIT_SECONDS is not reserved: the caller gets FetchDeferred and puts the notification back in the
retry schedule, so a job never sleeps long holding its batch.

A worker busy enough to ask every few milliseconds does not pay that round trip for each request: a
reservation takes, besides the slot asked for, one for each other request that is waiting for it in
this process and, unless the host is booked more than STOCK_SECONDS ahead, one for each request this
process sent in the last STOCK_SECONDS. The spare slots stay in the process as its stock, each taken by a
later request and used no more than STOCK_SECONDS after its time, so the requests across all workers
stay within the budget over any span, plus at most STOCK_SECONDS' worth: far less than the burst that
Concur's per-minute limit (or the simulator's tenth of a second) allows. A slot not used by then is
left unused. A 429 seen here empties this process's stock and voids a reservation whose reply is on
its way, so the pause is kept here at once; other workers hold at most STOCK_SECONDS' worth of slots.
Requests waiting on a reservation that fails (deferred, Redis failing) fail with it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections import deque

from redis.asyncio import Redis
from redis.typing import EncodableT

from concur_postback.errors import FetchDeferred
from concur_postback.keys import BUDGET_PREFIX

MAX_WAIT_SECONDS = 5.0
IDLE_EXPIRY_MS = 3_600_000  # a host not asked for an hour forgets its state
STOCK_SECONDS = 0.05  # how late a spare slot may still be used, and the span the stock is sized for
MAX_STOCK = 32
_STOCK_MS = int(STOCK_SECONDS * 1000)

# KEYS[1]: the host's budget hash. ARGV: milliseconds per request, longest wait (ms), expiry (ms),
# slots wanted, spare slots wanted if the first is no more than ARGV[6] ms away. Returns {1, wait µs,
# slots} with that many consecutive slots reserved (the first `wait` away; as many as fit in the
# longest wait), or {0, wait µs} without.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tat', 'pause')
local slot = math.max(tonumber(state[1]) or 0, tonumber(state[2]) or 0, now)
local wait = slot - now
local interval, longest = tonumber(ARGV[1]), tonumber(ARGV[2])
if wait > longest then
  return {0, math.ceil(wait * 1000)}
end
local count = tonumber(ARGV[4])
if wait <= tonumber(ARGV[6]) then
  count = count + tonumber(ARGV[5])
end
count = math.max(1, math.min(count, math.floor((longest - wait) / interval) + 1))
redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', slot + count * interval))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, math.floor(wait * 1000), count}
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
        self._interval = 1 / requests_per_second
        self._interval_ms = f"{self._interval * 1000:.3f}"
        self._max_wait_ms = int(max_wait * 1000)
        self._most_spare = min(MAX_STOCK, int(STOCK_SECONDS / self._interval))
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._hosts: dict[str, _Host] = {}

    async def reserve(self, host: str) -> float:
        """Seconds until this request's slot; FetchDeferred if that is further than the longest wait."""
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(_key(host))
        now = time.monotonic()
        _drop_before(state.sent, now - STOCK_SECONDS)
        spare = min(len(state.sent), self._most_spare)
        state.sent.append(now)
        while True:
            # a spare slot more than STOCK_SECONDS past, sent now, could bunch with the ones after it
            _drop_before(state.stock, now - STOCK_SECONDS)
            if state.stock:
                return max(0.0, state.stock.popleft() - now)
            refill = state.refill
            if refill is None:
                break
            state.waiting += 1
            try:
                await refill.done.wait()
            finally:
                state.waiting -= 1
            if refill.error is not None:  # the same answer for every request that waited on it
                raise copy.copy(refill.error)
            now = time.monotonic()
        state.refill = refill = _Refill()
        try:
            return await self._reserve_slots(host, state, 1 + state.waiting, spare)
        except Exception as exc:
            refill.error = exc
            raise
        finally:
            state.refill = None
            refill.done.set()

    async def _reserve_slots(self, host: str, state: _Host, wanted: int, spare: int) -> float:
        """One round trip for this request's slot and the stock: the slots after it go to `state`."""
        args: list[EncodableT] = [
            self._interval_ms,
            self._max_wait_ms,
            IDLE_EXPIRY_MS,
            wanted,
            spare,
            _STOCK_MS,
        ]
        paused_until = state.paused_until
        reply = await self._reserve(keys=[state.key], args=args)
        wait = int(reply[1]) / 1_000_000
        if not int(reply[0]):
            raise FetchDeferred(
                f"request budget for {host} taken for the next {wait:.1f} s", retry_after=wait
            )
        now = time.monotonic()
        if state.paused_until != paused_until:  # this worker's 429 came while the reply was on its way
            if now + wait < state.paused_until:  # reserved before the pause reached Redis: keep to it
                retry_after = state.paused_until - now
                raise FetchDeferred(
                    f"{host} asked for a pause of {retry_after:.1f} s", retry_after=retry_after
                )
            return wait  # without spare slots: they may be from before the pause too
        first = now + wait
        state.stock.extend(first + n * self._interval for n in range(1, int(reply[2])))
        return wait

    async def pause(self, host: str, seconds: float) -> None:
        state = self._hosts.get(host)
        if state is not None:
            # Reserved before the 429, the stock and a reservation under way are not used: every later
            # request asks Redis, and waits.
            state.stock.clear()
            state.paused_until = max(state.paused_until, time.monotonic() + seconds)
        await self._pause(keys=[_key(host)], args=[int(seconds * 1000), IDLE_EXPIRY_MS])


class _Refill:
    """A reservation under way, which the requests that come meanwhile wait for."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.error: Exception | None = None  # what it raised (deferred, Redis failing), raised to all


class _Host:
    """This process's side of one host's budget."""

    __slots__ = ("key", "paused_until", "refill", "sent", "stock", "waiting")

    def __init__(self, key: str) -> None:
        self.key = key  # its budget hash in Redis
        self.stock: deque[float] = deque()  # spare slots, as time.monotonic() values, in order
        self.sent: deque[float] = deque()  # when the requests of the last STOCK_SECONDS asked
        self.refill: _Refill | None = None  # the round trip under way
        self.waiting = 0  # requests waiting for that reply, each to get a slot from it
        # time.monotonic() at the end of this process's latest 429 pause (a later end: a 429 since)
        self.paused_until = 0.0


def _drop_before(times: deque[float], cutoff: float) -> None:
    """Drop from the head of an ordered deque the times before ``cutoff``."""
    while times and times[0] < cutoff:
        times.popleft()


def _key(host: str) -> str:
    """Host names are short, but a key should not grow with whatever a URL says."""
    return BUDGET_PREFIX + (host if len(host) <= 100 else hashlib.sha256(host.encode()).hexdigest())
