"""Claims: two workers never process one notification at once, and a worker that lost its claim
changes nothing — over a real Redis, with real Processors and the simulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.concur.client import ConcurClient
from concur_postback.config import Settings
from concur_postback.keys import CLAIM_PREFIX, LEASED_KEY, RECORD_PREFIX, TRY_PREFIX
from concur_postback.sinks.file import FileSink
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.failed import list_failed
from concur_postback.workers.ledger import Ledger
from concur_postback.workers.pipeline import NotificationProcessor
from concur_postback.workers.session import Session
from tests.conftest import Pipeline, Simulator, profiles, store
from tests.workers.conftest import lease, run


def test_a_notification_claimed_by_one_job_is_skipped_by_another(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    ids = [record.id for record in store(redis, settings, profiles(3))]
    lease(redis, *ids)

    async def both(client: AsyncRedis) -> tuple[list[str], list[str]]:
        ledger = Ledger(client, settings)
        first = await ledger.claim("job-1", ids[:2], time.time())
        second = await ledger.claim("job-2", ids, time.time())  # the same ids queued twice
        return [c.record.id for c in first.held], [c.record.id for c in second.held]

    assert run(redis_url, both) == (ids[:2], ids[2:])
    assert redis.get(CLAIM_PREFIX + ids[0]) == b"job-1"
    lease_end = redis.zscore(LEASED_KEY, ids[0])
    assert lease_end is not None and lease_end <= time.time() + settings.worker_heartbeat_ttl_seconds + 5


def test_a_step_after_the_claim_was_lost_or_already_taken_changes_nothing(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    """A worker whose claim lapsed (cut off from Redis) and a client retry resending a script both
    find the claim not theirs: no second attempt is counted, nothing is rescheduled twice."""
    [record] = store(redis, settings, profiles(1))
    lease(redis, record.id)

    async def steps(client: AsyncRedis) -> list[bool]:
        ledger = Ledger(client, settings)
        await ledger.claim("job-1", [record.id], time.time())
        now = time.time()
        first = await ledger.retry("job-1", record, now + 5, "HTTP 503", now)
        resent = await ledger.retry("job-1", record, now + 5, "HTTP 503", now)  # reply lost, sent again
        lease(redis, record.id)  # the retry came due and a session took it for job 2
        await ledger.claim("job-2", [record.id], time.time())
        late = await ledger.fail("job-1", record.id, "HTTP 404", 1, time.time())  # job-1 came back late
        return [first, resent, late]

    assert run(redis_url, steps) == [True, False, False]
    assert redis.hget(TRY_PREFIX + record.id, "attempts") == b"1"
    assert redis.get(CLAIM_PREFIX + record.id) == b"job-2"


def test_a_fetch_outlasting_the_claim_ttl_keeps_its_claim(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, redis_url: str
) -> None:
    """A slow Concur answer (longer than WORKER_HEARTBEAT_TTL_SECONDS): the job renews its claims, so
    no other worker takes the notification over meanwhile."""
    settings = pipeline.settings.model_copy(update={"worker_heartbeat_ttl_seconds": 4})
    [record] = store(redis, settings, profiles(1))
    lease(redis, record.id)
    simulator.fault(match="/profile", status=0, delay_ms=5500)  # longer than the 4 s claim

    async def race(client: AsyncRedis) -> tuple[dict[str, int], list[str]]:
        concur = ConcurClient(settings)
        sink = FileSink.from_url(f"file://{pipeline.events_file}")
        processor = NotificationProcessor(
            settings, client, concur, {"f": sink}, vault_from_settings(settings)
        )
        batch = asyncio.create_task(Session(settings, client, processor).run([record.id], 50, 0))
        await asyncio.get_running_loop().run_in_executor(None, simulator.arrivals.get, True, 10)
        await asyncio.sleep(settings.worker_heartbeat_ttl_seconds + 0.5)  # the fault: past the first TTL
        other = await Ledger(client, settings).claim("other-worker", [record.id], time.time())
        outcomes = await batch
        await concur.aclose()
        await sink.aclose()
        return outcomes, [c.record.id for c in other.held]

    outcomes, taken = run(redis_url, race)
    assert taken == [] and outcomes == {"delivered": 1}
    assert len(pipeline.events()) == 1


def test_a_rerun_of_a_job_does_not_take_up_what_its_first_run_ended_and_its_own_claims_hold(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    """RQ re-runs a job whose worker died: notifications the first run already scheduled for a retry
    (or failed, or handed over) are no longer leased, so the re-run leaves them be. A claim script
    resent by the client after a lost reply finds its own claims held."""
    retried, kept = store(redis, settings, profiles(2))
    lease(redis, retried.id, kept.id)

    async def steps(client: AsyncRedis) -> tuple[list[str], list[str]]:
        ledger = Ledger(client, settings)
        await ledger.claim("run-1", [retried.id, kept.id], time.time())
        resent = await ledger.claim("run-1", [retried.id, kept.id], time.time())
        await ledger.retry("run-1", retried, time.time() + 300, "HTTP 503", time.time())
        redis.delete(CLAIM_PREFIX + kept.id)  # run 1's worker died; its claim lapsed
        rerun = await ledger.claim("run-2", [retried.id, kept.id], time.time())
        return [c.record.id for c in resent.held], [c.record.id for c in rerun.held]

    assert run(redis_url, steps) == ([retried.id, kept.id], [kept.id])
    assert (
        redis.zscore(LEASED_KEY, retried.id) is None
        and redis.hget(TRY_PREFIX + retried.id, "attempts") == b"1"
    )


def test_an_unreadable_record_is_a_failed_notification_not_a_stuck_batch(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    broken, newer, fine = store(redis, settings, profiles(3))
    redis.set(RECORD_PREFIX + broken.id, b"{not json")
    redis.set(RECORD_PREFIX + newer.id, newer.to_json()[:-1] + b', "field_from_a_newer_version": 1}')
    lease(redis, broken.id, newer.id, fine.id)

    async def claim(client: AsyncRedis) -> Any:
        return await Ledger(client, settings).claim("job", [broken.id, newer.id, fine.id], time.time())

    claims = run(redis_url, claim)
    assert [c.record.id for c in claims.held] == [fine.id]
    assert set(claims.ended) == {broken.id, newer.id}
    assert all(reason.startswith("unreadable record") for reason in claims.ended.values())
    assert {entry.id for entry in list_failed(redis)} == {broken.id, newer.id}
