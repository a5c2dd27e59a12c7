"""From a stored notification to an event in every sink: claim, fetch, parse, hand over.

A job's session (session.py) hands each notification it takes to ``NotificationProcessor.process``,
many at once (the Concur client's per-host limits bound what is in flight), so a 100 ms Concur round
trip does not cap a worker at 10 notifications/s.

A job makes one attempt per notification and never waits in place for a retry: a failure worth
another attempt (429, 5xx, 408, a timeout, a connection error) puts the notification in the durable
retry schedule (ledger.py), due after exponential backoff with jitter and at least Retry-After,
for up to FETCH_RETRY_HORIZON_SECONDS after its first failure; any worker's session takes it up when
it is due. What another attempt cannot change (a malformed document, 400, 404 other than for a CANCEL,
a token this worker cannot decrypt, a bug) makes it a failed notification with its reason. A
fetched notification's event is handed to deliveries.py, which delivers it to every sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from concur_postback import metrics
from concur_postback.backoff import gave_up, next_try
from concur_postback.companies import company_tokens
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.ess import parse_ess_event
from concur_postback.concur.fop import FormOfPayment, parse_fop
from concur_postback.concur.notification import Kind
from concur_postback.concur.profiles import Profile, parse_profile
from concur_postback.concur.trips import Trip, parse_trip
from concur_postback.config import Settings
from concur_postback.errors import (
    FetchDeferred,
    InvalidDocument,
    InvalidEvent,
    PermanentFetch,
    RetryableFetch,
    TokenDecryptionError,
)
from concur_postback.events import Event, FetchFailure, build_event, now_iso
from concur_postback.inbox import ESS, Record
from concur_postback.sinks import Sink
from concur_postback.tokens import TokenVault
from concur_postback.workers.deliveries import Deliveries
from concur_postback.workers.ess_fetch import EssFetcher
from concur_postback.workers.ledger import Claimed, Ledger
from concur_postback.workers.sweeper import Sweeper

log = structlog.get_logger("concur_postback.pipeline")

PARSERS: dict[Kind, Callable[[bytes], Trip | Profile | FormOfPayment]] = {
    Kind.ITINERARY: parse_trip,
    Kind.PROFILE: parse_profile,
    Kind.FOP: parse_fop,
}
# Stop this long before a record's TTL: a retry due later would find its token gone.
EXPIRY_MARGIN_SECONDS = 60
# Outcomes of one notification in a job (the job's result counts them).
DELIVERED, RETRYING, FAILED, DEFERRED, TAKEN_OVER = (
    "delivered",
    "retrying",
    "failed",
    "deferred",
    "taken_over",
)


class NotificationProcessor:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        client: ConcurClient,
        sinks: dict[str, Sink],
        vault: TokenVault,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._client = client
        self._sinks = sinks
        self._vault = vault
        self.ledger = Ledger(redis, settings)
        self.deliveries = Deliveries(settings, redis, sinks, vault)
        self.sweeper = Sweeper(settings, redis, self.deliveries)
        self._ess = EssFetcher(settings, client, company_tokens(redis, vault, client, settings))
        self._counters = metrics.notification_counters()
        # id -> owner, while its sinks are being tried: not to be given back, and its claim kept alive
        # even past the end of its session (the delivery is shielded, the session's renewal is not)
        self.delivering: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.deliveries.register()
        self._background = [
            asyncio.create_task(self.deliveries.run_retries(self._stop)),
            asyncio.create_task(self.sweeper.run(self._stop)),
            asyncio.create_task(self._renew_deliveries()),
        ]

    async def aclose(self) -> None:
        self._stop.set()
        for task in self._background:
            await task
        await self._client.aclose()
        for sink in self._sinks.values():
            await sink.aclose()
        await self._redis.aclose()

    async def process(self, owner: str, claimed: Claimed) -> str:
        """One notification, to one of the outcomes. Never raises: every end is recorded in Redis, or
        (Redis failing) left to the claim's lapse, which brings the notification back."""
        record = claimed.record
        bound = log.bind(id=record.id, kind=record.kind.value, request_id=record.request_id)
        try:
            try:
                event = await self._event(record)
            except FetchDeferred as exc:
                due = time.time() + (exc.retry_after or 0) + random.uniform(0, 1)  # noqa: S311 - jitter
                await self.ledger.release(owner, [record.id], due)
                bound.debug("fetch.deferred", wait_s=round(due - time.time(), 2))
                return DEFERRED
            except RetryableFetch as exc:
                return await self._retry_or_fail(owner, claimed, str(exc), exc.retry_after, bound)
            except (PermanentFetch, InvalidDocument, InvalidEvent, TokenDecryptionError) as exc:
                return await self._fail(owner, claimed, str(exc), bound)
            except RedisError:
                raise
            except Exception as exc:  # a bug: keep the notification for a requeue once it is fixed
                bound.exception("notification.unexpected_error")
                return await self._fail(owner, claimed, f"unexpected {type(exc).__name__}: {exc}", bound)
            # Shielded: once sinks are being tried, they are tried to the end and the outcome recorded
            # even if the job is cancelled now (its time is up), or the sinks that took the event would
            # get it again when the notification comes back.
            self.delivering[record.id] = owner  # before the shield: a give-back may come at once
            if not await asyncio.shield(self._deliver(owner, record, event)):
                return _taken_over(bound)
        except RedisError as exc:  # Redis restarting or failing over: try again soon, or let the claim lapse
            bound.warning("notification.retry_later", reason=f"Redis unavailable: {type(exc).__name__}")
            with contextlib.suppress(RedisError):
                await self.ledger.release(owner, [record.id], time.time() + 1)
            return RETRYING
        self._counters[record.kind, metrics.NOTIFICATION_DELIVERED].inc()
        bound.info("notification.delivered", event_id=event.id, event_type=event.event_type)
        return DELIVERED

    async def _deliver(self, owner: str, record: Record, event: Event) -> bool:
        try:
            return await self.deliveries.deliver(owner, record, event, event.to_json())
        finally:
            del self.delivering[record.id]

    async def _renew_deliveries(self) -> None:
        """Keep the claims of the notifications being delivered, whichever session took them."""
        interval = self._settings.worker_heartbeat_ttl_seconds / 4
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            owners: dict[str, list[str]] = {}
            for ident, owner in list(self.delivering.items()):
                owners.setdefault(owner, []).append(ident)
            for owner, ids in owners.items():
                await self.ledger.keep(owner, ids)

    async def _event(self, record: Record) -> Event:
        if record.source == ESS:
            return await self._ess.event(
                record, parse_ess_event(self._vault.open(record.payload or "", record.id))
            )
        token = self._vault.decrypt(record.token, bound_to=record.id)
        user = None
        if record.userid_type and record.userid_value:
            user = (record.userid_type, record.userid_value)
        try:
            body = await self._client.fetch(record.kind, token, record.object_uri, user)
        except PermanentFetch as exc:
            if exc.status == 404 and record.event_type == "CANCEL":
                return build_event(record, None)  # the trip is gone: deliver what the notification said
            if exc.status in (401, 403):
                log.warning("fetch.unauthorized", id=record.id, kind=record.kind.value, status=exc.status,
                            request_id=record.request_id)  # fmt: skip
                return build_event(record, None, event_type="ERROR", error=FetchFailure(exc.status, str(exc)))
            raise
        data = PARSERS[record.kind](body)
        return build_event(record, data, fetched_at=now_iso(), login_id=data.login_id)

    async def _retry_or_fail(
        self, owner: str, claimed: Claimed, reason: str, retry_after: float | None, bound: Any
    ) -> str:
        """Schedule the next attempt — or give up, if it would fall past the retry horizon (counted from
        the first failure) or past the record's own TTL."""
        settings = self._settings
        record = claimed.record
        now = time.time()
        attempt = claimed.attempts + 1
        since = claimed.since or now
        horizon_end = since + settings.fetch_retry_horizon_seconds
        expiry = record.received_ms / 1000 + settings.token_ttl_seconds - EXPIRY_MARGIN_SECONDS
        base, cap = settings.fetch_backoff_seconds, settings.fetch_backoff_max_seconds
        due = next_try(
            attempt, base, cap, retry_after=retry_after, now=now, horizon_end=min(horizon_end, expiry)
        )
        if due is None:
            limit = "FETCH_RETRY_HORIZON_SECONDS" if horizon_end <= expiry else "TOKEN_TTL_SECONDS"
            return await self._fail(owner, claimed, gave_up(reason, attempt, since, now, limit), bound)
        if await self.ledger.retry(owner, record, due, reason, now):
            self._counters[record.kind, metrics.NOTIFICATION_RETRY].inc()
            bound.info("fetch.retry", attempt=attempt, wait_s=round(due - now, 2), reason=reason)
            return RETRYING
        return _taken_over(bound)

    async def _fail(self, owner: str, claimed: Claimed, reason: str, bound: Any) -> str:
        record = claimed.record
        if not await self.ledger.fail(owner, record.id, reason, claimed.attempts + 1, time.time()):
            return _taken_over(bound)
        self._counters[record.kind, metrics.NOTIFICATION_FAILED].inc()
        bound.error("notification.failed", reason=reason)
        return FAILED


def _taken_over(bound: Any) -> str:
    """Our claim lapsed (Redis was out of reach for longer than it lasts) and another worker holds the
    notification now: this job leaves it to that one."""
    bound.warning("notification.taken_over")
    return TAKEN_OVER
