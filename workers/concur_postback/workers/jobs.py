"""RQ job bodies. One job processes a batch of stored notifications (see pump.py and pipeline.py).

A job ends well whatever became of its notifications: each one's end (handed over, due for a retry,
failed) is recorded in Redis by the pipeline, so RQ's failed registry holds only jobs that broke
(a bug, or a job killed at its timeout), never a notification waiting for Concur.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
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

log = structlog.get_logger("concur_postback.jobs")
DEADLINE_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class WorkerContext:
    """What every job in this process shares, built once when the worker starts."""

    settings: Settings
    vault: TokenVault
    loop: LoopThread
    processor: NotificationProcessor


_context: WorkerContext | None = None


def install(settings: Settings) -> WorkerContext:
    """Build the process's context; configuration errors (key, sinks) surface now, not at the first job."""
    global _context  # noqa: PLW0603 - one context per worker process, by design
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set")
    vault = vault_from_settings(settings)
    sinks = build_sinks(settings)
    loop = LoopThread()
    processor = loop.run(_processor(settings, vault, sinks))
    _context = WorkerContext(settings, vault, loop, processor)
    return _context


async def _processor(settings: Settings, vault: TokenVault, sinks: dict[str, Sink]) -> NotificationProcessor:
    # Created inside the loop thread: aiohttp sessions and redis.asyncio connections belong to one loop.
    redis = async_client(settings.redis_url or "", connect_timeout=settings.redis_timeout_seconds)
    client = ConcurClient(
        settings, budget=SharedBudget(redis, settings.concur_max_rps), observe=metrics.record_fetch
    )
    processor = NotificationProcessor(settings, redis, client, sinks, vault)
    await processor.start()  # also starts this process's share of the sink-retry loop
    return processor


def uninstall() -> None:
    global _context  # noqa: PLW0603
    if _context is not None:
        _context.loop.run(_context.processor.aclose())
        _context.loop.stop()
        _context = None


def context() -> WorkerContext:
    return _context or install(load_settings())


def process_notifications(ids: list[str]) -> dict[str, int]:
    """The job: how many of ``ids`` ended which way (delivered, retrying, failed, skipped, …)."""
    ctx = context()
    job = get_current_job()
    timeout = (job.timeout if job is not None and job.timeout else None) or ctx.settings.job_timeout_seconds
    outcomes = ctx.loop.run(ctx.processor.process_batch(ids, timeout - DEADLINE_MARGIN_SECONDS))
    log.debug("job.done", job_id=job.id if job is not None else None, **outcomes)
    return outcomes
