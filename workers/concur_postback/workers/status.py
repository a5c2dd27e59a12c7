"""What is waiting and what failed, for `concur-postback status` (the metrics read the same depths)."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.registry import StartedJobRegistry

from concur_postback.depths import read_depths
from concur_postback.workers.failed import per_sink, unowned_sinks


def collect(redis: Redis, queue_name: str) -> dict[str, Any]:
    """``pending`` counts accepted notifications not yet handed over to the sinks or failed, wherever
    they are in the pipeline; ``failed_notifications`` and the sinks' dead letters need a person."""
    now = time.time()
    depths = read_depths(redis, queue_name, now)
    queue = Queue(queue_name, connection=redis)
    oldest = depths.oldest_pending_seconds(now)
    return {
        "pending": depths.pending,
        "oldest_pending_seconds": None if oldest is None else round(oldest, 3),
        "inbox": depths.inbox,
        "in_progress": depths.in_progress,
        "fetch_retries": depths.fetch_retries,
        "failed_notifications": depths.failed_notifications,
        "companies_to_reauthorize": depths.companies_to_reauthorize,
        "jobs": {
            "queued": depths.jobs_queued,
            # Read-only: RQ's `count` would first clean the registries (re-queue abandoned jobs, and
            # log about it), which is the workers' job, not a status query's.
            "started": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "failed": depths.jobs_failed,
        },
        "workers": Worker.count(queue=queue),
        "sinks": per_sink(redis),
        "sinks_without_a_live_worker": unowned_sinks(redis),
    }


def render(status: dict[str, Any]) -> str:
    jobs = status["jobs"]
    oldest = status["oldest_pending_seconds"]
    lines = [
        f"pending notifications : {status['pending']}"
        + (f" (oldest {oldest:.1f}s)" if oldest is not None else ""),
        f"  waiting for a worker: {status['inbox']}",
        f"  being worked on     : {status['in_progress']}",
        f"  waiting for a retry : {status['fetch_retries']}",
        f"failed notifications  : {status['failed_notifications']}"
        + ("  (concur-postback failed list)" if status["failed_notifications"] else ""),
        f"companies to re-auth. : {status['companies_to_reauthorize']}"
        + ("  (concur-postback company list)" if status["companies_to_reauthorize"] else ""),
        # Each RQ job is a worker's session, taking notifications as they come for a while.
        f"sessions (RQ jobs)    : {jobs['queued']} queued, {jobs['started']} running,"
        f" {jobs['failed']} failed",
        f"workers               : {status['workers']}",
    ]
    unowned = set(status["sinks_without_a_live_worker"])
    for sink, counts in status["sinks"].items():
        note = "  (no live worker has this sink)" if sink in unowned else ""
        lines.append(f"sink {sink}: {counts['retrying']} retrying, {counts['dead']} dead letter(s){note}")
    return "\n".join(lines)
