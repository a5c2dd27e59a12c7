"""RQ job bodies. One job processes a batch of stored notifications (see pump.py).

Until the fetch-and-deliver pipeline lands, processing a notification means: read its record, check
that its token decrypts with this worker's key, log it, and retire it from the pending set.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis import Redis
from rq import get_current_job

from concur_postback.config import Settings, load_settings
from concur_postback.inbox import COALESCE_PREFIX, PENDING_KEY, RECORD_PREFIX, Record
from concur_postback.tokens import TokenVault, vault_from_settings

log = structlog.get_logger("concur_postback.jobs")


@dataclass(frozen=True)
class WorkerContext:
    """What every job in this process shares, built once when the worker starts."""

    settings: Settings
    vault: TokenVault


_context: WorkerContext | None = None


def install(settings: Settings) -> WorkerContext:
    """Build the process's context (raising ConfigurationError now, not at the first job)."""
    global _context  # noqa: PLW0603 - one context per worker process, by design
    _context = WorkerContext(settings, vault_from_settings(settings))
    return _context


def context() -> WorkerContext:
    return _context or install(load_settings())


def process_notifications(ids: list[str]) -> dict[str, int]:
    job = get_current_job()
    if job is None:
        raise RuntimeError("process_notifications must run inside an RQ job")
    counts = {"processed": 0, "expired": 0}
    for notification_id in ids:
        counts["processed" if _process(job.connection, notification_id) else "expired"] += 1
    return counts


def _process(redis: Redis, notification_id: str) -> bool:
    raw = redis.get(RECORD_PREFIX + notification_id)
    if raw is None:
        log.warning("notification.expired", id=notification_id)
        redis.zrem(PENDING_KEY, notification_id)
        return False
    record = Record.from_json(raw)
    # Proves the key matches; the fetch itself comes with the next issue.
    context().vault.decrypt(record.token, bound_to=record.id)
    log.info(
        "notification.processed",
        id=record.id,
        kind=record.kind.value,
        subject=record.subject,
        trip_id=record.trip_id,
        event_type=record.event_type,
        request_id=record.request_id,
    )
    with redis.pipeline(transaction=True) as pipe:
        if record.dedup_key.startswith(COALESCE_PREFIX):
            pipe.delete(record.dedup_key)  # a later change to this traveller must be queued again
        pipe.zrem(PENDING_KEY, record.id)
        pipe.delete(RECORD_PREFIX + record.id)
        pipe.execute()
    return True
