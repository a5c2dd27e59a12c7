"""Delivery to sinks, each on its own: one fetch from Concur, then every sink independently.

Once an event is built every sink is tried concurrently, each bounded by SINK_TIMEOUT_SECONDS so a
slow sink cannot hold the others, while the job still holds the notification's claim (ledger.py).
Then one script hands the notification over, if the claim is still the job's: its record (with its
encrypted token) is deleted — Concur is never asked again — and, only if some sink failed, the event
is stored (`cp:ev:<id>`, sealed) with the sinks that owe it in `cp:owed:<id>` and each such sink's
own schedule (`cp:sink-retry:<sink id>`). So the common case costs one round trip and stores no
event; a worker that dies before the hand-over leaves the notification leased, and whoever takes it
up when the lease lapses fetches and delivers it again. A sink that fails is retried
on its own schedule (exponential backoff with jitter, Retry-After honoured) by whichever worker
*that has the sink* claims it first, without touching the sinks that succeeded. A worker without the
sink (an old one during a rolling deploy that adds it) never sees that sink's schedule, so the
delivery waits, visible in `status`, until a worker that has it takes it up. After
SINK_RETRY_HORIZON_SECONDS, or at once for a permanent failure, the delivery becomes a dead letter
(`cp:dead`) with its reason, until `concur-postback failed requeue` sends it again — to that sink only.

Delivery is at least once per sink: a worker that dies (or is cut off from Redis past its claim)
between a sink's success and the hand-over has that event delivered to that sink again, with the
same event `id`, which is the idempotency key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.typing import EncodableT

from concur_postback import metrics
from concur_postback.backoff import gave_up, next_try
from concur_postback.config import Settings
from concur_postback.connections import text
from concur_postback.errors import SinkError, TokenDecryptionError
from concur_postback.events import Event, event_from_json, open_event, seal_event
from concur_postback.inbox import Record
from concur_postback.keys import (
    ATTEMPTS_PREFIX,
    CLAIM_PREFIX,
    DEAD_KEY,
    DEAD_PREFIX,
    EVENT_PREFIX,
    LEASED_KEY,
    OWED_PREFIX,
    PENDING_KEY,
    RECORD_PREFIX,
    RETRY_KEY,
    SINK_LIVE_PREFIX,
    SINK_NAMES_KEY,
    SINK_RETRY_PREFIX,
    TRY_PREFIX,
    sink_retry_key,
)
from concur_postback.sinks import Sink, sink_label
from concur_postback.tokens import TokenVault

log = structlog.get_logger("concur_postback.deliveries")

# A claimed delivery comes due again this long after its attempt's own time limit (SINK_TIMEOUT_SECONDS)
# would have ended it: if the claiming worker died, another one takes it over then. The margin covers
# what may run past that limit: a driver finishing its cancellation (psycopg: up to 10 s) and the
# Redis writes that record the outcome.
CLAIM_MARGIN_SECONDS = 40
RETRY_POLL_SECONDS = 1.0  # sink retries back off from SINK_BACKOFF_SECONDS (1 s) up
LIVE_SECONDS = 30  # a sink counts as had by a live worker this long after that worker last said so
EVENT_MARGIN_SECONDS = 3600  # an event outlives its sinks' retry horizon by this much

# ARGV: owner, notification id, event, event TTL, now, claim end, then the ids of the sinks that owe
# the event (none: the event is not stored). Returns 0 (and changes nothing) if the claim is no
# longer this owner's.
_HAND_OVER = f"""
local owner, id, now, claim_end = ARGV[1], ARGV[2], ARGV[5], ARGV[6]
if redis.call('GET', '{CLAIM_PREFIX}' .. id) ~= owner then
  return 0
end
if #ARGV > 6 then
  redis.call('SET', '{EVENT_PREFIX}' .. id, ARGV[3], 'EX', ARGV[4])
  for i = 7, #ARGV do
    redis.call('HSET', '{OWED_PREFIX}' .. id, ARGV[i], now)
    redis.call('ZADD', '{SINK_RETRY_PREFIX}' .. ARGV[i], claim_end, id)  -- due for another worker if we die
  end
  redis.call('EXPIRE', '{OWED_PREFIX}' .. id, ARGV[4])
