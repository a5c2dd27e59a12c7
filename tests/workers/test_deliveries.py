"""Per-sink delivery: independent retries, dead letters, requeue — with a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.config import Settings
from concur_postback.errors import SinkError
from concur_postback.events import Event, build_event
from concur_postback.inbox import PENDING_KEY, RECORD_PREFIX, Record
from concur_postback.workers.deadletters import list_letters, per_sink, purge, requeue, show
from concur_postback.workers.deliveries import (
    CLAIM_MARGIN_SECONDS,
    DEAD_KEY,
    EVENT_PREFIX,
    RETRY_KEY,
    Deliveries,
    letter_id,
    sink_id,
)
from tests.conftest import profiles, store
from tests.processes import clean_env, cli


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


def run(redis_url: str, settings: Settings, sinks: list[Any], *steps: Step) -> None:
    """Run steps against one Deliveries over a real redis.asyncio connection."""

    async def main() -> None:
        client = AsyncRedis.from_url(redis_url)
        try:
            deliveries = Deliveries(settings, client, sinks)
            await deliveries.register()
            for step in steps:
                await step(deliveries)
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.fixture
def fast(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        sink_backoff_seconds=0, sink_backoff_max_seconds=0, sink_attempts=3, sink_timeout_seconds=0.2
    )


def fetched(redis: Redis, settings: Settings) -> tuple[Record, Event]:
    [record] = store(redis, settings, profiles(1))
    return record, build_event(record, {"login": "x"}, fetched_at="2026-11-22T00:00:00Z")


def hand_over(record: Record, event: Event) -> Step:
    return lambda deliveries: deliveries.hand_over(record, event, event.to_json())


def retry_due(deliveries: Deliveries) -> Coroutine[Any, Any, int]:
    return deliveries.retry_due()


def test_fan_out_to_every_sink_then_the_event_is_gone(redis: Redis, redis_url: str, fast: Settings) -> None:
    a, b = ScriptedSink("a"), ScriptedSink("b")
    record, event = fetched(redis, fast)
    run(redis_url, fast, [a, b], hand_over(record, event))
    assert a.received == b.received == [event.id]
    assert redis.get(EVENT_PREFIX + record.id) is None
    assert redis.get(RECORD_PREFIX + record.id) is None  # the token went with the record
    assert redis.zscore(PENDING_KEY, record.id) is None
    assert redis.zcard(RETRY_KEY) == redis.zcard(DEAD_KEY) == 0


def test_a_sink_that_is_down_is_retried_alone_until_it_is_back(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    down = ScriptedSink("down", [ConnectionRefusedError("no"), SinkError("HTTP 503")])
    up = ScriptedSink("up")
    record, event = fetched(redis, fast)
    run(redis_url, fast, [down, up], hand_over(record, event))
    assert (down.received, up.received) == ([], [event.id])
    assert redis.zrange(RETRY_KEY, 0, -1) == [letter_id(record.id, sink_id(down)).encode()]
    assert per_sink(redis)["test://down"] == {"retrying": 1, "dead": 0}

    run(redis_url, fast, [down, up], retry_due, retry_due)  # fails once more, then succeeds
    assert (down.received, up.received) == ([event.id], [event.id])  # the healthy sink got it once
    assert redis.zcard(RETRY_KEY) == 0
    assert redis.get(EVENT_PREFIX + record.id) is None


def test_deliveries_survive_a_worker_dying_before_the_sinks_answer(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    dying = ScriptedSink("dying", [asyncio.CancelledError()])  # the worker's loop is torn down mid-delivery
    record, event = fetched(redis, fast)
    with pytest.raises(asyncio.CancelledError):
        run(redis_url, fast, [dying], hand_over(record, event))
    letter = letter_id(record.id, sink_id(dying))
    due = redis.zscore(RETRY_KEY, letter)
    # comes due for another worker once the attempt's own time limit (plus a margin) is over
    assert (
        due is not None
        and time.time() < due <= time.time() + fast.sink_timeout_seconds + CLAIM_MARGIN_SECONDS
    )
    assert redis.get(EVENT_PREFIX + record.id) is not None
    redis.zadd(RETRY_KEY, {letter: 0})  # as if that time had passed
    run(redis_url, fast, [dying], retry_due)
    assert dying.received == [event.id]


def test_permanent_failure_is_a_dead_letter_until_requeued_to_that_sink_only(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    rejecting = ScriptedSink("rejecting", [SinkError("HTTP 400 Bad Request", permanent=True)])
    other = ScriptedSink("other")
    record, event = fetched(redis, fast)
    run(redis_url, fast, [rejecting, other], hand_over(record, event))
    [letter] = list_letters(redis)
    assert (letter.notification_id, letter.sink, letter.attempts) == (record.id, "test://rejecting", 1)
    assert letter.reason == "HTTP 400 Bad Request"
    shown = show(redis, letter.id)
    assert shown is not None and orjson.loads(shown[1] or b"{}")["id"] == event.id
    assert per_sink(redis)["test://rejecting"] == {"retrying": 0, "dead": 1}

    assert requeue(redis, [letter.id, "no-such.letter"]) == ([letter.id], ["no-such.letter"])
    run(redis_url, fast, [rejecting, other], retry_due)
    assert rejecting.received == [event.id]
    assert other.received == [event.id]  # not delivered again
    assert list_letters(redis) == []
    assert redis.get(EVENT_PREFIX + record.id) is None


def test_exhausted_attempts_and_slow_sinks_become_dead_letters(
    redis: Redis, redis_url: str, fast: Settings
) -> None:
    slow = ScriptedSink("slow", delay=1.0)  # beyond SINK_TIMEOUT_SECONDS every time
    quick = ScriptedSink("quick")
    record, event = fetched(redis, fast)
    run(redis_url, fast, [slow, quick], hand_over(record, event), retry_due, retry_due)
    assert quick.received == [event.id]  # not held back by the slow sink
    [letter] = list_letters(redis)
    assert (letter.sink, letter.attempts, letter.reason) == ("test://slow", 3, "timed out")
    assert redis.get(EVENT_PREFIX + record.id) is not None  # kept for a requeue
    assert purge(redis) == 1
    assert list_letters(redis) == []


def test_failed_commands(redis: Redis, redis_url: str, fast: Settings) -> None:
    rejecting = ScriptedSink("rejecting", [SinkError("HTTP 410 Gone", permanent=True)])
    record, event = fetched(redis, fast)
    run(redis_url, fast, [rejecting], hand_over(record, event))
    env = clean_env(REDIS_URL=redis_url)
    listed = cli("failed", "list", env=env)
    assert listed.returncode == 0 and "HTTP 410 Gone" in listed.stdout and record.id in listed.stdout
    [row] = [orjson.loads(line) for line in cli("failed", "list", "--json", env=env).stdout.splitlines()]
    shown = cli("failed", "show", row["id"], env=env)
    assert event.id in shown.stdout
    assert "dead letter(s)" in cli("status", env=env).stdout
    assert orjson.loads(cli("status", "--json", env=env).stdout)["sinks"]["test://rejecting"]["dead"] == 1
    assert cli("failed", "requeue", env=env).returncode != 0  # names or --all required
    assert "requeued 1" in cli("failed", "requeue", "--all", env=env).stdout
    assert redis.zcard(RETRY_KEY) == 1
    assert cli("failed", "show", "missing.x", env=env).returncode != 0
    assert "purged 0" in cli("failed", "purge", "--yes", env=env).stdout
