"""Per-sink delivery: independent retries, dead letters, requeue — with a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.config import Settings
from concur_postback.embedded import EmbeddedRedis
from concur_postback.errors import SinkError
from concur_postback.events import Event, build_event
from concur_postback.inbox import Record
from concur_postback.keys import (
    CLAIM_PREFIX,
    DEAD_KEY,
    EVENT_PREFIX,
    LEASED_KEY,
    PENDING_KEY,
    RECORD_PREFIX,
    SINK_LIVE_PREFIX,
    sink_retry_key,
)
from concur_postback.sinks import sink_id
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.deliveries import CLAIM_MARGIN_SECONDS, Deliveries, event_ttl
from concur_postback.workers.failed import list_failed, per_sink, purge, requeue, show, unowned_sinks
from concur_postback.workers.ledger import Ledger
from concur_postback.workers.worker import run_worker
from tests.chaos.harness import files_contents, redis_contents
from tests.conftest import Simulator, profiles, store
from tests.processes import clean_env, cli
from tests.workers.conftest import lease

PASSPORT = "P53829017"  # in the simulator's profile


@dataclass
class ScriptedSink:
    """Fails as scripted: each entry of ``script`` is an exception to raise, or None to accept."""

    label: str
    script: list[BaseException | None] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    delay: float = 0

    @property
    def name(self) -> str:
        return f"test://{self.label}"

    async def deliver(self, event: Event, payload: bytes) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.received.append(orjson.loads(payload)["id"])

    async def aclose(self) -> None:
        return None


Step = Callable[[Deliveries], Coroutine[Any, Any, Any]]
OWNER = "test-owner"


def by_id(*sinks: ScriptedSink) -> dict[str, Any]:
    return {sink_id(sink.name): sink for sink in sinks}


def run(redis_url: str, settings: Settings, sinks: list[Any], *steps: Step) -> None:
    """Run steps against one Deliveries over a real redis.asyncio connection."""

    async def main() -> None:
        client = AsyncRedis.from_url(redis_url)
        try:
            deliveries = Deliveries(settings, client, by_id(*sinks), vault_from_settings(settings))
            await deliveries.register()
            for step in steps:
                await step(deliveries)
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.fixture
def fast(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        sink_backoff_seconds=0,
        sink_backoff_max_seconds=0,
        sink_retry_horizon_seconds=0.5,
        sink_timeout_seconds=0.2,
    )


def fetched(redis_url: str, redis: Redis, settings: Settings) -> tuple[Record, Event]:
    """A stored notification, claimed by OWNER as a job would before fetching it."""
    [record] = store(redis, settings, profiles(1))
    lease(redis, record.id)

    async def claim() -> None:
        client = AsyncRedis.from_url(redis_url)
        await Ledger(client, settings).claim(OWNER, [record.id], time.time())
        await client.aclose()

    asyncio.run(claim())
    return record, build_event(record, {"login": "x"}, fetched_at="2026-11-22T00:00:00Z")


def deliver(record: Record, event: Event, owner: str = OWNER) -> Step:
    return lambda deliveries: deliveries.deliver(owner, record, event, event.to_json())


def retry_due(deliveries: Deliveries) -> Coroutine[Any, Any, int]:
    return deliveries.retry_due()


def schedule(redis: Redis, sink: ScriptedSink) -> list[bytes]:
    return list(redis.zrange(sink_retry_key(sink_id(sink.name)), 0, -1))


def label(sink: ScriptedSink) -> str:
    return f"{sink.name} [{sink_id(sink.name)}]"


def test_fan_out_to_every_sink_then_the_event_is_gone(redis: Redis, redis_url: str, fast: Settings) -> None:
    a, b = ScriptedSink("a"), ScriptedSink("b")
    record, event = fetched(redis_url, redis, fast)
    run(redis_url, fast, [a, b], deliver(record, event))
    assert a.received == b.received == [event.id]
    assert redis.get(EVENT_PREFIX + record.id) is None
    assert redis.get(RECORD_PREFIX + record.id) is None  # the token went with the record
    assert redis.zscore(PENDING_KEY, record.id) is None
    assert redis.zscore(LEASED_KEY, record.id) is None
    assert redis.get(CLAIM_PREFIX + record.id) is None
    assert schedule(redis, a) == schedule(redis, b) == [] and redis.zcard(DEAD_KEY) == 0


def test_a_hand_over_whose_claim_lapsed_records_nothing(redis: Redis, redis_url: str, fast: Settings) -> None:
    """A worker cut off from Redis past its claim finds another worker holding the notification: it
    must record nothing, however its sinks answered (the other one delivers the same event id)."""
    ok, down = ScriptedSink("ok"), ScriptedSink("down", [SinkError("HTTP 503")])
    record, event = fetched(redis_url, redis, fast)
    redis.set(CLAIM_PREFIX + record.id, "another-worker")  # the claim lapsed and was taken over
    handed: list[bool] = []

    async def late(deliveries: Deliveries) -> None:
        handed.append(await deliveries.deliver(OWNER, record, event, event.to_json()))

    run(redis_url, fast, [ok, down], late)
    assert handed == [False] and ok.received == [event.id]
    assert redis.get(RECORD_PREFIX + record.id) is not None and redis.get(EVENT_PREFIX + record.id) is None
    assert redis.zscore(PENDING_KEY, record.id) is not None
    assert schedule(redis, down) == [] and redis.get(CLAIM_PREFIX + record.id) == b"another-worker"


def test_a_sink_that_is_down_is_retried_alone_until_it_is_back(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    down = ScriptedSink("down", [ConnectionRefusedError("no"), SinkError("HTTP 503")])
    up = ScriptedSink("up")
    record, event = fetched(redis_url, redis, fast)
    run(redis_url, fast, [down, up], deliver(record, event))
    assert (down.received, up.received) == ([], [event.id])
    assert schedule(redis, down) == [record.id.encode()] and schedule(redis, up) == []
    assert per_sink(redis)[label(down)] == {"retrying": 1, "dead": 0}

    run(redis_url, fast, [down, up], retry_due, retry_due)  # fails once more, then succeeds
    assert (down.received, up.received) == ([event.id], [event.id])  # the healthy sink got it once
    assert schedule(redis, down) == []
    assert redis.get(EVENT_PREFIX + record.id) is None


def test_a_retry_is_taken_only_by_a_worker_that_has_its_sink(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    """A rolling deploy that adds sink B: a new worker handed over, B failed once; an old worker
    without B must leave B's retry alone (it stays owed, and `status` says no live worker has B)
    until a worker with B delivers it."""
    settings = fast.model_copy(update={"sink_retry_horizon_seconds": 3600})
    a, b = ScriptedSink("a"), ScriptedSink("b", [SinkError("HTTP 503")])
    record, event = fetched(redis_url, redis, settings)
    run(redis_url, settings, [a, b], deliver(record, event))
    assert schedule(redis, b) == [record.id.encode()]
    redis.delete(SINK_LIVE_PREFIX + sink_id(b.name))  # the new worker stops; only old ones run

    run(redis_url, settings, [a], retry_due, retry_due)  # an old worker: it has only A
    assert schedule(redis, b) == [record.id.encode()]  # still owed, not dropped
    assert redis.get(EVENT_PREFIX + record.id) is not None
    assert unowned_sinks(redis) == [label(b)]
    assert list_failed(redis) == []

    run(redis_url, settings, [a, b], retry_due)  # a new worker again
    assert b.received == [event.id] and a.received == [event.id]
    assert schedule(redis, b) == [] and redis.get(EVENT_PREFIX + record.id) is None


def test_deliveries_survive_a_worker_dying_before_the_sinks_answer(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    """Torn down while trying the sinks, a worker leaves the notification leased (its lease lapses and
    brings it back, to be fetched again); torn down while retrying a sink, it leaves that delivery
    claimed until the attempt's own time limit, plus a margin, is over."""
    # the worker's loop is torn down mid-delivery: first at the hand-over's attempt, then at a retry's
    dying = ScriptedSink("dying", [asyncio.CancelledError(), SinkError("HTTP 503"), asyncio.CancelledError()])
    record, event = fetched(redis_url, redis, fast)
    with pytest.raises(asyncio.CancelledError):
        run(redis_url, fast, [dying], deliver(record, event))
    assert (
        redis.get(RECORD_PREFIX + record.id) is not None and redis.zscore(LEASED_KEY, record.id) is not None
    )
    assert redis.get(EVENT_PREFIX + record.id) is None  # nothing handed over yet

    run(redis_url, fast, [dying], deliver(record, event))  # taken up again: this time the sink fails
    key = sink_retry_key(sink_id(dying.name))
    redis.zadd(key, {record.id: 0})  # its retry is due
    with pytest.raises(asyncio.CancelledError):
        run(redis_url, fast, [dying], retry_due)
    due = redis.zscore(key, record.id)
    # comes due for another worker once the attempt's own time limit (plus a margin) is over
    assert (
        due is not None
        and time.time() < due <= time.time() + fast.sink_timeout_seconds + CLAIM_MARGIN_SECONDS
    )
    assert redis.get(EVENT_PREFIX + record.id) is not None
    redis.zadd(key, {record.id: 0})  # as if that time had passed
    run(redis_url, fast, [dying], retry_due)
    assert dying.received == [event.id]


