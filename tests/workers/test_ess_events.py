"""ESS events end to end: real uvicorn, real Redis, a real RQ worker, the file sink."""

from __future__ import annotations

import jsonschema
import orjson
from redis import Redis

from concur_postback.tokens import TokenVault, generate_key
from concur_postback.workers.rekey import rekey
from concur_postback.workers.status import collect
from tests.conftest import CapturedLogs, Pipeline, Simulator
from tests.service.test_ess import EVENT, USER
from tests.workers.test_pipeline import SCHEMA

UNKNOWN_TOPIC = orjson.dumps(
    {
        "id": "tb-1",
        "correlationId": "corr-9",
        "eventType": "TravelBooked",
        "topic": "concur.travel.book",  # without its public. prefix, as some of Concur's samples
        "timeStamp": "2026-11-30T10:00:00.000Z",
        "facts": {"userId": USER, "companyId": "c-1", "card": "4111 1111 1111 1111"},
        "route": {"segment": 1},
    }
)


def test_an_ess_event_reaches_the_sink_once_as_concur_sent_it_with_its_envelope(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, captured_logs: CapturedLogs
) -> None:
    first = pipeline.post_event(UNKNOWN_TOPIC)
    assert pipeline.post_event(UNKNOWN_TOPIC) == first  # a redelivery: the same notification
    profile = pipeline.post_event(EVENT)
    pipeline.work()

    events = {event["notification_id"]: event for event in pipeline.events()}
    assert set(events) == {first, profile}
    booked = events[first]
    jsonschema.validate(booked, SCHEMA)
    assert booked["schema_version"] == 2
    assert (booked["source"], booked["kind"], booked["event_type"]) == ("ess", "event", "TravelBooked")
    assert (booked["topic"], booked["ess_event_id"], booked["correlation_id"]) == (
        "public.concur.travel.book",
        "tb-1",
        "corr-9",
    )
    assert (booked["company_id"], booked["user_id"], booked["event_time"]) == (
        "c-1",
        USER,
        "2026-11-30T10:00:00.000Z",
    )
    assert booked["data"]["route"] == {"segment": 1}  # unknown fields delivered
    assert booked["data"]["facts"]["card"] == "****1111"
    assert events[profile]["login_id"] == "traveller@example.com"
    assert simulator.requests() == []  # nothing this version fetches for them yet
    assert collect(redis, pipeline.settings.queue_name)["pending"] == 0
    assert "4111 1111 1111 1111" not in pipeline.events_file.read_text() + captured_logs.text


def test_an_ess_events_change_is_named_by_its_ess_id_whatever_notification_carried_it(
    pipeline: Pipeline,
) -> None:
    pipeline.post_event(UNKNOWN_TOPIC)
    pipeline.work()
    (event,) = pipeline.events()
    assert event["id"] == "evt_5da90e12621dbc79fc9ce4a1a2069d72"  # pinned: sinks dedupe on it


def test_rekey_reseals_a_stored_ess_event(pipeline: Pipeline, redis: Redis) -> None:
    pipeline.post_event(UNKNOWN_TOPIC)
    old = pipeline.settings.token_encryption_key
    assert old is not None
    vault = TokenVault(generate_key(), old.get_secret_value())
    assert rekey(redis, vault)["notifications"].resealed == 1
    assert rekey(redis, vault)["notifications"].current == 1
