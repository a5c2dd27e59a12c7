"""The pump turns stored notifications into RQ jobs exactly once, even across crashes and lease changes."""

from __future__ import annotations

from redis import Redis

from concur_postback.concur.notification import Kind, OAuthToken, Postback
from concur_postback.config import Settings
from concur_postback.inbox import (
    INBOX_KEY,
    PUMP_LOCK_KEY,
    PUMPING_KEY,
)
from concur_postback.workers.worker import job_queue, make_pump
from tests.conftest import profiles, store


def stored_ids(redis: Redis, settings: Settings, count: int) -> list[str]:
    return [record.id for record in store(redis, settings, profiles(count))]


def queued_ids(redis: Redis, settings: Settings) -> list[str]:
    queue = job_queue(redis, settings)
    return [ident for job in queue.get_jobs() for ident in job.args[0]]


def test_drain_enqueues_every_id_once_in_batches(redis: Redis, make_settings) -> None:
    settings = make_settings(pump_batch_size=10)
    ids = stored_ids(redis, settings, 25)
    assert make_pump(redis, settings).drain() == 25
    queue = job_queue(redis, settings)
    assert [len(job.args[0]) for job in queue.get_jobs()] == [10, 10, 5]
    assert queued_ids(redis, settings) == ids
    assert redis.llen(INBOX_KEY) == redis.llen(PUMPING_KEY) == 0
    assert make_pump(redis, settings).drain() == 0


def test_ids_left_by_a_crashed_pump_are_enqueued_by_the_next_one(redis: Redis, settings: Settings) -> None:
    ids = stored_ids(redis, settings, 5)
    for _ in range(3):  # a pump moved three ids, then died before creating their job
        redis.lmove(INBOX_KEY, PUMPING_KEY, "LEFT", "RIGHT")
    redis.delete(PUMP_LOCK_KEY)  # its lease expired
    assert make_pump(redis, settings).drain() == 5
    assert sorted(queued_ids(redis, settings)) == sorted(ids)


def test_only_the_lease_holder_pumps(redis: Redis, settings: Settings) -> None:
    stored_ids(redis, settings, 3)
    first, second = make_pump(redis, settings), make_pump(redis, settings)
    assert first.hold_lease()
    assert second.drain() == 0
    assert queued_ids(redis, settings) == []
    assert first.drain() == 3


def test_a_pump_that_lost_its_lease_mid_batch_enqueues_nothing(redis: Redis, settings: Settings) -> None:
    ids = stored_ids(redis, settings, 4)
    slow, other = make_pump(redis, settings), make_pump(redis, settings)
    assert slow.hold_lease()
    taken = slow._take_batch()
    assert taken == ids
    redis.delete(PUMP_LOCK_KEY)  # the slow pump's lease expired while it was paused ...
    assert other.drain() == 4  # ... and the next holder enqueued the ids it had moved
    assert slow._enqueue() == 0  # the late transaction is refused: the lease is no longer its own
    assert sorted(queued_ids(redis, settings)) == sorted(ids)


def test_a_stale_pump_cannot_slip_ids_into_another_pumps_batch(redis: Redis, settings: Settings) -> None:
    first = stored_ids(redis, settings, 1)
    stale, holder = make_pump(redis, settings), make_pump(redis, settings)
    assert stale.hold_lease()
    redis.delete(PUMP_LOCK_KEY)  # the stale pump paused past its lease ...
    assert holder.hold_lease()
    assert holder._take_batch() == first  # ... and the new holder took the inbox
    fop = Postback(Kind.FOP, OAuthToken("token-000001-abcdef"))
    later = [
        record.id for record in store(redis, settings, [fop])
    ]  # a postback arrives; the stale pump wakes
    assert stale._take_batch() == []  # without the lease it moves nothing
    assert holder._enqueue() == 1
    assert holder.drain() == 1
    assert queued_ids(redis, settings) == first + later
