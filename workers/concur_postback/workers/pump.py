"""The pump: moves notification ids into RQ jobs, a batch per job, exactly once per pass.

Only the holder of a short Redis lease pumps. It moves up to a batch of ids into `cp:pumping` —
retries that are due and leases that lapsed (a dead worker's notifications, see keys.py) first, then
new arrivals from `cp:inbox` — and, in the same script, gives each a lease in `cp:leased` long enough
for its job to wait in the queue and start. Then, in one MULTI/EXEC guarded by WATCH on the lease, it
creates the RQ job for exactly those ids and deletes `cp:pumping`. So an id is in `cp:pumping` (the
pump died: the next holder enqueues it), or in one job, and always in `cp:leased` until that job ends
it: should the job be lost, the lapsed lease brings the id back. Every job has an id of its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import structlog
from redis import Redis
from redis.exceptions import RedisError, WatchError
from redis.typing import EncodableT
from rq import Queue, Retry

from concur_postback.config import Settings
from concur_postback.connections import text
from concur_postback.keys import INBOX_KEY, LEASED_KEY, PUMP_LOCK_KEY, PUMPING_KEY, RETRY_KEY

log = structlog.get_logger("concur_postback.pump")

LEASE_MS = 10_000
BACKLOG_POLL_SECONDS = 0.02
# If the lease (KEYS[3]) is ours (ARGV[2]), fill the pumping list (KEYS[2]) up to ARGV[1] ids: due
# retries (KEYS[4]) and lapsed leases (KEYS[5]) with a score up to ARGV[3], then the inbox (KEYS[1]);
# lease every pumping id until ARGV[4]. Returns all pumping ids. A pump that lost its lease must not
# touch cp:pumping.
_MOVE_SCRIPT = """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then
  return {}
end
local want = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[2])
for _, key in ipairs({KEYS[4], KEYS[5]}) do
  if want > 0 then
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[3], 'LIMIT', 0, want)
    if #due > 0 then
      redis.call('ZREM', key, unpack(due))
      redis.call('RPUSH', KEYS[2], unpack(due))
      want = want - #due
    end
  end
end
if want > 0 then
  local items = redis.call('LRANGE', KEYS[1], 0, want - 1)
  if #items > 0 then
    redis.call('LTRIM', KEYS[1], #items, -1)
    redis.call('RPUSH', KEYS[2], unpack(items))
  end
end
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[5], ARGV[4], id)
end
return ids
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
        # Long enough for a job to wait behind the queued ones and start (it then leases for itself).
        self._queue_lease = (
            settings.job_timeout_seconds * (settings.pump_max_queued_jobs + 1)
            + settings.worker_heartbeat_ttl_seconds
        )

    def hold_lease(self) -> bool:
        return bool(self._lease(keys=[PUMP_LOCK_KEY], args=[self._owner, LEASE_MS]))

    def release_lease(self) -> None:
        """Hand the lease on at once instead of after it lapses (a stopping worker)."""
        self._release(keys=[PUMP_LOCK_KEY], args=[self._owner])

    def pump_once(self, block_seconds: float) -> int:
        """Enqueue one batch; wait up to ``block_seconds`` for work. Return how many ids were enqueued."""
        if not self.hold_lease():
            return 0
        ids = self._take_batch()
        if not ids and block_seconds > 0:
            # Wait for an arrival without taking it (BLMOVE from the inbox's head back to its head),
            # or until the next retry is due, whichever is first.
            wait = min(block_seconds, max(0.01, self.next_due() - time.time()))
            # Redis takes a fractional timeout; redis-py's stubs say int.
            moved = self._redis.blmove(INBOX_KEY, INBOX_KEY, wait, "LEFT", "LEFT")  # type: ignore[arg-type]
            if moved is None and wait >= block_seconds:
                return 0
            ids = self._take_batch()
        return self._enqueue() if ids else 0

    def next_due(self) -> float:
        """When the next retry or lease comes due (infinity if none)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrange(RETRY_KEY, 0, 0, withscores=True)
            pipe.zrange(LEASED_KEY, 0, 0, withscores=True)
            firsts = pipe.execute()
        return min((float(first[0][1]) for first in firsts if first), default=float("inf"))

    def drain(self) -> int:
        """Enqueue everything that is waiting now (for burst workers and tests)."""
        total = 0
        while moved := self.pump_once(block_seconds=0):
            total += moved
        return total

    def run(self, stop: threading.Event, idle_seconds: float = 1) -> None:
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
        keys = [INBOX_KEY, PUMPING_KEY, PUMP_LOCK_KEY, RETRY_KEY, LEASED_KEY]
        now = time.time()
        args: list[EncodableT] = [self._settings.pump_batch_size, self._owner, now, now + self._queue_lease]
        return [text(item) for item in self._move(keys=keys, args=args)]

    def _enqueue(self) -> int:
        """Turn exactly what is in cp:pumping into one job, if the lease is still ours."""
        settings = self._settings
        with self._redis.pipeline(transaction=True) as pipe:
            try:
                # WATCH both: a changed lease or a changed pumping list aborts the transaction.
                pipe.watch(PUMP_LOCK_KEY, PUMPING_KEY)  # type: ignore[no-untyped-call]
                if pipe.get(PUMP_LOCK_KEY) != self._owner.encode():
                    return 0  # lease lost: the new holder will enqueue what is in cp:pumping
                ids = [text(item) for item in pipe.lrange(PUMPING_KEY, 0, -1)]
                if not ids:
                    return 0
                pipe.multi()
                job_id = f"n-{ids[0]}-{secrets.token_hex(4)}"  # unique: an id may head a later batch too
                job = self._queue.prepare_data(
                    self._job,
                    args=(ids,),
                    job_id=job_id,
                    timeout=settings.job_timeout_seconds,
                    # Nothing reads a result. Not 0: RQ 3.0 then deletes the job at once, which fails
                    # for a re-run job whose earlier (abandoned) execution has expired.
                    result_ttl=60,
                    failure_ttl=7 * 24 * 3600,
                    retry=Retry(max=3),  # re-run if abandoned by a killed worker; claims skip finished ones
                    description=f"process {len(ids)} notification(s)",
                )
                self._queue.enqueue_many([job], pipeline=pipe)
                pipe.delete(PUMPING_KEY)
                pipe.execute()
            except WatchError:
                return 0
        log.info("pump.enqueued", job_id=job_id, notifications=len(ids))
        return len(ids)
