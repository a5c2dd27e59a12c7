"""Burst workers retire what the web tier stored; status counts add up; keys are checked at start."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from redis import Redis

from concur_postback.concur.notification import EventType, ItineraryNotification, Kind, OAuthToken, Postback
from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError
from concur_postback.keys import COALESCE_PREFIX, INBOX_KEY, PENDING_KEY, RECORD_PREFIX, SEEN_PREFIX
from concur_postback.tokens import generate_key
from concur_postback.workers.failed import list_failed, requeue
from concur_postback.workers.jobs import process_notifications
from concur_postback.workers.status import collect, render
from concur_postback.workers.worker import MAINTENANCE_LOCK_SECONDS, job_queue, run_worker
from tests.conftest import TOKEN, CapturedLogs, Pipeline, Simulator, profiles, store
from tests.workers.conftest import lease


def test_burst_worker_processes_everything_and_status_follows(
    pipeline: Pipeline, redis: Redis, captured_logs: CapturedLogs
) -> None:
    ids = [record.id for record in store(redis, pipeline.settings, profiles(7))]
    before = collect(redis, pipeline.settings.queue_name)
    assert before["pending"] == 7 and before["inbox"] == 7
    assert before["oldest_pending_seconds"] >= 0
    assert "pending notifications : 7" in render(before)

    pipeline.work()

    after = collect(redis, pipeline.settings.queue_name)
    assert after["pending"] == 0
    assert after["inbox"] == 0
    assert after["jobs"] == {"queued": 0, "started": 0, "failed": 0}
    assert (after["in_progress"], after["fetch_retries"], after["failed_notifications"]) == (0, 0, 0)
    assert sorted(entry["id"] for entry in captured_logs.named("notification.delivered")) == sorted(ids)
    assert sorted(event["notification_id"] for event in pipeline.events()) == sorted(ids)
    assert all(redis.get(RECORD_PREFIX + ident) is None for ident in ids)  # the encrypted token is gone too
    assert not list(redis.scan_iter(COALESCE_PREFIX + "*"))  # a later profile change queues again
    assert TOKEN not in captured_logs.text


def test_itinerary_dedup_keys_outlive_processing(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    uri = f"{simulator.url}/api/travel/trip/v1.1/T1"
    note = ItineraryNotification(uri, "T1", EventType.UPDATE, "2024-01-01T00:00:00", None)
    [record] = store(redis, pipeline.settings, [Postback(Kind.ITINERARY, OAuthToken(TOKEN), itinerary=note)])
    pipeline.work()
    assert redis.zcard(PENDING_KEY) == 0
    assert record.dedup_key.startswith(SEEN_PREFIX)
    assert redis.get(record.dedup_key).decode() == record.id  # a late redelivery is still a duplicate


def test_a_worker_with_another_key_fails_the_notification_with_a_readable_reason(
    pipeline: Pipeline, redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    [record] = store(redis, pipeline.settings, profiles(1))
    run_worker(
        pipeline.settings.model_copy(update={"token_encryption_key": SecretStr(generate_key())}), burst=True
    )
    status = collect(redis, pipeline.settings.queue_name)
    assert (status["pending"], status["failed_notifications"], status["jobs"]["failed"]) == (0, 1, 0)
    [entry] = list_failed(redis)
    assert entry.id == record.id and "cannot be decrypted" in entry.reason
    requeue(redis, [record.id], 3600)  # the right key is back in place
    pipeline.work()
    assert [event["notification_id"] for event in pipeline.events()] == [record.id]


def test_a_malformed_key_is_refused_at_start(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigurationError, match="32 random bytes"):
        run_worker(make_settings(token_encryption_key="not-a-key"), burst=True)


def test_an_unusable_sink_is_refused_at_start(make_settings: Callable[..., Settings]) -> None:
    for sinks, message in (("kafka://x", "unknown sink scheme"), ("file://relative.jsonl", "absolute path"),
                           ("file:///no/such/dir/e.jsonl", "does not exist"), ("", "empty")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=message):
            run_worker(make_settings(sinks=sinks), burst=True)


def test_a_worker_killed_while_cleaning_registries_blocks_recovery_for_a_minute_at_most(
    pipeline: Pipeline, redis: Redis
) -> None:
    """RQ's own clean-up lock lasts 899 s: a worker SIGKILLed while holding it would leave abandoned
    jobs where they are for 15 minutes. Ours lapses within MAINTENANCE_LOCK_SECONDS."""
    queue = job_queue(redis, pipeline.settings)
    assert queue.acquire_maintenance_lock()  # ... and the worker dies here, never releasing it
    assert 0 < redis.ttl(queue.registry_cleaning_key) <= MAINTENANCE_LOCK_SECONDS <= 60
    assert not queue.acquire_maintenance_lock()  # still one cleaner at a time


def test_a_job_stranded_between_dequeue_and_start_is_put_back_not_failed(
    pipeline: Pipeline, redis: Redis
) -> None:
    """A worker stopped right after BLMOVE (a SIGTERM while idle, a Redis restart eating the reply)
    leaves its job in RQ's intermediate list. RQ would fail it after a minute (a failed job in
    `status` for a week); the next clean-up after the grace period queues it again instead."""
    stranded, other = (record.id for record in store(redis, pipeline.settings, profiles(2)))
    redis.lrem(INBOX_KEY, 0, stranded)
    lease(redis, stranded)  # an older version's pump gave it to a job ...
    queue = job_queue(redis, pipeline.settings)
    job = queue.enqueue(process_notifications, [stranded], result_ttl=60)
    assert redis.lmove(queue.key, queue.intermediate_queue_key) == job.id.encode()  # ... whose worker died
    assert collect(redis, pipeline.settings.queue_name)["jobs"]["queued"] == 1  # status still shows it

    queue.intermediate_queue.cleanup(None, queue)  # first sight: a live worker may be about to start it
    assert redis.lrange(queue.intermediate_queue_key, 0, -1) == [job.id.encode()]
    first_seen = queue.intermediate_queue.get_first_seen_key(job.id)
    redis.set(first_seen, time.time() - pipeline.settings.worker_heartbeat_ttl_seconds - 1)  # time passes

    pipeline.work()  # the worker's start-up clean-up puts it back first, then works both jobs

    assert sorted(event["notification_id"] for event in pipeline.events()) == sorted([stranded, other])
    status = collect(redis, pipeline.settings.queue_name)
    assert status["jobs"] == {"queued": 0, "started": 0, "failed": 0} and status["pending"] == 0
    assert 0 < redis.ttl(job.key) <= 60  # finished, expiring: nothing of it stays in Redis
    assert redis.exists(first_seen) == 0
