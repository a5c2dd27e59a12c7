"""Keeps one session job waiting in the RQ queue, so a worker that ends its session starts the next at once.

Every worker process runs a starter in a thread. It looks at the queue every POLL_SECONDS and, when no
job waits, enqueues a session (jobs.py) in a transaction guarded by WATCH on the queue, so two
starters never both add one. A session carries no notifications: it takes them when it runs
(session.py). Every job has an id of its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import structlog
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError
from rq import Queue, Retry

from concur_postback.config import Settings
from concur_postback.keys import INBOX_KEY, LEASED_KEY, RETRY_KEY, TAKING_KEY

log = structlog.get_logger("concur_postback.starter")

POLL_SECONDS = 1.0  # a session lasts tens of seconds: a second to replace its waiting job is ample
FAILED_JOB_TTL_SECONDS = 7 * 24 * 3600


class Starter:
    def __init__(self, redis: Redis, queue: Queue, settings: Settings, job: Callable[..., object]) -> None:
        self._redis = redis
        self._queue = queue
        self._settings = settings
        self._job = job

    def keep_one_waiting(self) -> bool:
        """Enqueue a session if none waits; whether this call did."""
        if self._queue.count:
            return False
        with self._redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self._queue.key)  # type: ignore[no-untyped-call]
                if pipe.llen(self._queue.key):
                    return False
                pipe.multi()
                self.enqueue(pipe)
                pipe.execute()
            except WatchError:
                return False
        return True

    def enqueue(self, pipe: Pipeline | None = None, until_idle: bool = False) -> None:
        """A session job (``until_idle``: one that ends when nothing is waiting, for a burst worker)."""
        job = self._queue.prepare_data(
            self._job,
            kwargs={"until_idle": until_idle},
            job_id=f"s-{secrets.token_hex(8)}",
            timeout=self._settings.job_timeout_seconds,
            # Nothing reads a result. Not 0: RQ 3.0 then deletes the job at once, which fails for a
            # re-run job whose earlier (abandoned) execution has expired.
            result_ttl=60,
            failure_ttl=FAILED_JOB_TTL_SECONDS,
            retry=Retry(max=3),  # re-run if abandoned by a killed worker (its notifications return anyway)
            description="a session: take notifications as they arrive",
        )
        self._queue.enqueue_many([job], pipeline=pipe)

    def next_work(self) -> float:
        """When there is next something to take: now if the inbox holds any, else the first due retry
        or lease (infinity if none)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.llen(INBOX_KEY)
            pipe.llen(TAKING_KEY)
            pipe.zrange(RETRY_KEY, 0, 0, withscores=True)
            pipe.zrange(LEASED_KEY, 0, 0, withscores=True)
            inbox, taking, *firsts = pipe.execute()
        if inbox or taking:
            return time.time()
        return min((float(first[0][1]) for first in firsts if first), default=float("inf"))

    def run(self, stop: threading.Event) -> None:
        log.info("starter.started")
        while not stop.is_set():
            try:
                self.keep_one_waiting()
            except RedisError as exc:
                log.warning("starter.redis_error", error=type(exc).__name__)
                stop.wait(1)
            stop.wait(POLL_SECONDS)
        log.info("starter.stopped")
