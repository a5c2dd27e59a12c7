"""Postback to sink end to end: real uvicorn, real Redis, the simulator over HTTP, a real RQ worker."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.registry import FailedJobRegistry

from concur_postback.events import Event
from concur_postback.inbox import Record
from concur_postback.workers.deliveries import Deliveries
from concur_postback.workers.status import collect
from concur_postback.workers.worker import job_queue
from tests.conftest import TOKEN, CapturedLogs, Simulator
from tests.workers.conftest import Pipeline

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


def test_malformed_document_fails_the_job_with_a_readable_reason(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    simulator.fault(match="/TRIPBAD", status=200, times=1, body="<Itinerary><broken")
    ident = pipeline.post(simulator.notification("TRIPBAD"), type="Itinerary", oauth_token_key=TOKEN)
    pipeline.work()
    assert pipeline.events() == []
    queue_ = job_queue(redis, pipeline.settings)
    [job_id] = FailedJobRegistry(queue=queue_).get_job_ids()
    reason = queue_.fetch_job(job_id).latest_result().exc_string
    assert ident in reason and "malformed_xml" in reason
    assert len(simulator.requests()) == 1  # a malformed document is not fetched again
    assert collect(redis, pipeline.settings.queue_name)["pending"] == 1  # kept for a requeue


def test_exhausted_retries_fail_the_job(pipeline: Pipeline, simulator: Simulator, redis: Redis) -> None:
    simulator.fault(match="/fop", status=502, times=10)
    pipeline.post(type="FOP", oauth_token_key=TOKEN)
    pipeline.work()
    assert len(simulator.requests()) == pipeline.settings.fetch_attempts
    queue_ = job_queue(redis, pipeline.settings)
    [job_id] = FailedJobRegistry(queue=queue_).get_job_ids()
    assert "HTTP 502" in queue_.fetch_job(job_id).latest_result().exc_string


def test_the_same_change_has_the_same_event_id(pipeline: Pipeline, simulator: Simulator) -> None:
    note = simulator.notification("TRIP777", "UPDATE", "2026-01-01T00:00:00")
    pipeline.post(note, type="Itinerary", oauth_token_key=TOKEN)
    pipeline.post(type="Profile", oauth_token_key=TOKEN)
    pipeline.work()
    pipeline.post(type="Profile", oauth_token_key=TOKEN)  # the coalescing window ended when it was fetched
    pipeline.work()
    events = pipeline.events()
    profiles = [e for e in events if e["kind"] == "profile"]
    assert len(profiles) == 2
    assert profiles[0]["id"] == profiles[1]["id"]  # same document, same change
    assert profiles[0]["notification_id"] != profiles[1]["notification_id"]


def test_an_unexpected_error_fails_only_its_notification_and_nothing_is_delivered_twice(
    pipeline: Pipeline, redis: Redis
) -> None:
    good = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    broken = "0" * 12 + "feedfacefeedface"  # a record no worker can read
    redis.set("cp:n:" + broken, b"{not json")
    redis.rpush("cp:inbox", broken)
    redis.zadd("cp:pending", {broken: 1})
    pipeline.work()
    pipeline.work()  # a second run, as RQ would re-run a failed job, delivers nothing again
    assert [event["notification_id"] for event in pipeline.events()] == [good]
    queue_ = job_queue(redis, pipeline.settings)
    [job_id] = FailedJobRegistry(queue=queue_).get_job_ids()
    assert f"{broken}: unexpected" in queue_.fetch_job(job_id).latest_result().exc_string


def test_a_redis_failure_hands_the_notification_to_another_job_and_nothing_else_reruns(
    pipeline: Pipeline,
    simulator: Simulator,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: CapturedLogs,
) -> None:
    """Redis closing connections mid-job (a restart) is not the notification's fault: it goes back to
    the inbox for a new job, while a notification of the same batch that failed for good is not
    fetched again."""
    simulator.fault(match="/TRIPBAD", status=200, times=1, body="<Itinerary><broken")
    good = pipeline.post(type="FOP", oauth_token_key=TOKEN)
    unlucky = pipeline.post(type="Profile", oauth_token_key=TOKEN)
    bad = pipeline.post(simulator.notification("TRIPBAD"), type="Itinerary", oauth_token_key=TOKEN)
    hand_over = Deliveries.hand_over
    failures = [unlucky]

    async def flaky(self: Deliveries, record: Record, event: Event, payload: bytes) -> None:
        if record.id in failures:
            failures.remove(record.id)
            raise RedisConnectionError("Connection closed by server.")
        await hand_over(self, record, event, payload)

    monkeypatch.setattr(Deliveries, "hand_over", flaky)
    pipeline.work()
    assert sorted(event["notification_id"] for event in pipeline.events()) == sorted([good, unlucky])
    [returned] = captured_logs.named("notification.returned_to_inbox")
    assert returned["ids"] == [unlucky]
    assert [r["path"] for r in simulator.requests()].count("/api/travel/trip/v1.1/TRIPBAD") == 1
    queue_ = job_queue(redis, pipeline.settings)
    [job_id] = FailedJobRegistry(queue=queue_).get_job_ids()
    reason = queue_.fetch_job(job_id).latest_result().exc_string
    assert bad in reason and unlucky not in reason
    assert redis.zrange("cp:pending", 0, -1) == [bad.encode()]  # kept for a requeue
