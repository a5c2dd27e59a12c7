"""A worker's job: notifications taken as soon as they are waiting, processed concurrently.

A worker runs one RQ job at a time, and each job is a *session*. For the first half of
JOB_TIMEOUT_SECONDS it takes notifications into its in-flight set as they come — due
retries, lapsed leases, then arrivals — up to WORKER_MAX_IN_FLIGHT, each leased and claimed in one
script (ledger.py); then it takes no more, finishes what it holds within the job's time and ends, and
the worker starts the next session (starter.py keeps one waiting in the queue). So a notification
never waits for other notifications to finish, and RQ's per-job cost is paid once a session, not
once a notification. With room and nothing waiting, a session blocks on the inbox until something
arrives, the next retry or lease comes due, or a second has passed (a stopping worker is noticed that
soon). The arrival that wakes it is moved to `cp:taking`, which every take empties first: so one
arrival wakes one session, not all of them, and an arrival whose session dies before its take is
taken by the next session's.

Each take, and each burst of requests and replies that follows it, costs a wake-up whatever it
carries. So a busy session, one that found two notifications or more per WORKER_TAKE_INTERVAL_SECONDS
over the last five of them, looks again only an interval after each take and takes what came
meanwhile together (at once if its take was full: more is waiting). A session that is not busy looks
again at once: in a quieter hour an arrival is taken the moment it lands, at no cost of a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from concur_postback.config import Settings
from concur_postback.workers.ledger import Claims
from concur_postback.workers.pipeline import NotificationProcessor

log = structlog.get_logger("concur_postback.session")

ARRIVAL_WAIT_SECONDS = 1.0  # the longest block on the inbox: how soon a stopping worker stops taking
REDIS_PAUSE_SECONDS = 1.0  # after Redis failed under a take: it is restarting or failing over
BUSY_INTERVALS = 5  # a session counts what it found over this many take intervals ...
BUSY_PER_INTERVAL = 2  # ... and is busy at this many an interval: enough to be worth gathering


class Session:
    """One job's in-flight set. ``stopping`` says the worker was asked to stop: take no more."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        processor: NotificationProcessor,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._redis = redis
        self._processor = processor
        self._ledger = processor.ledger
        self._stopping = stopping
        self._room = settings.worker_max_in_flight
        self._take_interval = settings.worker_take_interval_seconds
        self._finds: deque[tuple[float, int]] = deque()  # (when, how many): recent takes that found some
        self._claim_seconds = settings.worker_heartbeat_ttl_seconds
        self._redis_timeout = settings.redis_timeout_seconds
        self._owner = secrets.token_hex(8)
        self._tasks: dict[asyncio.Task[str], str] = {}  # in flight -> notification id
        self._outcomes: Counter[str] = Counter()
        self._one_ended = asyncio.Event()  # set when a notification leaves the in-flight set

    async def run(
        self, first: list[str], budget_seconds: float, take_seconds: float, until_idle: bool = False
    ) -> dict[str, int]:
        """Process ``first`` (ids a job was given), and take what is waiting for ``take_seconds`` (with
        ``until_idle``, only until nothing is waiting or in flight); finish within ``budget_seconds``.
        Return how many notifications ended which way."""
        began = time.monotonic()
        deadline, take_until = began + budget_seconds, began + min(take_seconds, budget_seconds)
        renewing = asyncio.create_task(self._renew())
        try:
            if first:
                claims = await self._ledger.claim(self._owner, first, time.time())
                self._outcomes["skipped"] += len(first) - len(claims.held) - len(claims.ended)
                self._start(claims)
            wait = 0.0  # how long the next take may wait for an arrival
            while time.monotonic() < take_until and not self._stopping():
                if (next_wait := await self._take_more(take_until, until_idle, wait)) is None:
                    break
                wait = next_wait
            late = await self._finish(deadline)
        except asyncio.CancelledError:  # RQ's timeout or a stopping worker: none may go on unrenewed
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._give_back(set(self._tasks)))
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        self._outcomes["late"] += late
        return {name: count for name, count in self._outcomes.items() if count}

    async def _take_more(self, take_until: float, until_idle: bool, wait: float) -> float | None:
        """Take what is waiting (first waiting up to ``wait`` for an arrival), or wait for room. How
        long the next take may wait; None: an idle session ends."""
        room = self._room - len(self._tasks)
        if room <= 0:
            await self._until_one_ends(take_until - time.monotonic())
            return 0.0
        try:
            # Only a waiting take is bounded here (a hung connection); a bound on any take could fire
            # after Redis ran it, stranding its claims until they lapse.
            async with asyncio.timeout(wait + 2 * self._redis_timeout if wait else None):
                claims, next_due = await self._ledger.take(self._owner, room, time.time(), wait)
        except (RedisError, TimeoutError) as exc:
            log.warning("session.take_failed", error=type(exc).__name__)
            await asyncio.sleep(REDIS_PAUSE_SECONDS)
            return 0.0
        taken = len(claims.held) + len(claims.ended)
        self._start(claims)
        busy = self._busy(taken)
        if taken >= room or (taken and until_idle):
            return 0.0  # more may be waiting
        if until_idle:
            if not self._tasks:
                return None
            await self._until_one_ends(take_until - time.monotonic())  # it may schedule a retry
            return 0.0
        if busy:  # the next ones gather
            await asyncio.sleep(min(self._take_interval, max(0.0, take_until - time.monotonic())))
        # What was waiting is taken: the next take waits for an arrival (at once if one came meanwhile).
        return max(0.0, min(take_until - time.monotonic(), next_due - time.time(), ARRIVAL_WAIT_SECONDS))

    def _busy(self, taken: int) -> bool:
        """Whether this session found BUSY_PER_INTERVAL notifications a take interval or more, over the
        last BUSY_INTERVALS of them (counting the ``taken`` just now)."""
        if not taken or not self._take_interval:
            return False
        now = time.monotonic()
        self._finds.append((now, taken))
        while self._finds[0][0] < now - BUSY_INTERVALS * self._take_interval:
            self._finds.popleft()
        return sum(found for _, found in self._finds) >= BUSY_INTERVALS * BUSY_PER_INTERVAL

    def _start(self, claims: Claims) -> None:
        self._outcomes["failed"] += len(claims.ended)
        for ident, reason in claims.ended.items():
            log.error("notification.failed", id=ident, reason=reason)
        for claimed in claims.held:
            task = asyncio.create_task(self._processor.process(self._owner, claimed))
            self._tasks[task] = claimed.record.id
            task.add_done_callback(self._ended)

    async def _until_one_ends(self, seconds: float) -> None:
        self._one_ended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._one_ended.wait(), max(0.0, seconds))

    def _ended(self, task: asyncio.Task[str]) -> None:
        ident = self._tasks.pop(task, None)
        self._one_ended.set()
        if task.cancelled():  # given back
            return
        if (exc := task.exception()) is not None:  # a bug: its claim lapses and brings it back
            log.error("notification.broken", id=ident, error=repr(exc))
            self._outcomes["broken"] += 1
            return
        self._outcomes[task.result()] += 1

    async def _finish(self, deadline: float) -> int:
        """Wait for what is in flight until ``deadline``; give back what is late. How many were."""
        if not self._tasks:
            return 0
        _, late = await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        await self._give_back(late)
        return len(late)

    async def _give_back(self, tasks: set[asyncio.Task[str]]) -> None:
        """Stop these notifications and put them back in the schedule, due now, no attempt counted
        (one whose sinks are being tried finishes them and hands over: that part is shielded)."""
        if not tasks:
            return
        ids = [self._tasks[task] for task in tasks if task in self._tasks]
        ids = [ident for ident in ids if ident not in self._processor.delivering]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        with contextlib.suppress(RedisError):  # else their claims lapse, and bring them back later
            await self._ledger.release(self._owner, ids, time.time())

    async def _renew(self) -> None:
        """Keep this session's claims (and leases) alive while its notifications are being fetched (the
        processor keeps those of deliveries, which may outlast the session)."""
        delivering = self._processor.delivering
        while True:
            await asyncio.sleep(self._claim_seconds / 4)
            await self._ledger.keep(self._owner, [i for i in self._tasks.values() if i not in delivering])
