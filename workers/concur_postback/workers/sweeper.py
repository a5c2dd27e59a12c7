"""State that expires leaves every index it is in, so `status`, the metrics and Redis memory tell the truth.

Redis expires keys on its own but not the index entries that point at them. Every worker runs this
sweep (one of them each round, by a short lock) every WORKER_MAINTENANCE_SECONDS:

* a pending notification that is nowhere a worker would find it (keys.py says none can be; a job of
  an older version that failed left some) goes back to the retry schedule;
* a pending notification whose record (with its token) reaches TOKEN_TTL_SECONDS without being
  processed — no worker ran, or none could keep up — becomes a failed notification ``expired`` with
  what its record said, instead of vanishing from the pipeline while `cp:pending` still counts it;
* failed notifications and dead letters leave their indexes when their retention ends;
* deliveries owed to a sink that no live worker has become dead letters at the sink's horizon.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.asyncio import Redis

from concur_postback.config import Settings
from concur_postback.keys import (
    CLAIM_PREFIX,
    DEAD_KEY,
    FAILED_KEY,
    INBOX_KEY,
    LEASED_KEY,
    PENDING_KEY,
    RECORD_PREFIX,
    RETRY_KEY,
    SWEEP_CURSOR_KEY,
    SWEEP_LOCK_KEY,
    TAKING_KEY,
)
from concur_postback.workers.deliveries import Deliveries
from concur_postback.workers.ledger import FAIL_FUNCTION

log = structlog.get_logger("concur_postback.sweeper")

BATCH = 500
ADOPT_AFTER_SECONDS = 60  # pending this long and nowhere a worker looks: adopted
INBOX_LOOK = 1000  # how far into the inbox the adoption looks for an id (it costs Redis time)

# ARGV: received-ms cutoff, now, retention, limit. Pending notifications received before the cutoff
# and not being processed right now become failed notifications `expired`; returns their ids.
_EXPIRE = (
    FAIL_FUNCTION
    + f"""
local out = {{}}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', '{PENDING_KEY}', '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])) do
  if redis.call('EXISTS', '{CLAIM_PREFIX}' .. id) == 0 then
    local fields = {{'reason', 'expired: not processed within TOKEN_TTL_SECONDS'}}
    record_fields(fields, redis.call('GET', '{RECORD_PREFIX}' .. id))
    redis.call('DEL', '{RECORD_PREFIX}' .. id)
    fail(id, ARGV[2], ARGV[3], fields)
    out[#out + 1] = id
  end
end
return out
"""
)


# ARGV: received-ms cutoff, now, how many to look at, how far into the inbox to look. Walks pending
# notifications received before the cutoff, from where the last walk stopped (cp:sweep:cursor), and
# puts back in the retry schedule, due now, any that is nowhere a worker would find it: not in the
# inbox or `taking` (as far as it looks), not leased, not due for a retry, not claimed. None should
# be; this is the net under that promise (and under a job from an older version that failed).
_ADOPT = f"""
local cursor = redis.call('GET', '{SWEEP_CURSOR_KEY}') or '-inf'
local ids = redis.call('ZRANGEBYSCORE', '{PENDING_KEY}', '(' .. cursor, ARGV[1],
  'WITHSCORES', 'LIMIT', 0, ARGV[3])
if #ids == 0 then
  redis.call('DEL', '{SWEEP_CURSOR_KEY}')  -- the walk is done: start from the oldest next time
  return {{}}
end
local adopted = {{}}
for i = 1, #ids, 2 do
  local id = ids[i]
  if not redis.call('ZSCORE', '{LEASED_KEY}', id) and not redis.call('ZSCORE', '{RETRY_KEY}', id)
      and redis.call('EXISTS', '{CLAIM_PREFIX}' .. id) == 0
      and not redis.call('LPOS', '{INBOX_KEY}', id, 'MAXLEN', ARGV[4])
      and not redis.call('LPOS', '{TAKING_KEY}', id, 'MAXLEN', ARGV[4]) then
    redis.call('ZADD', '{RETRY_KEY}', ARGV[2], id)
    adopted[#adopted + 1] = id
  end
end
redis.call('SET', '{SWEEP_CURSOR_KEY}', ids[#ids], 'EX', 3600)
return adopted
"""


class Sweeper:
    def __init__(self, settings: Settings, redis: Redis, deliveries: Deliveries) -> None:
        self._settings = settings
        self._redis = redis
        self._deliveries = deliveries
        self._expire = redis.register_script(_EXPIRE)
        self._adopt = redis.register_script(_ADOPT)
        self._owner = f"sweeper-{id(self):x}"

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._settings.worker_maintenance_seconds
        while not stop.is_set():
            try:
                # The lock names the one worker that sweeps this round; it lapses before the next.
                if await self._redis.set(SWEEP_LOCK_KEY, self._owner, nx=True, ex=max(1, interval - 1)):
                    await self.sweep(time.time())
            except Exception as exc:
                log.warning("sweep.error", error=type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                continue

    async def sweep(self, now: float) -> dict[str, int]:
        """One sweep; returns what it did (for the tests and the debug log)."""
        settings = self._settings
        # A little ahead of Redis's own expiry (two sweeps at most), so what the record said is kept.
        lookahead = 2 * settings.worker_maintenance_seconds
        cutoff_ms = int((now + lookahead - settings.token_ttl_seconds) * 1000)
        retention = settings.dead_letter_ttl_seconds
        expired: list[bytes] = []
        while batch := await self._expire(args=[cutoff_ms, now, retention, BATCH]):
            expired += batch
            if len(batch) < BATCH:
                break
        for ident in expired:
            log.warning("notification.expired", id=ident.decode())
        adopted = await self._adopt(args=[int((now - ADOPT_AFTER_SECONDS) * 1000), now, BATCH, INBOX_LOOK])
        for ident in adopted:
            log.warning("notification.adopted", id=ident.decode())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(FAILED_KEY, "-inf", now - retention)
            pipe.zremrangebyscore(DEAD_KEY, "-inf", now - retention)
            failed_gone, dead_gone = await pipe.execute()
        abandoned = await self._deliveries.abandon_unowned(now)
        done = {
            "adopted": len(adopted),
            "expired": len(expired),
            "failed_gone": failed_gone,
            "dead_gone": dead_gone,
            "abandoned": abandoned,
        }
        if any(done.values()):
            log.info("sweep.done", **done)
        return done
