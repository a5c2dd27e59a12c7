"""Postback to sink end to end: real uvicorn, real Redis, the simulator over HTTP, a real RQ worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jsonschema
import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from concur_postback.budget import SharedBudget
from concur_postback.concur.notification import Kind
from concur_postback.events import Event
from concur_postback.inbox import Record
from concur_postback.keys import RETRY_KEY, TRY_PREFIX
from concur_postback.workers.deliveries import Deliveries
from concur_postback.workers.failed import list_failed, requeue
from concur_postback.workers.pipeline import PARSERS
from concur_postback.workers.status import collect
from concur_postback.workers.worker import run_worker
from tests.conftest import FIXTURES, TOKEN, CapturedLogs, Pipeline, Simulator

SCHEMA = orjson.loads(
    (Path(__file__).resolve().parents[2] / "concur_postback/schemas/event.schema.json").read_bytes()
)


def test_every_kind_is_fetched_parsed_and_delivered(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, captured_logs: CapturedLogs
) -> None:
    trip_id = pipeline.post(
        simulator.notification("TRIP001", "CREATE"), type="Itinerary", oauth_token_key=TOKEN
    )
    profile_id = pipeline.post(type="Profile", oauth_token_key=TOKEN)
    fop_id = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    pipeline.work()

    events = {event["notification_id"]: event for event in pipeline.events()}
    assert set(events) == {trip_id, profile_id, fop_id}
    for event in events.values():
        jsonschema.validate(event, SCHEMA)
    trip = events[trip_id]
    assert (trip["kind"], trip["event_type"], trip["trip_id"]) == ("itinerary", "CREATE", "TRIP001")
    assert trip["data"]["bookings"], trip["data"]
    assert "TRIP001" in orjson.dumps(trip["data"]).decode()
    assert events[profile_id]["kind"] == "profile" and events[profile_id]["data"] is not None
    # user-level notifications: whose change it is comes from the fetched document, for every kind
    login = f"traveller-{TOKEN[-6:]}@example.com"
    assert [events[ident]["login_id"] for ident in (trip_id, profile_id, fop_id)] == [login] * 3
    fop = events[fop_id]
    assert fop["kind"] == "fop"
    text = pipeline.events_file.read_text()
    assert "4111111111111111" not in text and "378282246310005" not in text  # full card numbers
    assert "****1111" in text
    assert TOKEN not in text and TOKEN not in captured_logs.text
    assert [r["scheme"] for r in simulator.requests()] == ["OAuth"] * 3
    assert collect(redis, pipeline.settings.queue_name)["pending"] == 0
    assert {e["id"] for e in captured_logs.named("notification.delivered")} == {trip_id, profile_id, fop_id}


def test_company_notification_fetches_the_named_user(pipeline: Pipeline, simulator: Simulator) -> None:
    pipeline.post(type="Profile", oauth_token_key=TOKEN, userid_type="login", userid_value="cm@example.com")
    pipeline.work()
    [request] = simulator.requests()
    assert request["query"] == {"userid_type": "login", "userid_value": "cm@example.com"}
    [event] = pipeline.events()
    assert (event["subject"], event["login_id"]) == ("login:cm@example.com", "cm@example.com")


def test_transient_errors_are_retried_until_delivered(
    pipeline: Pipeline, simulator: Simulator, captured_logs: CapturedLogs
) -> None:
    simulator.fault(match="/fop", status=503, times=2)
    simulator.fault(match="/fop", status=429, times=1, retry_after="0")
    pipeline.post(type="FOP", oauth_token_key=TOKEN)
    pipeline.work()
    assert [r["status"] for r in simulator.requests()] == [503, 503, 429, 200]
    assert len(pipeline.events()) == 1
    assert [entry["attempt"] for entry in captured_logs.named("fetch.retry")] == [1, 2, 3]


def test_unauthorized_is_not_retried_and_reported(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, captured_logs: CapturedLogs
) -> None:
    simulator.fault(match="/profile", status=401, times=5)
    pipeline.post(type="Profile", oauth_token_key=TOKEN)
    pipeline.work()
    assert len(simulator.requests()) == 1
    [event] = pipeline.events()
    assert (event["event_type"], event["error"]["status"], event["data"]) == ("ERROR", 401, None)
    assert len(captured_logs.named("fetch.unauthorized")) == 1
    assert collect(redis, pipeline.settings.queue_name)["jobs"]["failed"] == 0


def test_cancelled_trip_that_is_gone_is_delivered_as_a_cancellation(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    simulator.fault(match="/TRIPGONE", status=404, times=1)
    pipeline.post(simulator.notification("TRIPGONE", "CANCEL"), type="Itinerary", oauth_token_key=TOKEN)
    pipeline.work()
    [event] = pipeline.events()
    assert (event["event_type"], event["trip_id"], event["data"]) == ("CANCEL", "TRIPGONE", None)


def test_a_malformed_document_is_a_failed_notification_kept_for_a_requeue(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    simulator.fault(match="/TRIPBAD", status=200, times=1, body="<Itinerary><broken")
    ident = pipeline.post(simulator.notification("TRIPBAD"), type="Itinerary", oauth_token_key=TOKEN)
    pipeline.work()
    assert pipeline.events() == []
    [entry] = list_failed(redis)
    assert (entry.id, entry.what, entry.kind) == (ident, "notification", "itinerary")
    assert "malformed_xml" in entry.reason and entry.requeueable
    assert len(simulator.requests()) == 1  # a malformed document is not fetched again
    status = collect(redis, pipeline.settings.queue_name)
    assert (status["pending"], status["failed_notifications"], status["jobs"]["failed"]) == (0, 1, 0)

    assert requeue(redis, [ident], 3600) == ([ident], {})  # Concur fixed the trip: send it round again
    pipeline.work()
    [event] = pipeline.events()
    assert event["notification_id"] == ident and list_failed(redis) == []


def test_concur_down_for_longer_than_a_job_keeps_the_notification_in_the_retry_schedule(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, captured_logs: CapturedLogs
) -> None:
    """Concur answering 503 for longer than any job lasts: the notification waits in the durable
    schedule (never in RQ's failed registry, never failed) and is delivered once Concur is back."""
    simulator.fault(match="/fop", status=503, seconds=3600)
    ident = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    slower = pipeline.settings.model_copy(
        update={"fetch_backoff_seconds": 0.2, "fetch_backoff_max_seconds": 5}
    )
    run_worker(slower, burst=True)  # a few quick attempts, then the next is due past the burst's linger
    status = collect(redis, pipeline.settings.queue_name)
    assert (status["pending"], status["fetch_retries"], status["failed_notifications"]) == (1, 1, 0)
    assert status["jobs"]["failed"] == 0
    attempts = len(simulator.requests())
    assert attempts >= 2 and [e["attempt"] for e in captured_logs.named("fetch.retry")] == list(
        range(1, attempts + 1)
    )
    simulator.client.delete("/_simulator/faults")  # Concur is back
    redis.zadd(RETRY_KEY, {ident: 0})  # as if the next attempt's time had come
    pipeline.work()
    [event] = pipeline.events()
    assert event["notification_id"] == ident
    assert collect(redis, pipeline.settings.queue_name)["fetch_retries"] == 0


def test_a_retry_after_beyond_the_backoff_cap_is_honoured_not_given_up(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    simulator.fault(match="/profile", status=429, times=1, retry_after="90")
    ident = pipeline.post(type="Profile", oauth_token_key=TOKEN)
    before = time.time()
    pipeline.work()
    due = redis.zscore(RETRY_KEY, ident)
    assert due is not None and before + 90 <= due <= time.time() + 91  # not failed, not retried early
    assert list_failed(redis) == [] and len(simulator.requests()) == 1


def test_a_notification_past_its_retry_horizon_is_a_failed_notification(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    simulator.fault(match="/fop", status=502, seconds=3600)
    settings = pipeline.settings.model_copy(update={"fetch_retry_horizon_seconds": 0.3})
    ident = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    run_worker(settings, burst=True)
    [entry] = list_failed(redis)
    assert entry.id == ident and entry.attempts == len(simulator.requests()) >= 2
    assert "gave up after" in entry.reason and "FETCH_RETRY_HORIZON_SECONDS" in entry.reason
    assert entry.reason.endswith("HTTP 502")
    assert collect(redis, pipeline.settings.queue_name)["pending"] == 0


def test_one_itinerary_change_has_one_event_id_whoever_reports_it(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    """The same change through a user subscription, a company subscription and a requeue of the
    same notification: one event id, so an idempotent sink keeps one row."""
    note = simulator.notification("TRIP777", "UPDATE", "2026-01-01T00:00:00")
    user = pipeline.post(note, type="Itinerary", oauth_token_key=TOKEN)
    company = pipeline.post(
        note,
        type="Itinerary",
        oauth_token_key="company-admin-token",
        userid_type="login",
        userid_value="cm@x.com",
    )
    assert user != company  # two notifications (two credentials), one change
    pipeline.work()
    events = pipeline.events()
    assert {e["notification_id"] for e in events} == {user, company}
    assert len({e["id"] for e in events}) == 1
    later = simulator.notification("TRIP777", "UPDATE", "2026-01-02T00:00:00")
    other = pipeline.post(later, type="Itinerary", oauth_token_key=TOKEN)
    pipeline.work()
    assert next(e["id"] for e in pipeline.events() if e["notification_id"] == other) != events[0]["id"]


def test_a_profile_changed_a_b_a_gives_three_events(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    """Profile and FOP notifications name no change: each is its own, so the third state (A again)
    is not taken for a repeat of the first by a sink that is idempotent on the event id."""
    profile = (FIXTURES / "profiles" / "v2_full_profile_response.xml").read_text()
    a, b = profile, profile.replace("<FirstName>", "<FirstName>B")
    assert a != b
    ids = []
    for body in (a, b, a):
        simulator.fault(match="/profile", status=200, times=1, body=body)
        pipeline.post(type="Profile", oauth_token_key=TOKEN)
        pipeline.work()
    events = pipeline.events()
    ids = [event["id"] for event in events]
    assert len(events) == 3 and len(set(ids)) == 3
    assert events[0]["data"] == events[2]["data"] != events[1]["data"]


def test_an_unexpected_error_fails_only_its_notification_and_nothing_is_delivered_twice(
    pipeline: Pipeline, redis: Redis, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    broken = pipeline.post(type="Profile", oauth_token_key=TOKEN)
    parse = PARSERS[Kind.PROFILE]

    def buggy(body: bytes) -> object:
        raise KeyError("a bug in the parser")

    monkeypatch.setitem(PARSERS, Kind.PROFILE, buggy)
    pipeline.work()
    pipeline.work()  # a second run delivers nothing again
    assert [event["notification_id"] for event in pipeline.events()] == [good]
    [entry] = list_failed(redis)
    assert entry.id == broken and entry.reason.startswith("unexpected KeyError")
    assert collect(redis, pipeline.settings.queue_name)["jobs"]["failed"] == 0
    monkeypatch.setitem(PARSERS, Kind.PROFILE, parse)  # the bug is fixed
    requeue(redis, [broken], 3600)
    pipeline.work()
    assert sorted(e["notification_id"] for e in pipeline.events()) == sorted([good, broken])


def test_a_redis_failure_under_a_lone_notification_gets_it_delivered_when_it_is_taken_again(
    pipeline: Pipeline,
    simulator: Simulator,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: CapturedLogs,
) -> None:
    """Redis closing connections mid-job (a restart) is not the notification's fault: it goes back to
    the schedule, due a second later, and is taken and delivered then; a notification taken beside it
    that failed for good is not fetched again."""
    simulator.fault(match="/TRIPBAD", status=200, times=1, body="<Itinerary><broken")
    unlucky = pipeline.post(type="Profile", oauth_token_key=TOKEN)
    bad = pipeline.post(simulator.notification("TRIPBAD"), type="Itinerary", oauth_token_key=TOKEN)
    deliver = Deliveries.deliver
    failures = [unlucky]

    async def flaky(self: Deliveries, owner: str, record: Record, event: Event, payload: bytes) -> bool:
        if record.id in failures:
            failures.remove(record.id)
            raise RedisConnectionError("Connection closed by server.")
        return await deliver(self, owner, record, event, payload)

    monkeypatch.setattr(Deliveries, "deliver", flaky)
    pipeline.work()
    assert [event["notification_id"] for event in pipeline.events()] == [unlucky]
    assert [entry["id"] for entry in captured_logs.named("notification.retry_later")] == [unlucky]
    assert [r["path"] for r in simulator.requests()].count("/api/travel/trip/v1.1/TRIPBAD") == 1
    assert [entry.id for entry in list_failed(redis)] == [bad]  # kept for a requeue
    status = collect(redis, pipeline.settings.queue_name)
    assert (status["pending"], status["in_progress"], status["fetch_retries"]) == (0, 0, 0)


def test_a_notification_deferred_by_the_budget_waits_in_the_schedule_without_an_attempt(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, redis_url: str
) -> None:
    async def pause() -> None:
        client = AsyncRedis.from_url(redis_url)
        await SharedBudget(client, 50).pause("127.0.0.1", 30)  # as another worker's 429 would
        await client.aclose()

    asyncio.run(pause())
    ident = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    pipeline.work()
    due = redis.zscore(RETRY_KEY, ident)
    assert due is not None and time.time() + 25 < due <= time.time() + 32
    assert redis.hget(TRY_PREFIX + ident, "attempts") is None  # a deferral is not a failed attempt
    assert simulator.requests() == []
