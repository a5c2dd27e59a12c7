"""Expired state leaves every index it is in: pending records past their TTL, old failed
notifications and dead letters, deliveries owed to a sink nobody has — over a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.config import Settings
from concur_postback.events import build_event
from concur_postback.keys import (
    CLAIM_PREFIX,
    DEAD_KEY,
    EVENT_PREFIX,
    FAILED_KEY,
    INBOX_KEY,
    OWED_PREFIX,
    PENDING_KEY,
    RECORD_PREFIX,
    RETRY_KEY,
    SINK_NAMES_KEY,
    sink_retry_key,
)
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.deliveries import Deliveries
from concur_postback.workers.failed import list_failed
from concur_postback.workers.status import collect
from concur_postback.workers.sweeper import Sweeper
from tests.conftest import profiles, store
from tests.processes import clean_env, cli


def sweep(redis_url: str, settings: Settings, now: float | None = None) -> dict[str, int]:
    async def main() -> dict[str, int]:
        client = AsyncRedis.from_url(redis_url)
        try:
            return await Sweeper(
                settings, client, Deliveries(settings, client, {}, vault_from_settings(settings))
            ).sweep(now or time.time())
        finally:
            await client.aclose()

    return asyncio.run(main())


def age(redis: Redis, ident: str, seconds: float) -> None:
    """As if the notification had been received ``seconds`` ago."""
    redis.zadd(PENDING_KEY, {ident: (time.time() - seconds) * 1000})


def test_a_notification_nobody_processed_within_its_ttl_becomes_a_visible_failed_notification(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    about_to_expire, gone, busy, fresh = store(redis, settings, profiles(4))
    ttl = settings.token_ttl_seconds
    age(redis, about_to_expire.id, ttl - 5)  # its record would expire within the next two sweeps
    age(redis, gone.id, ttl + 60)
    redis.delete(RECORD_PREFIX + gone.id)  # Redis expired it already: no worker was running
    age(redis, busy.id, ttl - 5)
    redis.set(CLAIM_PREFIX + busy.id, "a-job")  # being processed right now: its job decides
    assert sweep(redis_url, settings)["expired"] == 2

    entries = {entry.id: entry for entry in list_failed(redis)}
    assert set(entries) == {about_to_expire.id, gone.id}
    assert all(entry.reason.startswith("expired") and not entry.requeueable for entry in entries.values())
    assert entries[about_to_expire.id].kind == "profile"  # what its record said is kept ...
    assert redis.get(RECORD_PREFIX + about_to_expire.id) is None  # ... but not the token
    assert {raw.decode() for raw in redis.zrange(PENDING_KEY, 0, -1)} == {busy.id, fresh.id}
    status = collect(redis, settings.queue_name)
    assert (status["pending"], status["failed_notifications"]) == (2, 2)


def test_failed_notifications_and_dead_letters_leave_their_indexes_with_their_retention(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    """`failed requeue --all` used to find index entries whose letter had expired, say "expired" and
    exit 1; now the index goes with the letter."""
    retention = settings.dead_letter_ttl_seconds
    old = time.time() - retention - 10
    redis.zadd(DEAD_KEY, {"n1.s1": old, "n2.s1": time.time()})
    redis.hset("cp:dead:n2.s1", mapping={"notification_id": "n2", "sink": "x", "reason": "HTTP 400"})
    redis.zadd(FAILED_KEY, {"n3": old})
    done = sweep(redis_url, settings)
    assert (done["dead_gone"], done["failed_gone"]) == (1, 1)
    assert redis.zrange(DEAD_KEY, 0, -1) == [b"n2.s1"] and redis.zcard(FAILED_KEY) == 0
    env = clean_env(REDIS_URL=redis_url)
    assert "(expired: cannot be requeued)" in cli("failed", "list", env=env).stdout  # its event is gone
    requeued = cli("failed", "requeue", "--all", env=env)
    assert (requeued.returncode, requeued.stdout.strip()) == (0, "requeued 0")


def test_a_delivery_owed_to_a_sink_no_live_worker_has_is_a_dead_letter_after_its_horizon(
    redis: Redis, redis_url: str, make_settings: Any
) -> None:
    settings = make_settings(sink_retry_horizon_seconds=60)
    [record] = store(redis, settings, profiles(1))
    event = build_event(record, None)
    redis.hset(SINK_NAMES_KEY, mapping={"gone1": "https://old.example/hook [gone1]"})
    redis.set(EVENT_PREFIX + record.id, event.to_json())
    redis.hset(OWED_PREFIX + record.id, "gone1", time.time())
    redis.zadd(sink_retry_key("gone1"), {record.id: time.time()})
    assert sweep(redis_url, settings)["abandoned"] == 0  # within its horizon: it waits for a worker
    assert sweep(redis_url, settings, now=time.time() + 61)["abandoned"] == 1
    [letter] = list_failed(redis)
    assert (letter.id, letter.sink) == (f"{record.id}.gone1", "https://old.example/hook [gone1]")
    assert "no live worker has this sink" in letter.reason
    assert redis.zcard(sink_retry_key("gone1")) == 0


def test_a_pending_notification_no_worker_would_find_is_adopted(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    """The net under the promise of keys.py: a notification nowhere a worker looks (as a job of an
    older version that failed left some) goes back to the retry schedule; one waiting in the inbox
    is left where it is."""
    orphan, waiting = store(redis, settings, profiles(2))
    redis.lrem(INBOX_KEY, 0, orphan.id)
    for ident in (orphan.id, waiting.id):
        age(redis, ident, 120)
    assert sweep(redis_url, settings)["adopted"] == 1
    assert redis.zrange(RETRY_KEY, 0, -1) == [orphan.id.encode()]
    assert redis.lrange(INBOX_KEY, 0, -1) == [waiting.id.encode()]
    assert sweep(redis_url, settings)["adopted"] == 0  # now it is in the schedule


def test_an_unreadable_record_at_its_ttl_still_expires_and_does_not_stop_the_sweep(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    broken, other = store(redis, settings, profiles(2))
    redis.set(RECORD_PREFIX + broken.id, b"{not json")
    for ident in (broken.id, other.id):
        age(redis, ident, settings.token_ttl_seconds - 5)
    assert sweep(redis_url, settings)["expired"] == 2
    assert {entry.id for entry in list_failed(redis)} == {broken.id, other.id}
    assert redis.get(RECORD_PREFIX + broken.id) is None
