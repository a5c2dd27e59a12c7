"""From a stored notification to an event in every sink: fetch, parse, deliver, record.

A job hands a batch of notification ids to ``Processor.process_batch``; all of them are processed
concurrently (the Concur client's per-host limits bound what is in flight), so RQ's per-job cost is
paid once per batch and a 100 ms Concur round trip does not cap a worker at 10 notifications/s.

Each notification is retried on its own (429/5xx/timeouts, with exponential backoff and jitter,
honouring Retry-After, within the job's time budget). Its event is then handed to deliveries.py,
which records it as done, atomically with retiring the record (and its encrypted token), and
delivers it to every sink independently: a re-run of the job after a crash skips it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from concur_postback import metrics
from concur_postback.backoff import retry_fetch
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.fop import parse_fop
from concur_postback.concur.notification import Kind
from concur_postback.concur.profiles import parse_profile
from concur_postback.concur.trips import parse_trip
from concur_postback.config import Settings
from concur_postback.errors import (
    FetchError,
    InvalidDocument,
    PermanentFetch,
    TokenDecryptionError,
)
from concur_postback.events import Event, FetchFailure, build_event, now_iso
from concur_postback.inbox import COALESCE_PREFIX, INBOX_KEY, PENDING_KEY, RECORD_PREFIX, Record
from concur_postback.sinks import Sink
from concur_postback.tokens import TokenVault
from concur_postback.workers.deliveries import DONE_PREFIX, Deliveries

log = structlog.get_logger("concur_postback.pipeline")

PARSERS: dict[Kind, Callable[[bytes], object]] = {
    Kind.ITINERARY: parse_trip,
    Kind.PROFILE: parse_profile,
    Kind.FOP: parse_fop,
}


@dataclass(frozen=True)
class Outcome:
    notification_id: str
    delivered: bool
    reason: str  # "delivered", "already delivered", "expired", or why it failed
    retryable: bool = False  # failed on our own infrastructure (Redis): worth running the job again


class Processor:
    def __init__(
        self, settings: Settings, redis: Redis, client: ConcurClient, sinks: list[Sink], vault: TokenVault
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._client = client
        self._sinks = sinks
        self._vault = vault
        self.deliveries = Deliveries(settings, redis, sinks)
        self._counters = metrics.notification_counters()
        self._stop_retries = asyncio.Event()
        self._retries: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.deliveries.register()
        self._retries = asyncio.create_task(self.deliveries.run_retries(self._stop_retries))

    async def aclose(self) -> None:
        self._stop_retries.set()
        if self._retries is not None:
            await self._retries
        await self._client.aclose()
        for sink in self._sinks:
            await sink.aclose()
        await self._redis.aclose()

    async def process_batch(self, ids: list[str], budget_seconds: float) -> list[Outcome]:
        deadline = time.monotonic() + budget_seconds
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.mget([RECORD_PREFIX + ident for ident in ids])
            pipe.mget([DONE_PREFIX + ident for ident in ids])
            raws, done = await pipe.execute()
        work = (
            self._process(ident, raw, was_done is not None, deadline)
            for ident, raw, was_done in zip(ids, raws, done, strict=True)
        )
        # Every notification runs to its end even if another one raises something unexpected: the job
        # must not fail (and be re-run by RQ) while some of its notifications are still being delivered.
        results = await asyncio.gather(*work, return_exceptions=True)
        return [_outcome(ident, result) for ident, result in zip(ids, results, strict=True)]

    async def return_to_inbox(self, ids: list[str]) -> None:
        """Hand notifications back to the pump, for a new job (a re-run skips any already delivered)."""
        await self._redis.rpush(INBOX_KEY, *ids)
        log.info("notification.returned_to_inbox", ids=ids)

    async def _process(
        self, notification_id: str, raw: bytes | str | None, done: bool, deadline: float
    ) -> Outcome:
        if raw is None:
            log.warning("notification.expired", id=notification_id)
            await self._redis.zrem(PENDING_KEY, notification_id)
            return Outcome(notification_id, False, "expired")
        record = Record.from_json(raw)
        bound = structlog.get_logger("concur_postback.pipeline").bind(
            id=record.id, kind=record.kind.value, request_id=record.request_id
        )
        if done:  # a re-run of a job whose worker died after delivering this one
            await self._retire(record)
            return Outcome(record.id, True, "already delivered")
        await self._release_coalescing(record)
        try:
            event = await self._event(record, deadline)
        except (FetchError, InvalidDocument, TokenDecryptionError) as exc:
            bound.warning("notification.failed", reason=str(exc))
            self._counters[record.kind, False].inc()
            return Outcome(record.id, False, str(exc))
        await self.deliveries.hand_over(record, event, event.to_json())
        self._counters[record.kind, True].inc()
        bound.info("notification.delivered", event_id=event.id, event_type=event.event_type)
        return Outcome(record.id, True, "delivered")

    async def _event(self, record: Record, deadline: float) -> Event:
        token = self._vault.decrypt(record.token, bound_to=record.id)
        user = None
        if record.userid_type and record.userid_value:
            user = (record.userid_type, record.userid_value)
        try:
            body = await self._fetch(
                record, lambda: self._client.fetch(record.kind, token, record.object_uri, user), deadline
            )
        except PermanentFetch as exc:
            if exc.status == 404 and record.event_type == "CANCEL":
                return build_event(record, None)  # the trip is gone: deliver what the notification said
            if exc.status in (401, 403):
                log.warning("fetch.unauthorized", id=record.id, kind=record.kind.value, status=exc.status,
                            request_id=record.request_id)  # fmt: skip
                return build_event(record, None, event_type="ERROR", error=FetchFailure(exc.status, str(exc)))
            raise
        data = PARSERS[record.kind](body)
        return build_event(record, data, fetched_at=now_iso(), login_id=getattr(data, "login_id", None))

    async def _fetch(
        self, record: Record, attempt: Callable[[], Coroutine[Any, Any, bytes]], deadline: float
    ) -> bytes:
        def on_retry(number: int, delay: float, exc: BaseException | None) -> None:
            log.info("fetch.retry", id=record.id, attempt=number, wait_s=round(delay, 2), reason=str(exc),
                     request_id=record.request_id)  # fmt: skip

        return await retry_fetch(attempt, self._settings, on_retry, deadline)

    async def _release_coalescing(self, record: Record) -> None:
        """Let a change that lands from now on queue again (this fetch may already miss it)."""
        if not record.dedup_key.startswith(COALESCE_PREFIX):
            return
        if await self._redis.get(record.dedup_key) == record.id.encode():
            await self._redis.delete(record.dedup_key)

    async def _retire(self, record: Record) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(PENDING_KEY, record.id)
            pipe.delete(RECORD_PREFIX + record.id)
            await pipe.execute()


def _outcome(notification_id: str, result: Outcome | BaseException) -> Outcome:
    if isinstance(result, Outcome):
        return result
    if not isinstance(result, Exception):
        raise result  # cancellation: the job timed out or the worker is stopping
    if isinstance(result, RedisError):  # Redis restarting or failing over: the record is still there
        reason = f"Redis unavailable: {type(result).__name__}: {result}"
        log.warning("notification.retry_later", id=notification_id, reason=reason)
        return Outcome(notification_id, False, reason, retryable=True)
    reason = f"unexpected {type(result).__name__}: {result}"
    log.error("notification.failed", id=notification_id, reason=reason)
    return Outcome(notification_id, False, reason)
