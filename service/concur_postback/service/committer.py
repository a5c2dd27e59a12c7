"""Group commit: many concurrent postbacks share one Redis round trip and one script call.

A request hands its ingest-script arguments to the committer and awaits the outcome. One background
task sends everything that queued up while the previous round trip was in flight as one script call,
and resolves each request's future with its own result. Under load the batches grow by themselves; when
idle a request goes out alone at once. Either way nothing is answered 200 before Redis has replied.

REDIS_TIMEOUT_SECONDS is each request's own deadline, counted from its submission: a request still
waiting for its batch (behind others, with Redis hung) is answered 503 when its time is up, and the
committer drops it from what it sends next. A request answered 503 whose batch was already on its
way may still be stored — never a false 200, at worst a false 503: Concur's redelivery then meets
the dedup key and gets 200 `duplicate` (an itinerary change, or a profile or FOP notification still
waiting), or, once a worker has begun fetching that traveller's profile or FOP, becomes a
notification of its own, which reads the then current state again.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from concur_postback.config import Settings
from concur_postback.errors import StoreUnavailable
from concur_postback.inbox import (
    INGEST_SCRIPT,
    INGEST_SCRIPT_SHA,
    IngestArgs,
    IngestResult,
    ingest_argv,
    ingest_results,
)

WAIT_SHARE = 0.8  # of REDIS_TIMEOUT_SECONDS that WAIT may take: the rest is the script's and the reply's


class Committer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._max_batch = settings.ingest_max_batch
        self._timeout = settings.redis_timeout_seconds
        self._wait_ms = max(1, int(self._timeout * 1000 * WAIT_SHARE))
        self._waiting: list[tuple[IngestArgs, asyncio.Future[IngestResult]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-committer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            if not future.done():
                future.set_exception(StoreUnavailable("server is shutting down"))

    async def submit(self, call: IngestArgs) -> IngestResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        timer = loop.call_later(self._timeout, _give_up, future)  # cheaper than wait_for on the ack path
        self._waiting.append((call, future))
        self._wakeup.set()
        try:
            return await future
        finally:
            timer.cancel()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            waiting = [entry for entry in self._waiting if not entry[1].done()]  # not given up on
            batch, self._waiting = waiting[: self._max_batch], waiting[self._max_batch :]
            if not self._waiting:
                self._wakeup.clear()
            if not batch:
                continue
            try:
                results = await self._commit([call for call, _ in batch])
            except StoreUnavailable as error:  # this batch gets a 503; the committer keeps running
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _commit(self, calls: list[IngestArgs]) -> list[IngestResult]:
        """One batch's results, or StoreUnavailable for whatever kept Redis from taking it. Nothing
        else may escape: the committer must keep running, or every later postback would hang."""
        try:
            return await asyncio.wait_for(self._send(calls), self._timeout)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:  # ValueError: a reply's shape
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from None

    async def _send(self, calls: list[IngestArgs]) -> list[IngestResult]:
        argv = ingest_argv(calls, self._settings)
        try:
            replies = await self._store(argv)
        except NoScriptError:  # Redis restarted, failed over or flushed its script cache: load, resend
            await self._redis.script_load(INGEST_SCRIPT)
            replies = await self._store(argv)
        return ingest_results(replies)

    async def _store(self, argv: list[str | int | bytes]) -> list[object]:
        """The script's replies once the write is on the primary and, with REDIS_MIN_REPLICAS, on that
        many replicas: WAIT goes on the same connection, right after the script."""
        needed = self._settings.redis_min_replicas
        if not needed:
            replies: list[object] = await self._redis.evalsha(INGEST_SCRIPT_SHA, 0, *argv)
            return replies
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(INGEST_SCRIPT_SHA, 0, *argv)
            pipe.execute_command("WAIT", needed, self._wait_ms)
            replies, replicated = await pipe.execute()
        if replicated < needed:
            raise StoreUnavailable(f"only {replicated} of REDIS_MIN_REPLICAS={needed} replicas have it")
        return list(replies)


def _give_up(future: asyncio.Future[IngestResult]) -> None:
    """A request's deadline passed: 503 now; the committer skips it if it has not been sent yet."""
    if not future.done():
        future.set_exception(StoreUnavailable("redis did not answer in time"))
