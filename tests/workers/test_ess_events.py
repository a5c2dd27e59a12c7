"""ESS events end to end: real uvicorn, real Redis, a real RQ worker, the simulator, the file sink."""

from __future__ import annotations

from collections.abc import Callable

import jsonschema
import orjson
from redis import Redis

from concur_postback.config import Settings
from concur_postback.keys import COMPANY_PREFIX
from concur_postback.tokens import TokenVault, generate_key
from concur_postback.workers.failed import list_failed
from concur_postback.workers.rekey import rekey
from concur_postback.workers.status import collect
from tests.conftest import CapturedLogs, LiveServer, Pipeline, Simulator
from tests.processes import clean_env, cli
from tests.service.test_ess import USER
from tests.workers.test_pipeline import SCHEMA

COMPANY = "6e2a6001-0b51-4c18-af0a-a86c3fb7874f"
LOGIN = "cm+travel@example.com"
UNKNOWN_TOPIC = orjson.dumps(
    {
        "id": "tb-1",
        "correlationId": "corr-9",
        "eventType": "TravelBooked",
        "topic": "concur.travel.book",  # without its public. prefix, as some of Concur's samples
        "timeStamp": "2026-11-30T10:00:00.000Z",
        "facts": {"userId": USER, "companyId": COMPANY, "card": "4111 1111 1111 1111"},
        "route": {"segment": 1},
    }
)


def profile_event(ident: str, event_type: str = "TravelProfileUpdated") -> bytes:
    return orjson.dumps(
        {
            "id": ident,
            "correlationId": "corr-" + ident,
            "eventType": event_type,
            "topic": "public.concur.user.travel.profile",
            "timeStamp": "2026-11-30T10:00:00.000Z",
            "subtopic": USER,
            "facts": {"loginId": LOGIN, "userId": USER, "companyId": COMPANY, "attributes": ["givenName"]},
        }
    )


