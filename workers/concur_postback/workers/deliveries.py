"""Delivery to sinks, each on its own: one fetch from Concur, then every sink independently.

Once an event is built it is handed over in one transaction: the event is stored (`cp:ev:<id>`), the
sinks it still owes go into `cp:owed:<id>`, and the notification's record (with its encrypted token)
is deleted — Concur is never asked again. Every sink is then tried concurrently, each bounded by
SINK_TIMEOUT_SECONDS so a slow sink cannot hold the others. A sink that fails is retried on its own
schedule (`cp:sink-retry`, exponential backoff with jitter, Retry-After honoured) by whichever worker
claims it first, without touching the sinks that succeeded. After its last attempt, or at once for a
permanent failure, the delivery becomes a dead letter (`cp:dead`) with its reason, until
`concur-postback failed requeue` sends it again — to that sink only.

Delivery is at least once per sink: a worker that dies between a sink's success and recording it
delivers that event to that sink again; the event `id` is the idempotency key.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from concur_postback import metrics
from concur_postback.backoff import backoff_delay
from concur_postback.config import Settings
from concur_postback.errors import SinkError
from concur_postback.events import Event, event_from_json
from concur_postback.inbox import PENDING_KEY, PREFIX, RECORD_PREFIX, Record
from concur_postback.sinks import Sink

log = structlog.get_logger("concur_postback.deliveries")

DONE_PREFIX = PREFIX + "done:"
EVENT_PREFIX = PREFIX + "ev:"
OWED_PREFIX = PREFIX + "owed:"
ATTEMPTS_PREFIX = PREFIX + "attempts:"
RETRY_KEY = PREFIX + "sink-retry"
DEAD_KEY = PREFIX + "dead"
DEAD_PREFIX = PREFIX + "dead:"
SINK_NAMES_KEY = PREFIX + "sinks"
# A claimed delivery comes due again this long after its attempt's own time limit (SINK_TIMEOUT_SECONDS)
# would have ended it: if the claiming worker died, another one takes it over then. The margin covers
# what may run past that limit: a driver finishing its cancellation (psycopg: up to 10 s) and the
# Redis writes that record the outcome.
CLAIM_MARGIN_SECONDS = 40
RETRY_POLL_SECONDS = 0.5

# Claim up to ARGV[2] due retries: push their due time to ARGV[3] so no other worker takes them.
_CLAIM_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
end
return due
"""


def sink_id(sink: Sink) -> str:
    """A short, stable id for a sink (from its name), used in Redis keys and dead-letter ids."""
    return hashlib.sha256(sink.name.encode()).hexdigest()[:8]


def letter_id(notification_id: str, sink: str) -> str:
    return f"{notification_id}.{sink}"


@dataclass(frozen=True)
class Failure:
    reason: str
    permanent: bool
    retry_after: float | None


