"""Group commit: many concurrent postbacks share one Redis round trip and one script call.

A request hands its ingest-script arguments to the committer and awaits the outcome. One background
task sends everything that queued up while the previous round trip was in flight as one script call,
and resolves each request's future with its own result. Under load the batches grow by themselves; when
idle a request goes out alone at once. Either way nothing is answered before Redis has replied.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from concur_postback.config import Settings
from concur_postback.errors import StoreUnavailable
from concur_postback.inbox import INGEST_SCRIPT, INGEST_SCRIPT_SHA, IngestArgs, ingest_argv


@dataclass(frozen=True)
class IngestResult:
    accepted: bool  # False: a duplicate of notification ``id``
    id: str


class Committer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._max_batch = settings.ingest_max_batch
        self._timeout = settings.redis_timeout_seconds
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
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            if not self._waiting:
                self._wakeup.clear()
            try:
                results = await asyncio.wait_for(self._send([call for call, _ in batch]), self._timeout)
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                # ValueError: a reply of an unexpected shape. Anything caught fails this batch with a
                # 503; the committer itself must keep running, or every later postback would hang.
                error = StoreUnavailable(f"redis unavailable: {type(exc).__name__}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _send(self, calls: list[IngestArgs]) -> list[IngestResult]:
        argv = ingest_argv(calls, self._settings)
        try:
            replies: list[object] = await self._redis.evalsha(INGEST_SCRIPT_SHA, 0, *argv)
        except NoScriptError:  # Redis restarted or flushed its script cache: load and resend
            await self._redis.script_load(INGEST_SCRIPT)
            replies = await self._redis.evalsha(INGEST_SCRIPT_SHA, 0, *argv)
        pairs = zip(replies[::2], replies[1::2], strict=True)
        return [IngestResult(flag == 1, _text(ident)) for flag, ident in pairs]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