end
redis.call('ZREM', '{PENDING_KEY}', id)
redis.call('ZREM', '{LEASED_KEY}', id)
redis.call('ZREM', '{RETRY_KEY}', id)
redis.call('DEL', '{RECORD_PREFIX}' .. id, '{TRY_PREFIX}' .. id, '{CLAIM_PREFIX}' .. id)
return 1
"""
# KEYS: the schedules of this worker's sinks. ARGV: now, limit per sink, claim end. Returns sink
# index (1-based), notification id pairs, each pushed to the claim end so no other worker takes it.
_CLAIM = """
local out = {}
for k, key in ipairs(KEYS) do
  local due = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
  for _, member in ipairs(due) do
    redis.call('ZADD', key, ARGV[3], member)
    out[#out + 1] = k
    out[#out + 1] = member
  end
end
return out
"""
# ARGV: notification id, sink id, now, retention, then the letter's field, value pairs. The event is
# kept at least as long as the letter.
_DEAD = f"""
local id, sink, letter = ARGV[1], ARGV[2], ARGV[1] .. '.' .. ARGV[2]
redis.call('HSET', '{DEAD_PREFIX}' .. letter, unpack(ARGV, 5))
redis.call('EXPIRE', '{DEAD_PREFIX}' .. letter, ARGV[4])
redis.call('ZADD', '{DEAD_KEY}', ARGV[3], letter)
redis.call('ZREM', '{SINK_RETRY_PREFIX}' .. sink, id)
redis.call('HDEL', '{OWED_PREFIX}' .. id, sink)
for _, key in ipairs({{'{EVENT_PREFIX}' .. id, '{OWED_PREFIX}' .. id, '{ATTEMPTS_PREFIX}' .. id}}) do
  if redis.call('TTL', key) < tonumber(ARGV[4]) then
    redis.call('EXPIRE', key, ARGV[4])
  end
end
return 0
"""


# ARGV: notification id, sink id. That sink has it; once no sink owes the event and no dead letter
# needs it, the event goes. One script, so that a dead letter requeued meanwhile keeps it.
_DONE = f"""
local id, sink = ARGV[1], ARGV[2]
redis.call('HDEL', '{OWED_PREFIX}' .. id, sink)
redis.call('ZREM', '{SINK_RETRY_PREFIX}' .. sink, id)
if redis.call('HLEN', '{OWED_PREFIX}' .. id) > 0 then
  return 0
end
for _, other in ipairs(redis.call('HKEYS', '{SINK_NAMES_KEY}')) do
  if redis.call('ZSCORE', '{DEAD_KEY}', id .. '.' .. other) then
    return 0
  end
end
redis.call('DEL', '{EVENT_PREFIX}' .. id, '{ATTEMPTS_PREFIX}' .. id)
return 1
"""


def event_ttl(settings: Settings) -> int:
    """How long an event waits for its sinks: their retry horizon, and then some."""
    claim = settings.sink_timeout_seconds + CLAIM_MARGIN_SECONDS
    return int(settings.sink_retry_horizon_seconds + claim + EVENT_MARGIN_SECONDS)


@dataclass(frozen=True)
class Failure:
    reason: str
    permanent: bool
    retry_after: float | None


class Deliveries:
    def __init__(
        self, settings: Settings, redis: Redis, sinks: Mapping[str, Sink], vault: TokenVault
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._vault = vault
        self._sinks = dict(sinks)
        self._labels = {ident: sink_label(ident, sink) for ident, sink in self._sinks.items()}
        self._counters = {ident: metrics.delivery_counters(label) for ident, label in self._labels.items()}
        self._hand_over = redis.register_script(_HAND_OVER)
        self._claim = redis.register_script(_CLAIM)
        self._dead = redis.register_script(_DEAD)
        self._done = redis.register_script(_DONE)
        self._claim_seconds = settings.sink_timeout_seconds + CLAIM_MARGIN_SECONDS
        self._event_ttl = event_ttl(settings)
        self._schedules = [sink_retry_key(ident) for ident in self._sinks]

    async def register(self) -> None:
        """Record which sink ids mean which sinks (for `status` and `failed list`), and that a live
        worker has them."""
        names = cast("Mapping[EncodableT, EncodableT]", self._labels)  # str -> str, as the stubs cannot tell
        await self._redis.hset(SINK_NAMES_KEY, mapping=names)
        await self.say_alive()

    async def say_alive(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for ident in self._sinks:
                pipe.set(SINK_LIVE_PREFIX + ident, b"1", ex=LIVE_SECONDS)
            await pipe.execute()

    async def deliver(self, owner: str, record: Record, event: Event, payload: bytes) -> bool:
        """Try every sink, then hand the notification over: retire its record, and keep the event for
        the sinks that failed, each retried on its own schedule. False (nothing recorded) if the
        notification's claim is no longer ``owner``'s: another worker has taken it over.

        Each owed delivery is entered in its sink's schedule as if already claimed, and then given its
        retry time: should this worker die in between, it comes due for another worker then.
        """
        idents = list(self._sinks)
        if len(idents) == 1:  # most deployments: no task to gather
            failures = [await self._try(idents[0], event, payload)]
        else:
            failures = await asyncio.gather(*(self._try(ident, event, payload) for ident in idents))
        failed = {ident: failure for ident, failure in zip(idents, failures, strict=True) if failure}
        now = time.time()
        args: list[EncodableT] = [
            owner,
            record.id,
            seal_event(self._vault, record.id, payload) if failed else "",
            self._event_ttl,
            now,
            now + self._claim_seconds,
            *failed,
        ]
        if not await self._hand_over(args=args):
            return False
        for ident, failure in failed.items():
            await self._failed(record.id, ident, event, failure)
        return True

    async def _try(self, ident: str, event: Event, payload: bytes) -> Failure | None:
        sink = self._sinks[ident]
        try:
            async with asyncio.timeout(self._settings.sink_timeout_seconds):  # unlike wait_for, no task
                await sink.deliver(event, payload)
        except Exception as exc:
            return _classify(exc)
        self._counters[ident][metrics.DELIVERED].inc()
        log.debug(
            "delivery.delivered", sink=self._labels[ident], event_id=event.id, request_id=event.request_id
        )
        return None

    async def _delivered(self, notification_id: str, ident: str) -> None:
        await self._done(args=[notification_id, ident])

    async def _failed(self, notification_id: str, ident: str, event: Event, failure: Failure) -> None:
        settings = self._settings
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(ATTEMPTS_PREFIX + notification_id, ident, 1)
            pipe.expire(ATTEMPTS_PREFIX + notification_id, self._event_ttl)
            pipe.hget(OWED_PREFIX + notification_id, ident)
            attempts, _, since = await pipe.execute()
        now = time.time()
        start = float(since) if since else now
        base, cap = settings.sink_backoff_seconds, settings.sink_backoff_max_seconds
        ends = start + settings.sink_retry_horizon_seconds
        due = next_try(attempts, base, cap, retry_after=failure.retry_after, now=now, horizon_end=ends)
        if failure.permanent or due is None:
            reason = failure.reason
            if not failure.permanent:
                reason = gave_up(reason, attempts, start, now, "SINK_RETRY_HORIZON_SECONDS")
            await self.dead_letter(notification_id, ident, event, reason, int(attempts))
            return
        await self._redis.zadd(sink_retry_key(ident), {notification_id: due})
        self._counters[ident][metrics.RETRY_SCHEDULED].inc()
        log.warning("delivery.retry_scheduled", id=notification_id, sink=self._labels[ident],
                    event_id=event.id, reason=failure.reason, attempt=attempts, wait_s=round(due - now, 2),
                    request_id=event.request_id)  # fmt: skip

    async def dead_letter(
        self, notification_id: str, ident: str, event: Event, reason: str, attempts: int
    ) -> None:
        label = self._labels.get(ident) or text(await self._redis.hget(SINK_NAMES_KEY, ident) or ident)
        fields: dict[str, EncodableT] = {
            "notification_id": notification_id, "sink_id": ident, "sink": label, "event_id": event.id,
            "kind": event.kind, "reason": reason[:500], "attempts": attempts, "failed_at": time.time(),
            "request_id": event.request_id or "",
        }  # fmt: skip
        pairs: list[EncodableT] = [item for pair in fields.items() for item in pair]
        retention = self._settings.dead_letter_ttl_seconds
        await self._dead(args=[notification_id, ident, time.time(), retention, *pairs])
        if ident in self._counters:
            self._counters[ident][metrics.DEAD_LETTER].inc()
        log.error("delivery.dead_letter", id=notification_id, sink=label, event_id=event.id, reason=reason,
                  attempts=attempts, request_id=event.request_id)  # fmt: skip

    async def retry_due(self, limit: int = 100) -> int:
        """Claim and retry the deliveries of this worker's sinks that are due; return how many."""
        if not self._schedules:
            return 0
        now = time.time()
        claimed = await self._claim(keys=self._schedules, args=[now, limit, now + self._claim_seconds])
        idents = list(self._sinks)
        pairs = [(idents[int(claimed[n]) - 1], text(claimed[n + 1])) for n in range(0, len(claimed), 2)]
        await asyncio.gather(*(self._retry(ident, notification_id) for ident, notification_id in pairs))
        return len(pairs)

    async def next_due(self) -> float:
        """When the next retry of this worker's sinks is due (infinity if none)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for schedule in self._schedules:
                pipe.zrange(schedule, 0, 0, withscores=True)
            firsts = await pipe.execute()
        return min((float(first[0][1]) for first in firsts if first), default=float("inf"))

    async def retry_all_due(self) -> int:
        """Retry until nothing is due now (a burst worker does this before it stops)."""
        total = 0
        while tried := await self.retry_due():
            total += tried
        return total

    async def _retry(self, ident: str, notification_id: str) -> None:
        stored = await self._redis.get(EVENT_PREFIX + notification_id)
        if stored is None:  # only if Redis lost it (the event outlives its horizon): nothing to send
            log.error("delivery.event_missing", id=notification_id, sink=self._labels[ident])
            await self._redis.zrem(sink_retry_key(ident), notification_id)
            return
        try:
            payload = open_event(self._vault, notification_id, stored)
        except TokenDecryptionError:  # its key left the ring too early: wait for it to come back
            log.error("delivery.event_unreadable", id=notification_id, sink=self._labels[ident],
                      hint="sealed with a key TOKEN_ENCRYPTION_KEYS no longer holds")  # fmt: skip
            later = time.time() + self._settings.sink_backoff_max_seconds
            await self._redis.zadd(sink_retry_key(ident), {notification_id: later})
            return
        event = event_from_json(payload)
        failure = await self._try(ident, event, payload)
        if failure is None:
            await self._delivered(notification_id, ident)
        else:
            await self._failed(notification_id, ident, event, failure)

    async def abandon_unowned(self, now: float, limit: int = 100) -> int:
        """Deliveries owed to a sink that no live worker has (SINKS changed and stayed so) become dead
        letters once past the horizon; until then they wait for a worker that has it. Return how many."""
        names = {text(k): text(v) for k, v in (await self._redis.hgetall(SINK_NAMES_KEY)).items()}
        foreign = [ident for ident in names if ident not in self._sinks]
        alive = await self._redis.mget([SINK_LIVE_PREFIX + ident for ident in foreign]) if foreign else []
        done = 0
        for ident, live in zip(foreign, alive, strict=True):
            if live is not None:
                continue
            for raw in await self._redis.zrangebyscore(sink_retry_key(ident), "-inf", now, 0, limit):
                notification_id = text(raw)
                since = await self._redis.hget(OWED_PREFIX + notification_id, ident)
                if since is not None and now < float(since) + self._settings.sink_retry_horizon_seconds:
                    continue
                stored = await self._redis.get(EVENT_PREFIX + notification_id)
                if stored is None:
                    await self._redis.zrem(sink_retry_key(ident), notification_id)
                    continue
                reason = "no live worker has this sink (SINKS changed?) within SINK_RETRY_HORIZON_SECONDS"
                event = event_from_json(open_event(self._vault, notification_id, stored))
                await self.dead_letter(notification_id, ident, event, reason, 0)
                done += 1
        return done

    async def run_retries(self, stop: asyncio.Event) -> None:
        """Background loop of every worker process: retries whatever its sinks have due, from any
        worker, and says every few seconds that this worker has these sinks."""
        alive_at = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() - alive_at > LIVE_SECONDS / 3:
                    await self.say_alive()
                    alive_at = time.monotonic()
                if await self.retry_due() == 0:
                    await asyncio.wait_for(stop.wait(), RETRY_POLL_SECONDS)
            except TimeoutError:
                continue
            except Exception as exc:
                log.warning("delivery.retry_loop_error", error=type(exc).__name__)
                await asyncio.sleep(RETRY_POLL_SECONDS)


def _classify(exc: BaseException) -> Failure:
    if isinstance(exc, TimeoutError):
        return Failure("timed out", permanent=False, retry_after=None)
    retry_after = getattr(exc, "retry_after", None)
    permanent = isinstance(exc, SinkError) and exc.permanent
    reason = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
    return Failure(reason[:500], permanent, retry_after if isinstance(retry_after, int | float) else None)