def test_permanent_failure_is_a_dead_letter_until_requeued_to_that_sink_only(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    rejecting = ScriptedSink("rejecting", [SinkError("HTTP 400 Bad Request", permanent=True)])
    other = ScriptedSink("other")
    record, event = fetched(redis_url, redis, fast)
    run(redis_url, fast, [rejecting, other], deliver(record, event))
    [letter] = list_failed(redis)
    assert (letter.what, letter.notification_id, letter.sink, letter.attempts) == (
        "delivery",
        record.id,
        label(rejecting),
        1,
    )
    assert letter.reason == "HTTP 400 Bad Request"
    shown = show(redis, letter.id, vault_from_settings(fast))
    assert shown is not None and orjson.loads(shown[1] or b"{}")["id"] == event.id
    assert per_sink(redis)[label(rejecting)] == {"retrying": 0, "dead": 1}

    assert requeue(redis, [letter.id, "no-such.letter"], event_ttl(fast)) == (
        [letter.id],
        {"no-such.letter": "not found"},
    )
    run(redis_url, fast, [rejecting, other], retry_due)
    assert rejecting.received == [event.id]
    assert other.received == [event.id]  # not delivered again
    assert list_failed(redis) == []
    assert redis.get(EVENT_PREFIX + record.id) is None


def test_a_sink_down_past_its_horizon_and_a_slow_one_become_dead_letters(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    slow = ScriptedSink("slow", delay=1.0)  # beyond SINK_TIMEOUT_SECONDS every time
    quick = ScriptedSink("quick")
    record, event = fetched(redis_url, redis, fast)

    async def until_dead(deliveries: Deliveries) -> None:
        while redis.zcard(DEAD_KEY) == 0:  # each retry is due at once; the horizon ends it
            await deliveries.retry_due()

    run(redis_url, fast, [slow, quick], deliver(record, event), until_dead)
    assert quick.received == [event.id]  # not held back by the slow sink
    [letter] = list_failed(redis)
    assert letter.sink == label(slow) and letter.attempts >= 2
    assert "gave up after" in letter.reason and "SINK_RETRY_HORIZON_SECONDS" in letter.reason
    assert letter.reason.endswith("timed out")
    assert redis.get(EVENT_PREFIX + record.id) is not None  # kept for a requeue
    assert purge(redis) == 1
    assert list_failed(redis) == []


def test_failed_commands(redis: Redis, redis_url: str, fast: Settings) -> None:
    rejecting = ScriptedSink("rejecting", [SinkError("HTTP 410 Gone", permanent=True)])
    record, event = fetched(redis_url, redis, fast)
    run(redis_url, fast, [rejecting], deliver(record, event))
    key = fast.token_encryption_key.get_secret_value() if fast.token_encryption_key else ""
    env = clean_env(REDIS_URL=redis_url, TOKEN_ENCRYPTION_KEY=key)  # `show` decrypts the stored event
    listed = cli("failed", "list", env=env)
    assert listed.returncode == 0 and "HTTP 410 Gone" in listed.stdout and record.id in listed.stdout
    [row] = [orjson.loads(line) for line in cli("failed", "list", "--json", env=env).stdout.splitlines()]
    assert row["what"] == "delivery"
    shown = cli("failed", "show", row["id"], env=env)
    assert event.id in shown.stdout
    assert "dead letter(s)" in cli("status", env=env).stdout
    status = orjson.loads(cli("status", "--json", env=env).stdout)
    assert status["sinks"][label(rejecting)]["dead"] == 1
    assert cli("failed", "requeue", env=env).returncode != 0  # names or --all required
    assert "requeued 1" in cli("failed", "requeue", "--all", env=env).stdout
    assert schedule(redis, rejecting) == [record.id.encode()]
    assert cli("failed", "show", "missing.x", env=env).returncode != 0
    assert "purged 0" in cli("failed", "purge", "--yes", env=env).stdout


def test_events_kept_for_retries_are_encrypted_in_redis_and_its_aof(
    simulator: Simulator, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """An event some sink still owes holds the traveller's passport number: neither Redis's values nor
    its AOF on disk may show it."""
    server = EmbeddedRedis(tmp_path / "own-redis", appendfsync="always").start()
    try:
        settings = make_settings(
            redis_url=server.url,
            concur_base_url=simulator.url,
            concur_allowed_hosts=[],
            sinks=f"file://{tmp_path / 'events.jsonl'} https://127.0.0.1:1/down",  # the second never answers
            sink_backoff_seconds=30,  # its retry is not due before the burst worker stops
        )
        client = Redis.from_url(server.url)
        [record] = store(client, settings, profiles(1))
        run_worker(settings, burst=True)
        assert PASSPORT in (tmp_path / "events.jsonl").read_text()  # the sink that took it has it all
        assert client.exists(EVENT_PREFIX + record.id)  # kept for the sink that owes it
        assert PASSPORT not in redis_contents(client)
        assert PASSPORT not in files_contents(tmp_path / "own-redis")
        client.close()
    finally:
        server.stop()
