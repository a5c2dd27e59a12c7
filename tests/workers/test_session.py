"""Sessions take notifications the moment they are waiting, each leased and claimed by exactly one
job; due retries and lapsed leases come first. Over a real Redis, the simulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.concur.client import ConcurClient
from concur_postback.config import Settings
from concur_postback.events import Event
from concur_postback.keys import CLAIM_PREFIX, INBOX_KEY, LEASED_KEY, RECORD_PREFIX, RETRY_KEY, TAKING_KEY
from concur_postback.sinks.file import FileSink
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.ledger import Claimed, Claims, Ledger
from concur_postback.workers.pipeline import NotificationProcessor
from concur_postback.workers.session import Session
from tests.conftest import Pipeline, profiles, store
from tests.workers.conftest import blocked_takes, run

FAR = 4102444800  # 2100


def test_a_take_brings_due_retries_and_lapsed_leases_first_and_leases_each_id_it_takes(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    waiting, due, lapsed, leased, later = (record.id for record in store(redis, settings, profiles(5)))
    redis.delete(INBOX_KEY)
    redis.rpush(INBOX_KEY, waiting)
    redis.zadd(RETRY_KEY, {due: 1, later: FAR})  # due long ago / in 2100
    redis.zadd(LEASED_KEY, {lapsed: 1, leased: FAR - 1})  # its worker died / still running
    before = time.time()

    async def take(client: AsyncRedis) -> tuple[list[str], float]:
        claims, next_due = await Ledger(client, settings).take("job-1", 10, time.time())
        return [claimed.record.id for claimed in claims.held], next_due

    taken, next_due = run(redis_url, take)
    assert taken == [due, lapsed, waiting]
    assert redis.zrange(RETRY_KEY, 0, -1) == [later.encode()]
    assert redis.llen(INBOX_KEY) == 0
    lease_ends = dict(redis.zrange(LEASED_KEY, 0, -1, withscores=True))
    assert set(lease_ends) == {i.encode() for i in (waiting, due, lapsed, leased)}
    assert all(lease_ends[i.encode()] > before + settings.worker_heartbeat_ttl_seconds for i in taken)
    assert all(redis.get(CLAIM_PREFIX + i) == b"job-1" for i in taken)
    assert next_due == min(lease_ends.values())  # until then, only an arrival brings work


def test_a_take_takes_no_more_than_its_room_in_arrival_order(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    ids = [record.id for record in store(redis, settings, profiles(5))]

    async def take(client: AsyncRedis) -> list[str]:
        claims, _ = await Ledger(client, settings).take("job-1", 2, time.time())
        return [claimed.record.id for claimed in claims.held]

    assert run(redis_url, take) == ids[:2]
    assert [i.decode() for i in redis.lrange(INBOX_KEY, 0, -1)] == ids[2:]


def test_a_waiting_take_wakes_for_one_arrival_only_and_survives_a_flushed_script_cache(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    """Two sessions wait; one arrival wakes exactly one of them, which holds it when its take returns;
    the other waits its time out. A Redis restarted without its scripts (NOSCRIPT) costs no arrival."""
    redis.delete(INBOX_KEY)
    redis.script_flush()
    [first, second] = store(redis, settings, profiles(2))
    redis.delete(INBOX_KEY)  # stored, not yet arrived

    async def wait_for_arrivals(client: AsyncRedis) -> tuple[list[list[str]], float]:
        ledger = Ledger(client, settings)

        async def waiting(owner: str) -> list[str]:
            claims, _ = await ledger.take(owner, 10, time.time(), wait=1.5)
            return [claimed.record.id for claimed in claims.held]

        async def arrive() -> None:
            await blocked_takes(client, 2)
            await client.rpush(INBOX_KEY, first.id)

        began = time.monotonic()
        *results, _ = await asyncio.gather(waiting("job-1"), waiting("job-2"), arrive())
        return results, time.monotonic() - began

    results, seconds = run(redis_url, wait_for_arrivals)
    assert sorted(results) == [[], [first.id]]
    assert seconds >= 1.4  # the other one waited its time out, taking nothing
    assert redis.llen(INBOX_KEY) == 0 and redis.llen(TAKING_KEY) == 0
    assert redis.get(CLAIM_PREFIX + first.id) in (b"job-1", b"job-2")
    assert redis.get(CLAIM_PREFIX + second.id) is None


def test_sessions_taking_at_once_never_take_one_notification_twice(
    redis: Redis, redis_url: str, settings: Settings
) -> None:
    ids = [record.id for record in store(redis, settings, profiles(60))]

    async def race(client: AsyncRedis) -> list[list[str]]:
        ledger = Ledger(client, settings)

        async def takes(owner: str) -> list[str]:
            got: list[str] = []
            while claims := (await ledger.take(owner, 3, time.time()))[0].held:
                got += [claimed.record.id for claimed in claims]
            return got

        return await asyncio.gather(*(takes(f"job-{n}") for n in range(4)))

    taken = run(redis_url, race)
    assert sorted(i for got in taken for i in got) == sorted(ids)
    assert all(got for got in taken)  # all four took some: they really ran side by side


class TakingLedger(Ledger):
    """The real ledger, telling each take that brought notifications: when, and which."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        super().__init__(redis, settings)
        self.takes: list[tuple[float, list[str]]] = []
        self.took = asyncio.Event()

    async def take(self, owner: str, room: int, now: float, wait: float = 0.0) -> tuple[Claims, float]:
        claims, next_due = await super().take(owner, room, now, wait)
        if claims.held:
            self.takes.append((time.monotonic(), [claimed.record.id for claimed in claims.held]))
            self.took.set()
        return claims, next_due


