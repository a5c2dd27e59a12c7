"""RQ job bodies. One job processes a batch of stored notifications (see pump.py and pipeline.py)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from rq import get_current_job

from concur_postback.concur.client import ConcurClient
from concur_postback.config import Settings, load_settings
from concur_postback.connections import async_client
from concur_postback.errors import ConfigurationError, DeliveryFailed
from concur_postback.sinks import Sink, build_sinks
from concur_postback.tokens import TokenVault, vault_from_settings
from concur_postback.workers.pipeline import Processor
from concur_postback.workers.runtime import AsyncRuntime

log = structlog.get_logger("concur_postback.jobs")
DEADLINE_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class WorkerContext:
    """What every job in this process shares, built once when the worker starts."""

    settings: Settings
    vault: TokenVault
    runtime: AsyncRuntime
    processor: Processor


_context: WorkerContext | None = None


def install(settings: Settings) -> WorkerContext:
    """Build the process's context; configuration errors (key, sinks) surface now, not at the first job."""
    global _context  # noqa: PLW0603 - one context per worker process, by design
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set")
    vault = vault_from_settings(settings)
    sinks = build_sinks(settings)
    runtime = AsyncRuntime()
    processor = runtime.run(_processor(settings, vault, sinks))
    _context = WorkerContext(settings, vault, runtime, processor)
    return _context


async def _processor(settings: Settings, vault: TokenVault, sinks: list[Sink]) -> Processor:
    # Created inside the runtime's loop: aiohttp sessions and redis.asyncio connections belong to one loop.
    redis = async_client(settings.redis_url or "", connect_timeout=settings.redis_timeout_seconds)
    processor = Processor(settings, redis, ConcurClient(settings), sinks, vault)
    await processor.start()  # also starts this process's share of the sink-retry loop
    return processor


def uninstall() -> None:
    global _context  # noqa: PLW0603
    if _context is not None:
        _context.runtime.run(_context.processor.aclose())
        _context.runtime.stop()
        _context = None


def context() -> WorkerContext:
    return _context or install(load_settings())


def process_notifications(ids: list[str]) -> dict[str, int]:
    ctx = context()
    job = get_current_job()
    timeout = (job.timeout if job is not None and job.timeout else None) or ctx.settings.job_timeout_seconds
    outcomes = ctx.runtime.run(ctx.processor.process_batch(ids, timeout - DEADLINE_MARGIN_SECONDS))
    returned = [o.notification_id for o in outcomes if o.retryable]
    if returned:  # Redis failed under them, their records are intact: another job takes them up
        ctx.runtime.run(ctx.processor.return_to_inbox(returned))  # if Redis still fails, RQ re-runs all
    failed = [o for o in outcomes if not o.delivered and not o.retryable and o.reason != "expired"]
    if failed:
        if job is not None:
            job.retries_left = 0  # each notification has had its attempts: RQ must not run them again
        reasons = "; ".join(f"{o.notification_id}: {o.reason}" for o in failed)
        raise DeliveryFailed(f"{len(failed)} of {len(ids)} notification(s) not delivered: {reasons}")
    delivered = sum(o.delivered for o in outcomes)
    return {
        "delivered": delivered,
        "returned": len(returned),
        "expired": len(outcomes) - delivered - len(returned),
    }
