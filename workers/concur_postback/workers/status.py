"""What is waiting and what failed, for `concur-postback status` (and, later, metrics)."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from concur_postback.inbox import INBOX_KEY, PENDING_KEY, PUMPING_KEY
from concur_postback.workers.deadletters import per_sink


def collect(redis: Redis, queue_name: str) -> dict[str, Any]:
    """``pending`` counts accepted notifications not yet processed, wherever they are in the pipeline."""
    queue = Queue(queue_name, connection=redis)
    with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(PENDING_KEY)
        pipe.zrange(PENDING_KEY, 0, 0, withscores=True)
        pipe.llen(INBOX_KEY)
        pipe.llen(PUMPING_KEY)
        pending, oldest, inbox, pumping = pipe.execute()
    oldest_age = round(time.time() - oldest[0][1] / 1000, 3) if oldest else None
    return {
        "pending": pending,
        "oldest_pending_seconds": oldest_age,
        "inbox": inbox + pumping,
        "jobs": {
            "queued": queue.count,
            # Read-only: RQ's `count` would first clean the registries (re-queue abandoned jobs, and
            # log about it), which is the workers' job, not a status query's. Failed entries are
            # scored by their expiry.
            "started": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "failed": redis.zcount(FailedJobRegistry(queue=queue).key, time.time(), "+inf"),
        },
        "workers": Worker.count(queue=queue),
        "sinks": per_sink(redis),
    }


def render(status: dict[str, Any]) -> str:
    jobs = status["jobs"]
    oldest = status["oldest_pending_seconds"]
    lines = [
        f"pending notifications : {status['pending']}"
        + (f" (oldest {oldest:.1f}s)" if oldest is not None else ""),
        f"  waiting for the pump: {status['inbox']}",
        f"jobs queued / running : {jobs['queued']} / {jobs['started']}",
        f"jobs failed           : {jobs['failed']}",
        f"workers               : {status['workers']}",
    ]
    for sink, counts in status["sinks"].items():
        lines.append(f"sink {sink}: {counts['retrying']} retrying, {counts['dead']} dead letter(s)")
    return "\n".join(lines)
