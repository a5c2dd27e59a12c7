"""How much waits where: one read of the whole pipeline's state, for `status` and the metrics alike.

One script call, so the figures are of one moment and cost one round trip per scrape. RQ's keys are
spelled out here (the core does not import RQ); tests hold them to RQ's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from concur_postback.keys import (
    DEAD_KEY,
    FAILED_KEY,
    INBOX_KEY,
    LEASED_KEY,
    PENDING_KEY,
    REAUTHORIZE_KEY,
    RETRY_KEY,
    SINK_NAMES_KEY,
    SINK_RETRY_PREFIX,
    TAKING_KEY,
)

RQ_QUEUE_PREFIX = "rq:queue:"
RQ_FAILED_PREFIX = "rq:failed:"
RQ_INTERMEDIATE_SUFFIX = ":intermediate"

# ARGV: RQ queue key, RQ failed registry key, now. Queued jobs include those dequeued but not started
# (RQ's intermediate list). RQ scores a failed job by its expiry (-1: none); an expired one is gone at
# RQ's next clean-up, so it does not count.
_DEPTHS = f"""
local oldest = redis.call('ZRANGE', '{PENDING_KEY}', 0, 0, 'WITHSCORES')
local sink_retries = 0
for _, id in ipairs(redis.call('HKEYS', '{SINK_NAMES_KEY}')) do
  sink_retries = sink_retries + redis.call('ZCARD', '{SINK_RETRY_PREFIX}' .. id)
end
return {{
  redis.call('ZCARD', '{PENDING_KEY}'), oldest[2] or '',
  redis.call('LLEN', '{INBOX_KEY}') + redis.call('LLEN', '{TAKING_KEY}'),
  redis.call('ZCARD', '{LEASED_KEY}'), redis.call('ZCARD', '{RETRY_KEY}'),
  redis.call('ZCARD', '{FAILED_KEY}'),
  redis.call('LLEN', ARGV[1]) + redis.call('LLEN', ARGV[1] .. '{RQ_INTERMEDIATE_SUFFIX}'),
  redis.call('ZCARD', ARGV[2]) - redis.call('ZCOUNT', ARGV[2], 0, ARGV[3]),
  redis.call('ZCARD', '{DEAD_KEY}'), sink_retries, redis.call('SCARD', '{REAUTHORIZE_KEY}'),
}}
"""


@dataclass(frozen=True)
class Depths:
    pending: int  # accepted, not yet handed over or failed
    oldest_pending_ms: int | None  # when the oldest of them was received
    inbox: int  # waiting for a worker
    in_progress: int  # in a job (or its worker died and its lease has not lapsed yet)
    fetch_retries: int  # waiting for another attempt at Concur
    failed_notifications: int
    jobs_queued: int  # waiting for a worker, or dequeued and not started yet
    jobs_failed: int  # RQ's failed registry (a bug, or a job that timed out)
    dead_letters: int
    sink_retries: int  # deliveries waiting for (or in) a retry, all sinks
    companies_to_reauthorize: int  # Concur refused their refresh token: `company connect` again

    def oldest_pending_seconds(self, now: float) -> float | None:
        return None if self.oldest_pending_ms is None else max(0.0, now - self.oldest_pending_ms / 1000)


def read_depths(redis: Redis, queue_name: str, now: float) -> Depths:
    depths = redis.register_script(_DEPTHS)  # EVALSHA: the script's text is not sent each scrape
    values = depths(args=[RQ_QUEUE_PREFIX + queue_name, RQ_FAILED_PREFIX + queue_name, now])
    pending, oldest, *counts = values
    return Depths(int(pending), int(float(oldest)) if oldest else None, *(int(count) for count in counts))