def company_cli(pipeline: Pipeline, *args: str, stdin: str | None = None) -> str:
    settings = pipeline.settings
    key = settings.token_encryption_key
    env = clean_env(
        REDIS_URL=str(settings.redis_url),
        TOKEN_ENCRYPTION_KEY=key.get_secret_value() if key else "",
        CONCUR_BASE_URL=settings.concur_base_url,
        CONCUR_ALLOWED_HOSTS="",
        CONCUR_CLIENT_ID="client-1",
        CONCUR_CLIENT_SECRET="client-secret-1",
        CONCUR_TOKEN_URL=settings.concur_token_url,
    )
    done = cli("company", *args, env=env, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def connect(pipeline: Pipeline) -> str:
    """`company connect`, the request token on stdin as an operator would give it."""
    return company_cli(
        pipeline, "connect", "--company-id", COMPANY, "--request-token", "-", stdin="req-token-1\n"
    )


def test_an_event_of_a_topic_not_fetched_reaches_the_sink_once_as_concur_sent_it(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, captured_logs: CapturedLogs
) -> None:
    first = pipeline.post_event(UNKNOWN_TOPIC)
    assert pipeline.post_event(UNKNOWN_TOPIC) == first  # a redelivery: the same notification
    pipeline.work()

    (booked,) = pipeline.events()
    jsonschema.validate(booked, SCHEMA)
    assert booked["schema_version"] == 2 and booked["notification_id"] == first
    assert (booked["source"], booked["kind"], booked["event_type"]) == ("ess", "event", "TravelBooked")
    assert (booked["topic"], booked["ess_event_id"], booked["correlation_id"]) == (
        "public.concur.travel.book",
        "tb-1",
        "corr-9",
    )
    assert (booked["company_id"], booked["user_id"], booked["event_time"]) == (
        COMPANY,
        USER,
        "2026-11-30T10:00:00.000Z",
    )
    assert booked["data"]["route"] == {"segment": 1}  # unknown fields delivered
    assert booked["data"]["facts"]["card"] == "****1111"
    assert booked["id"] == "evt_5da90e12621dbc79fc9ce4a1a2069d72"  # pinned: sinks dedupe on it
    assert simulator.requests() == []
    assert collect(redis, pipeline.settings.queue_name)["pending"] == 0
    assert "4111 1111 1111 1111" not in pipeline.events_file.read_text() + captured_logs.text


def test_a_travel_profile_event_fetches_the_profile_v2_by_login_with_the_company_token(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    assert f"connected company {COMPANY} ({simulator.url})" in connect(pipeline)
    updated = pipeline.post_event(profile_event("tp-1"))
    deleted = pipeline.post_event(profile_event("tp-2", "TravelProfileDeleted"))
    pipeline.work()

    events = {event["notification_id"]: event for event in pipeline.events()}
    profile, gone = events[updated], events[deleted]
    for event in (profile, gone):
        jsonschema.validate(event, SCHEMA)
    assert (profile["kind"], profile["source"], profile["login_id"]) == ("profile", "ess", LOGIN)
    assert profile["data"]["login_id"] == LOGIN and profile["fetched_at"] is not None
    assert (gone["kind"], gone["data"], gone["event_type"]) == ("profile", None, "TravelProfileDeleted")
    (fetched,) = simulator.requests()  # the deletion fetches nothing
    assert (fetched["path"], fetched["scheme"]) == ("/api/travelprofile/v2.0/profile", "Bearer")
    assert fetched["query"] == {"userid_type": "login", "userid_value": LOGIN}
    assert fetched["token"].startswith("****")


def test_a_company_whose_refresh_is_refused_fails_its_events_until_connected_again(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    connect(pipeline)
    simulator.client.post("/_simulator/revoke", json={"company": COMPANY}).raise_for_status()
    redis.hset(COMPANY_PREFIX + COMPANY, "access_expires", 1)  # due for a refresh, which is refused
    ident = pipeline.post_event(profile_event("tp-3"))
    pipeline.work()
    (failed,) = list_failed(redis)
    assert failed.notification_id == ident and "needs re-authorisation" in failed.reason
    listed = company_cli(pipeline, "list")
    assert COMPANY in listed and "reauthorize" in listed and "sim-" not in listed
    assert collect(redis, pipeline.settings.queue_name)["companies_to_reauthorize"] == 1

    assert "requeued 1" in connect(pipeline)
    pipeline.work()
    assert [event["notification_id"] for event in pipeline.events()] == [ident]
    assert list_failed(redis) == []
    assert collect(redis, pipeline.settings.queue_name)["companies_to_reauthorize"] == 0


def test_rekey_reseals_a_stored_ess_event(pipeline: Pipeline, redis: Redis) -> None:
    pipeline.post_event(UNKNOWN_TOPIC)
    old = pipeline.settings.token_encryption_key
    assert old is not None
    vault = TokenVault(generate_key(), old.get_secret_value())
    assert rekey(redis, vault)["notifications"].resealed == 1
    assert rekey(redis, vault)["notifications"].current == 1


def itinerary_event(ident: str, event_type: str, trip: str, href: str | None) -> bytes:
    facts: dict[str, object] = {"id": trip, "userId": USER, "companyId": COMPANY}
    if href is not None:
        facts["hrefs"] = {"v4": href}
    return orjson.dumps(
        {
            "id": ident,
            "correlationId": "corr-" + ident,
            "eventType": event_type,
            "topic": "public.concur.travel.itinerary",
            "timeStamp": "2026-11-30T10:00:00.000Z",
            "facts": facts,
        }
    )


def test_an_itinerary_event_fetches_the_v4_trip_as_json_into_the_trip_record(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    connect(pipeline)
    href = f"{simulator.url}/travel/v4/trips/trip-a"
    created = pipeline.post_event(itinerary_event("it-1", "ItineraryCreated", "trip-a", href))
    updated = pipeline.post_event(itinerary_event("it-2", "ItineraryUpdated", "trip-b", None))
    deleted = pipeline.post_event(itinerary_event("it-3", "ItineraryDeleted", "trip-c", None))
    pipeline.work()

    events = {event["notification_id"]: event for event in pipeline.events()}
    for event in events.values():
        jsonschema.validate(event, SCHEMA)
    trip = events[created]
    assert (trip["kind"], trip["trip_id"], trip["event_type"]) == ("itinerary", "trip-a", "ItineraryCreated")
    assert trip["data"]["id"] == href and trip["data"]["name"].startswith("My Random Trip")
    segment = trip["data"]["bookings"][0]["segments"][0]
    assert (segment["kind"], segment["start_city_code"], segment["end_city_code"]) == ("Air", "IAD", "DEN")
    assert segment["extra"]["CarbonEmissionLbs"] == "5470"  # what the record does not model, kept
    assert trip["login_id"] == trip["data"]["user_login_id"]
    assert events[updated]["trip_id"] == "trip-b" and events[updated]["data"]["bookings"]
    assert (events[deleted]["kind"], events[deleted]["data"]) == ("itinerary", None)
    fetched = {r["path"]: r for r in simulator.requests()}
    assert set(fetched) == {"/travel/v4/trips/trip-a", "/travel/v4/trips/trip-b"}  # none for the deletion
    assert fetched["/travel/v4/trips/trip-a"]["correlation_id"] == "corr-it-1"
    assert fetched["/travel/v4/trips/trip-b"]["scheme"] == "Bearer"


def test_an_href_off_concurs_hosts_is_never_sent_the_company_token(
    pipeline: Pipeline, simulator: Simulator, redis: Redis
) -> None:
    connect(pipeline)
    ident = pipeline.post_event(
        itinerary_event("it-9", "ItineraryUpdated", "t", "https://evil.example/steal")
    )
    pipeline.work()
    (failed,) = list_failed(redis)
    assert failed.notification_id == ident and "refusing to send a token" in failed.reason
    assert simulator.requests() == []


def identity_event(ident: str, event_type: str, topic: str, href: str | None) -> bytes:
    facts: dict[str, object] = {"originator": "com.concur.profile", "companyId": COMPANY, "userId": USER}
    if href is not None:
        facts["userHref"] = href
    return orjson.dumps(
        {
            "id": ident,
            "correlationId": "c-" + ident,
            "eventType": event_type,
            "topic": topic,
            "timeStamp": "2020-13-16T18:08:51.309Z",  # as impossible as in Concur's own sample
            "subtopic": USER,
            "facts": facts,
        }
    )


def test_identity_events_of_either_topic_name_fetch_the_identity_v4_user(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    connect(pipeline)
    href = f"{simulator.url}/profile/identity/v4/Users/{USER}"
    created = pipeline.post_event(
        identity_event("id-1", "IdentityProfileCreated", "public.concur.profile.identity", href)
    )
    updated = pipeline.post_event(
        identity_event("id-2", "IdentityProfileUpdated", "concur.user.profile.identity", None)
    )
    deleted = pipeline.post_event(
        identity_event("id-3", "IdentityProfileDeleted", "public.concur.profile.identity", href)
    )
    pipeline.work()

    events = {event["notification_id"]: event for event in pipeline.events()}
    for event in events.values():
        jsonschema.validate(event, SCHEMA)
    user = events[created]
    assert (user["kind"], user["data"]["id"], user["data"]["display_name"]) == ("identity", USER, "John Doe")
    assert user["data"]["name"]["family_name"] == "Doe" and user["data"]["emails"][0]["type"] == "work"
    assert user["login_id"] == user["data"]["user_name"] == f"user-{USER[:8]}@example.com"
    assert user["data"]["extra"]["localeOverrides"]["preferenceDistance"] == "mile"
    assert events[updated]["topic"] == "public.concur.user.profile.identity" and events[updated]["data"]
    assert (events[deleted]["kind"], events[deleted]["data"]) == ("identity", None)
    assert [r["path"] for r in simulator.requests()] == [f"/profile/identity/v4/Users/{USER}"] * 2


def test_with_ess_fetch_fop_a_profile_event_also_brings_the_form_of_payment(
    pipeline: Pipeline, simulator: Simulator, make_server: Callable[[Settings], LiveServer]
) -> None:
    settings = pipeline.settings.model_copy(update={"ess_fetch_fop": True})
    with_fop = Pipeline(settings, make_server(settings), pipeline.events_file)
    connect(with_fop)
    ident = with_fop.post_event(profile_event("tp-9"))
    assert with_fop.post_event(profile_event("tp-9")) == ident  # a redelivery stores neither again
    with_fop.work()

    events = {event["kind"]: event for event in with_fop.events()}
    assert set(events) == {"profile", "fop"} and len(with_fop.events()) == 2
    fop = events["fop"]
    jsonschema.validate(fop, SCHEMA)
    assert fop["ess_event_id"] == events["profile"]["ess_event_id"] == "tp-9"
    assert fop["id"] != events["profile"]["id"]  # two changes a sink keeps apart
    assert "4111111111111111" not in orjson.dumps(fop).decode() and "****1111" in orjson.dumps(fop).decode()
    paths = sorted(r["path"] for r in simulator.requests())
    assert paths == ["/api/travelprofile/v2.0/fop", "/api/travelprofile/v2.0/profile"]


def test_an_event_of_a_company_never_connected_waits_as_a_failed_notification_for_company_connect(
    pipeline: Pipeline, redis: Redis
) -> None:
    ident = pipeline.post_event(profile_event("tp-never"))
    pipeline.work()
    (failed,) = list_failed(redis)
    assert failed.notification_id == ident and "needs re-authorisation" in failed.reason
    assert "requeued 1" in connect(pipeline)
    pipeline.work()
    assert [event["notification_id"] for event in pipeline.events()] == [ident]
