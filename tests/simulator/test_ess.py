"""The simulator's ESS side: planned signed events fired into the real pipeline, and its subscriptions."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from concur_postback.simulator.company import company_id
from concur_postback.simulator.ess import REDELIVER_EVERY, TOPICS, plan_events
from concur_postback.simulator.load import fetch_ess_events, fire
from tests.conftest import Pipeline, Simulator
from tests.processes import clean_env, cli
from tests.workers.test_ess_events import company_cli


def test_planned_events_cover_every_topic_reproducibly_with_redeliveries() -> None:
    planned = plan_events(40, "http://127.0.0.1:8081", seed=3)
    assert planned == plan_events(40, "http://127.0.0.1:8081", seed=3)
    events = [orjson.loads(body) for body in planned]
    assert {event["topic"] for event in events} == set(TOPICS)
    assert all(event["facts"]["companyId"] == company_id(3) for event in events)
    repeats = [n for n in range(1, 40) if planned[n] == planned[n - 1]]
    assert repeats == list(range(REDELIVER_EVERY, 40, REDELIVER_EVERY))


def test_fired_ess_events_are_accepted_once_and_reach_the_sinks_fetched(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    company_cli(pipeline, "connect", "--company-id", company_id(), "--request-token", "-", stdin="req\n")
    planned = fetch_ess_events(simulator.url, 24)
    result = asyncio.run(fire(f"{pipeline.server.url}/events", planned, rate=0))
    assert result.statuses == {"accepted": 22, "duplicate": 2}
    pipeline.work()
    kinds = Counter(event["kind"] for event in pipeline.events())
    assert kinds == {"itinerary": 5, "profile": 6, "identity": 5, "event": 6}  # topics in turn, 2 repeats
    assert all(event["source"] == "ess" for event in pipeline.events())


def test_ess_subscription_commands_with_an_application_token(simulator: Simulator) -> None:
    env = clean_env(
        CONCUR_BASE_URL=simulator.url,
        CONCUR_ALLOWED_HOSTS="",
        CONCUR_CLIENT_ID="client-1",
        CONCUR_CLIENT_SECRET="secret-1",
    )
    topics = cli("ess", "topics", env=env)
    assert topics.returncode == 0 and topics.stdout.split() == list(TOPICS)
    endpoint = "https://receiver.example.com/events/s3cret"
    made = cli("ess", "subscribe", "--topic", TOPICS[0], "--endpoint", endpoint, env=env)
    assert made.returncode == 0 and "saved successfully" in made.stdout, made.stderr
    ident = made.stdout.split(":")[0]
    again = cli("ess", "subscribe", "--topic", TOPICS[0], "--endpoint", endpoint, env=env)
    assert again.stdout.split(":")[0] == ident  # the same subscription, replaced: not a second one
    listed = cli("ess", "list", "--json", env=env)
    (subscription,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert subscription["webHookConfig"]["endpoint"] == endpoint and subscription["filter"] == ".*"
    assert "marked for deletion" in cli("ess", "unsubscribe", ident, env=env).stdout
    assert cli("ess", "list", env=env).stdout == ""
    refused = cli("ess", "subscribe", "--topic", TOPICS[0], "--endpoint", "ftp://x", env=env)
    assert refused.returncode == 2 and "not an http(s) URL" in refused.stderr
    grants = [g["grant_type"] for g in simulator.client.get("/_simulator/grants").json()]
    assert set(grants) == {"client_credentials"}
    without = cli("ess", "topics", env={**env, "CONCUR_CLIENT_SECRET": ""})
    assert without.returncode != 0 and "CONCUR_CLIENT_SECRET" in without.stderr
