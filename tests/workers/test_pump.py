"""The pump turns stored notifications into RQ jobs exactly once, even across crashes and lease changes;
due retries and lapsed leases come back through it; every job has an id of its own."""

from __future__ import annotations

import time

from redis import Redis

from concur_postback.concur.notification import Kind, OAuthToken, Postback
from concur_postback.config import Settings
from concur_postback.keys import INBOX_KEY, LEASED_KEY, PUMP_LOCK_KEY, PUMPING_KEY, RETRY_KEY
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


def test_every_batch_gets_a_job_id_of_its_own_even_when_the_same_notification_heads_it(
    redis: Redis, settings: Settings
) -> None:
    """A notification that comes back (a retry, a lapsed lease) may head a later batch: reusing a job
    id would make RQ rewrite the first job's hash and skip or expire the second batch."""
    [ident] = stored_ids(redis, settings, 1)
    pump = make_pump(redis, settings)
    assert pump.drain() == 1
    redis.zadd(RETRY_KEY, {ident: 0})  # it comes back, due at once, while the first job still exists
    assert pump.drain() == 1
    jobs = job_queue(redis, settings).get_jobs()
    assert [job.args[0] for job in jobs] == [[ident], [ident]]
    assert len({job.id for job in jobs}) == 2


def test_due_retries_and_lapsed_leases_come_back_and_each_id_is_leased_while_in_a_job(
    redis: Redis, settings: Settings
) -> None:
    waiting, due, lapsed, leased, later = stored_ids(redis, settings, 5)
    redis.delete(INBOX_KEY)
    redis.rpush(INBOX_KEY, waiting)
    redis.zadd(RETRY_KEY, {due: 1, later: 4102444800})  # due long ago / in 2100
    redis.zadd(LEASED_KEY, {lapsed: 1, leased: 4102444800})  # its worker died / still running
    before = time.time()
    assert make_pump(redis, settings).drain() == 3
    assert sorted(queued_ids(redis, settings)) == sorted([waiting, due, lapsed])
    assert redis.zrange(RETRY_KEY, 0, -1) == [later.encode()]
    lease_ends = dict(redis.zrange(LEASED_KEY, 0, -1, withscores=True))
    assert set(lease_ends) == {i.encode() for i in (waiting, due, lapsed, leased)}
    assert all(lease_ends[i.encode()] > before + settings.job_timeout_seconds for i in (waiting, due, lapsed))
