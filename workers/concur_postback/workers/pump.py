"""The pump: moves notification ids from the inbox into RQ jobs, a batch per job, exactly once.

Only the holder of a short Redis lease pumps. It moves up to a batch of ids from `cp:inbox` into
`cp:pumping`, then, in one MULTI/EXEC guarded by WATCH on the lease, creates the RQ job for those ids
and deletes `cp:pumping`. So the ids are either still in `cp:pumping` (the pump died: the next holder
enqueues them) or in exactly one job — never lost, never in two jobs, even if a lease changes hands.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue, Retry

from concur_postback.config import Settings
from concur_postback.inbox import INBOX_KEY, PUMP_LOCK_KEY, PUMPING_KEY

log = structlog.get_logger("concur_postback.pump")

LEASE_MS = 10_000
BACKLOG_POLL_SECONDS = 0.02
# If the lease (KEYS[3]) is ours (ARGV[2]), move up to ARGV[1] more ids from the inbox to the pumping
# list, atomically; return all pumping ids. A pump that lost its lease must not touch cp:pumping.
_MOVE_SCRIPT = """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then
  return {}
end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  redis.call('RPUSH', KEYS[2], unpack(items))
end
return redis.call('LRANGE', KEYS[2], 0, -1)
"""
# Take or extend the lease if it is free or already ours.
_LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""


class Pump:
    def __init__(
        self, redis: Redis, queue: Queue, settings: Settings, job: Callable[[list[str]], object]
    ) -> None:
        self._redis = redis
        self._queue = queue
        self._settings = settings
        self._job = job
        self._owner = secrets.token_hex(8)
        self._move = redis.register_script(_MOVE_SCRIPT)
        self._lease = redis.register_script(_LEASE_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)

    def hold_lease(self) -> bool:
        return bool(self._lease(keys=[PUMP_LOCK_KEY], args=[self._owner, LEASE_MS]))

    def release_lease(self) -> None:
        """Hand the lease on at once instead of after it lapses (a stopping worker)."""
        self._release(keys=[PUMP_LOCK_KEY], args=[self._owner])

    def pump_once(self, block_seconds: int) -> int:
        """Enqueue one batch; wait up to ``block_seconds`` for work. Return how many ids were enqueued."""
        if not self.hold_lease():
            return 0
        ids = self._take_batch()
        if not ids and block_seconds > 0:
            # Wait for work without taking it: BLMOVE from the inbox's head back to its head.
            if self._redis.blmove(INBOX_KEY, INBOX_KEY, block_seconds, "LEFT", "LEFT") is None:
                return 0
            ids = self._take_batch()
        return self._enqueue() if ids else 0

    def drain(self) -> int:
        """Enqueue everything in the inbox now (for burst workers and tests)."""
        total = 0
        while moved := self.pump_once(block_seconds=0):
            total += moved
        return total

    def run(self, stop: threading.Event, idle_seconds: int = 1) -> None:
        """Pump until ``stop``. While enough jobs wait for a worker, hold back: ids then accumulate
        in the inbox and the next job takes a full batch. That is what makes batches large under
        load (RQ's per-job cost paid per batch) and small, with no added latency, when idle."""
        log.info("pump.started", owner=self._owner)
        while not stop.is_set():
            try:
                if self._queue.count >= self._settings.pump_max_queued_jobs:
                    stop.wait(BACKLOG_POLL_SECONDS)
                elif self.pump_once(block_seconds=idle_seconds) == 0 and not self.hold_lease():
                    stop.wait(idle_seconds)  # another process pumps; check the lease again soon
            except RedisError as exc:
                log.warning("pump.redis_error", error=type(exc).__name__)
                stop.wait(idle_seconds)
        log.info("pump.stopped", owner=self._owner)

    def _take_batch(self) -> list[str]:
        keys = [INBOX_KEY, PUMPING_KEY, PUMP_LOCK_KEY]
        return _texts(self._move(keys=keys, args=[self._settings.pump_batch_size, self._owner]))

    def _enqueue(self) -> int:
        """Turn exactly what is in cp:pumping into one job, if the lease is still ours."""
        settings = self._settings
        with self._redis.pipeline(transaction=True) as pipe:
            try:
                # WATCH both: a changed lease or a changed pumping list aborts the transaction.
                pipe.watch(PUMP_LOCK_KEY, PUMPING_KEY)  # type: ignore[no-untyped-call]
                if pipe.get(PUMP_LOCK_KEY) != self._owner.encode():
                    return 0  # lease lost: the new holder will enqueue what is in cp:pumping
                ids = _texts(pipe.lrange(PUMPING_KEY, 0, -1))
                if not ids:
                    return 0
                pipe.multi()
                job = self._queue.prepare_data(
                    self._job,
                    args=(ids,),
                    job_id=f"n-{ids[0]}",
                    timeout=settings.job_timeout_seconds,
                    result_ttl=600,
                    failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=3),  # re-run if abandoned by a killed worker; delivered ones are skipped
                    description=f"process {len(ids)} notification(s)",
                )
                self._queue.enqueue_many([job], pipeline=pipe)
                pipe.delete(PUMPING_KEY)
                pipe.execute()
            except WatchError:
                return 0
        log.info("pump.enqueued", job_id=f"n-{ids[0]}", notifications=len(ids))
        return len(ids)


def _texts(items: Iterable[Any]) -> list[str]:
    return [item.decode() if isinstance(item, bytes) else str(item) for item in items]
