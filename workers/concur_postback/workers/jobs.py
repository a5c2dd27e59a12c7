"""The RQ job body: a session that takes stored notifications as they arrive (session.py, pipeline.py).

A job ends well whatever became of its notifications: each one's end (handed over, due for a retry,
failed) is recorded in Redis by the pipeline, so RQ's failed registry holds only jobs that broke
(a bug, or a job killed at its timeout), never a notification waiting for Concur.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from rq import get_current_job

from concur_postback import metrics
from concur_postback.budget import SharedBudget
from concur_postback.concur.client import ConcurClient
from concur_postback.config import Settings, load_settings
from concur_postback.connections import async_client
from concur_postback.errors import ConfigurationError
from concur_postback.sinks import Sink, build_sinks
from concur_postback.tokens import TokenVault, vault_from_settings
from concur_postback.workers.loop_thread import LoopThread
from concur_postback.workers.pipeline import NotificationProcessor
from concur_postback.workers.session import Session

log = structlog.get_logger("concur_postback.jobs")
DEADLINE_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class WorkerContext:
    """What every job in this process shares, built once when the worker starts."""

    settings: Settings
    vault: TokenVault
    loop: LoopThread
    redis: Redis  # the loop's client
    processor: NotificationProcessor
    stopping: threading.Event = field(default_factory=threading.Event)  # the worker was asked to stop


_context: WorkerContext | None = None


def install(settings: Settings) -> WorkerContext:
    """Build the process's context; configuration errors (key, sinks) surface now, not at the first job."""
    global _context  # noqa: PLW0603 - one context per worker process, by design
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set")
    vault = vault_from_settings(settings)
    sinks = build_sinks(settings)
    loop = LoopThread()
    redis, processor = loop.run(_processor(settings, vault, sinks))
    _context = WorkerContext(settings, vault, loop, redis, processor)
    return _context


async def _processor(
    settings: Settings, vault: TokenVault, sinks: dict[str, Sink]
) -> tuple[Redis, NotificationProcessor]:
    # Created inside the loop thread: aiohttp sessions and redis.asyncio connections belong to one loop.
    redis = async_client(settings.redis_url or "", connect_timeout=settings.redis_timeout_seconds)
    client = ConcurClient(
        settings, budget=SharedBudget(redis, settings.concur_max_rps), observe=metrics.record_fetch
    )
    processor = NotificationProcessor(settings, redis, client, sinks, vault)
    await processor.start()  # also starts this process's share of the sink-retry loop
    return redis, processor


def uninstall() -> None:
    global _context  # noqa: PLW0603
    if _context is not None:
        _context.loop.run(_context.processor.aclose())
        _context.loop.stop()
        _context = None


def context() -> WorkerContext:
    return _context or install(load_settings())


def process_notifications(ids: list[str] | None = None, until_idle: bool = False) -> dict[str, int]:
    """The job: a session (taking until ``until_idle`` says it is idle, for a burst worker), first
    with ``ids`` if given (a job an older version's pump queued). How many notifications ended which
    way (delivered, retrying, failed, skipped, …)."""
    ctx = context()
    job = get_current_job()
    timeout = (job.timeout if job is not None and job.timeout else None) or ctx.settings.job_timeout_seconds
    budget = timeout - DEADLINE_MARGIN_SECONDS
    session = Session(ctx.settings, ctx.redis, ctx.processor, ctx.stopping.is_set)
    outcomes = ctx.loop.run(session.run(ids or [], budget, timeout / 2, until_idle))
    log.info("session.ended", job_id=job.id if job is not None else None, **outcomes)
    return outcomes