class Deliveries:
    def __init__(self, settings: Settings, redis: Redis, sinks: list[Sink]) -> None:
        self._settings = settings
        self._redis = redis
        self._sinks = {sink_id(sink): sink for sink in sinks}
        self._counters = {ident: metrics.delivery_counters(sink.name) for ident, sink in self._sinks.items()}
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._claim_seconds = settings.sink_timeout_seconds + CLAIM_MARGIN_SECONDS

    async def register(self) -> None:
        """Record which sink ids mean which sinks, for `status` and `failed list`."""
        await self._redis.hset(
            SINK_NAMES_KEY, mapping={ident: sink.name for ident, sink in self._sinks.items()}
        )

    async def hand_over(self, record: Record, event: Event, payload: bytes) -> None:
        """Store the event and what it owes, retire the record, then try every sink.

        Each owed delivery is also entered in the retry schedule as if already claimed: should this
        worker die before the sinks answer, the deliveries come due for another worker then.
        """
        retention = self._settings.dead_letter_ttl_seconds
        letters = [letter_id(record.id, ident) for ident in self._sinks]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(EVENT_PREFIX + record.id, payload, ex=retention)
            pipe.sadd(OWED_PREFIX + record.id, *self._sinks)
            pipe.expire(OWED_PREFIX + record.id, retention)
            pipe.zadd(RETRY_KEY, dict.fromkeys(letters, time.time() + self._claim_seconds))
            pipe.set(DONE_PREFIX + record.id, b"1", ex=self._settings.dedup_ttl_seconds)
            pipe.zrem(PENDING_KEY, record.id)
            pipe.delete(RECORD_PREFIX + record.id)
            await pipe.execute()
        idents = list(self._sinks)
        failures = await asyncio.gather(*(self._try(ident, event, payload) for ident in idents))
        if not any(failures):  # the common case: one round trip to forget it all
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(EVENT_PREFIX + record.id, OWED_PREFIX + record.id)
                pipe.zrem(RETRY_KEY, *letters)
                await pipe.execute()
            return
        for ident, failure in zip(idents, failures, strict=True):
            if failure is None:
                await self._delivered(record.id, ident, event)
            else:
                await self._failed(record.id, ident, event, failure)

    async def _try(self, ident: str, event: Event, payload: bytes) -> Failure | None:
        sink = self._sinks[ident]
        try:
            await asyncio.wait_for(sink.deliver(event, payload), self._settings.sink_timeout_seconds)
        except Exception as exc:
            return _classify(exc)
        self._counters[ident][metrics.DELIVERED].inc()
        log.debug("delivery.delivered", sink=sink.name, event_id=event.id, request_id=event.request_id)
        return None

    async def _attempt(self, notification_id: str, ident: str, event: Event, payload: bytes) -> None:
        failure = await self._try(ident, event, payload)
        if failure is None:
            await self._delivered(notification_id, ident, event)
        else:
            await self._failed(notification_id, ident, event, failure)

    async def _delivered(self, notification_id: str, ident: str, event: Event) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.srem(OWED_PREFIX + notification_id, ident)
            pipe.zrem(RETRY_KEY, letter_id(notification_id, ident))
            pipe.scard(OWED_PREFIX + notification_id)
            *_, owed = await pipe.execute()
        if owed == 0 and not await self._has_dead_letters(notification_id):
            await self._redis.delete(EVENT_PREFIX + notification_id, ATTEMPTS_PREFIX + notification_id)

    async def _has_dead_letters(self, notification_id: str) -> bool:
        letters = [letter_id(notification_id, ident) for ident in self._sinks]
        scores = await self._redis.zmscore(DEAD_KEY, letters)
        return any(score is not None for score in scores)

    async def _failed(self, notification_id: str, ident: str, event: Event, failure: Failure) -> None:
        settings = self._settings
        letter = letter_id(notification_id, ident)
        attempts = int(await self._redis.hincrby(ATTEMPTS_PREFIX + notification_id, ident, 1))
        await self._redis.expire(ATTEMPTS_PREFIX + notification_id, settings.dead_letter_ttl_seconds)
        sink = self._sinks[ident].name
        if failure.permanent or attempts >= settings.sink_attempts:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(DEAD_PREFIX + letter, mapping={
                    "notification_id": notification_id, "sink_id": ident, "sink": sink, "event_id": event.id,
                    "kind": event.kind, "reason": failure.reason, "attempts": attempts,
                    "failed_at": time.time(), "request_id": event.request_id or "",
                })  # fmt: skip
                pipe.expire(DEAD_PREFIX + letter, settings.dead_letter_ttl_seconds)
                pipe.zadd(DEAD_KEY, {letter: time.time()})
                pipe.zrem(RETRY_KEY, letter)
                pipe.srem(OWED_PREFIX + notification_id, ident)
                await pipe.execute()
            self._counters[ident][metrics.DEAD_LETTER].inc()
            log.error("delivery.dead_letter", id=notification_id, sink=sink, event_id=event.id,
                      reason=failure.reason, attempts=attempts, request_id=event.request_id)  # fmt: skip
            return
        delay = backoff_delay(
            attempts, settings.sink_backoff_seconds, settings.sink_backoff_max_seconds, failure.retry_after
        )
        await self._redis.zadd(RETRY_KEY, {letter: time.time() + delay})
        self._counters[ident][metrics.RETRY_SCHEDULED].inc()
        log.warning("delivery.retry_scheduled", id=notification_id, sink=sink, event_id=event.id,
                    reason=failure.reason, attempt=attempts, wait_s=round(delay, 2),
                    request_id=event.request_id)  # fmt: skip

    async def retry_due(self, limit: int = 100) -> int:
        """Claim and retry deliveries that are due; return how many were tried."""
        claimed = await self._claim(
            keys=[RETRY_KEY], args=[time.time(), limit, time.time() + self._claim_seconds]
        )
        letters = [item.decode() for item in claimed]
        await asyncio.gather(*(self._retry(letter) for letter in letters))
        return len(letters)

    async def retry_all_due(self) -> int:
        """Retry until nothing is due now (a burst worker does this before it stops)."""
        total = 0
        while tried := await self.retry_due():
            total += tried
        return total

    async def _retry(self, letter: str) -> None:
        notification_id, _, ident = letter.rpartition(".")
        stored = await self._redis.get(EVENT_PREFIX + notification_id)
        if stored is None or ident not in self._sinks:
            # The event expired, or this worker does not have that sink (SINKS changed): nothing to send.
            log.error("delivery.unretriable", id=notification_id, sink_id=ident,
                      reason="event expired" if stored is None else "sink no longer configured")  # fmt: skip
            await self._redis.zrem(RETRY_KEY, letter)
            return
        payload = stored if isinstance(stored, bytes) else stored.encode()
        await self._attempt(notification_id, ident, event_from_json(payload), payload)

    async def run_retries(self, stop: asyncio.Event) -> None:
        """Background loop of every worker process: retries whatever is due, from any worker."""
        while not stop.is_set():
            try:
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