@dataclass
class Takes:
    """In place of the processor, whose fetches are not under test here: each taken one is done."""

    ledger: Ledger
    delivering: dict[str, str] = field(default_factory=dict)

    async def process(self, owner: str, claimed: Claimed) -> str:
        return "delivered"


def test_a_busy_session_lets_arrivals_gather_for_one_take_and_a_quieter_one_takes_each_at_once(
    redis: Redis, redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    """Two arrivals, one right after the other's take, are not enough to make a session busy: each is
    taken the moment it lands. Once it has found ten (two a take interval over five of them) it is
    busy: it looks again only an interval after each take, so the two that arrive meanwhile (apart,
    as two wake-ups would take them) come in one take."""
    interval = 0.4
    settings = make_settings(worker_take_interval_seconds=interval)
    first, second, *burst, gathered, with_it = (record.id for record in store(redis, settings, profiles(14)))
    redis.delete(INBOX_KEY)  # stored, not yet arrived

    async def scenario(client: AsyncRedis) -> tuple[list[list[str]], list[float]]:
        ledger = TakingLedger(client, settings)
        stopping = asyncio.Event()
        processor = cast(NotificationProcessor, Takes(ledger))
        session = asyncio.create_task(Session(settings, client, processor, stopping.is_set).run([], 60, 30))
        waits: list[float] = []  # from arrival to take
        await blocked_takes(client, 1)
        for ids in ([first], [second], burst):  # each right after the take before it
            ledger.took.clear()
            await client.rpush(INBOX_KEY, *ids)
            arrived = time.monotonic()
            await ledger.took.wait()
            waits.append(ledger.takes[-1][0] - arrived)
        await client.rpush(INBOX_KEY, gathered)  # while the session, busy now, lets them gather
        await asyncio.sleep(interval / 4)  # the scenario's spacing, not a wait for anything
        await client.rpush(INBOX_KEY, with_it)
        await blocked_takes(client, 1)
        stopping.set()
        await session
        return [ids for _, ids in ledger.takes], waits

    takes, waits = run(redis_url, scenario)
    assert takes == [[first], [second], burst, [gathered, with_it]]
    assert all(wait < interval / 2 for wait in waits), waits  # taken at once, not held for the interval


def test_a_running_session_takes_and_delivers_a_notification_that_arrives_after_it_started(
    pipeline: Pipeline, redis_url: str
) -> None:
    """The point of a session: nothing waits for a batch or for the job to end. The session then
    stops taking when its worker is asked to stop, and ends with what it did."""
    settings = pipeline.settings

    async def scenario(client: AsyncRedis) -> tuple[bool, dict[str, int]]:
        concur = ConcurClient(settings)
        sink = FileSink.from_url(f"file://{pipeline.events_file}")
        vault = vault_from_settings(settings)
        processor = NotificationProcessor(settings, client, concur, {"f": sink}, vault)
        stopping = asyncio.Event()
        session = asyncio.create_task(Session(settings, client, processor, stopping.is_set).run([], 120, 60))
        await asyncio.sleep(0.2)  # a session with nothing to take blocks on the inbox
        posted = await asyncio.to_thread(pipeline.post, type="Profile", oauth_token_key="t" * 24)
        deadline = time.monotonic() + 20
        while not [e for e in pipeline.events() if e["notification_id"] == posted]:
            assert time.monotonic() < deadline, "the session did not deliver the arrival"
            await asyncio.sleep(0.02)
        still_running = not session.done()
        stopping.set()
        outcomes = await asyncio.wait_for(session, 10)
        await concur.aclose()
        await sink.aclose()
        return still_running, outcomes

    still_running, outcomes = run(redis_url, scenario)
    assert still_running
    assert outcomes == {"delivered": 1}
    assert len(pipeline.events()) == 1


@dataclass
class SlowSink:
    """Takes each event, but only after ``seconds``: longer than a claim lasts."""

    seconds: float
    received: list[str] = field(default_factory=list)
    name: str = "test://slow"

    async def deliver(self, event: Event, payload: bytes) -> None:
        await asyncio.sleep(self.seconds)
        self.received.append(event.id)

    async def aclose(self) -> None:
        return None


def test_a_delivery_still_in_a_slow_sink_when_its_session_ends_keeps_its_claim_and_hands_over(
    pipeline: Pipeline, redis: Redis, redis_url: str
) -> None:
    """The session's time ends while its one notification's sink is still at it, for longer than a
    claim lasts: the delivery goes on (it is not given back for another session to fetch and deliver
    meanwhile), its claim is kept alive, and it hands the notification over."""
    settings = pipeline.settings.model_copy(update={"worker_heartbeat_ttl_seconds": 4})
    sink = SlowSink(seconds=6)
    ident = pipeline.post(type="Profile", oauth_token_key="t" * 24)

    async def scenario(client: AsyncRedis) -> dict[str, int]:
        processor = NotificationProcessor(
            settings, client, ConcurClient(settings), {"slow": sink}, vault_from_settings(settings)
        )
        await processor.start()
        outcomes = await Session(settings, client, processor).run([], 1, 1)  # ends with the sink busy
        while processor.delivering:  # no event says so: until the shielded delivery is over
            await asyncio.sleep(0.05)
        await processor.aclose()
        return outcomes

    assert run(redis_url, scenario) == {"late": 1}
    assert len(sink.received) == 1
    assert redis.get(RECORD_PREFIX + ident) is None  # handed over: the claim held to the end
    assert redis.zscore(RETRY_KEY, ident) is None and redis.zscore(LEASED_KEY, ident) is None
