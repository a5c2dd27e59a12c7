"""`backfill`: summaries walked over HTTP (the simulator), notifications stored with the web tier's
script in real Redis, then delivered by a real burst worker exactly like postbacks."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from redis import Redis

from concur_postback import logs
from concur_postback.backfill import parse_since, run_backfill
from concur_postback.cli import main
from concur_postback.concur.notification import Kind
from concur_postback.inbox import RECORD_PREFIX
from concur_postback.simulator.company import generate_company
from concur_postback.workers.status import collect
from tests.conftest import TOKEN, CapturedLogs, Pipeline, Simulator

SINCE = "2026-06-01T00:00:00"


def expected() -> tuple[set[str], set[str]]:
    """What the fixture's simulator (default travellers and seed) reports as changed since SINCE."""
    company = generate_company()
    return (
        {t.login for t in company.travellers if t.modified >= SINCE},
        {t.trip_id for t in company.trips if t.modified >= SINCE},
    )


def test_backfill_then_worker_delivers_each_change_once(
    pipeline: Pipeline, simulator: Simulator, redis: Redis, captured_logs: CapturedLogs
) -> None:
    logins, trips = expected()
    assert logins and trips
    first = run_backfill(pipeline.settings, TOKEN, SINCE, items_per_page=7)  # several pages of each
    assert (first.counts[Kind.PROFILE].found, first.counts[Kind.PROFILE].queued) == (len(logins), len(logins))
    assert (first.counts[Kind.ITINERARY].found, first.counts[Kind.ITINERARY].queued) == (
        len(trips),
        len(trips),
    )
    assert first.total().duplicates == 0

    second = run_backfill(pipeline.settings, TOKEN, SINCE, items_per_page=50)
    assert second.total().queued == 0
    assert second.total().duplicates == second.total().found == len(logins) + len(trips)
    assert (
        f"found {len(logins) + len(trips)} / queued 0 / duplicates {len(logins) + len(trips)}"
        in second.summary()
    )

    summary_requests = [r for r in simulator.requests() if r["path"].endswith(("/summary", "/v1.1/"))]
    assert {r["query"].get("Page") for r in summary_requests} >= {"1", "2"}
    assert all(r["token"] == "****" + TOKEN[-4:] for r in summary_requests)
    for raw in redis.scan_iter(RECORD_PREFIX + "*"):
        assert TOKEN.encode() not in (redis.get(raw) or b"")

    pipeline.work()
    events = pipeline.events()
    kinds = Counter(event["kind"] for event in events)
    assert kinds == {"profile": len(logins), "itinerary": len(trips)}
    profiles = [event for event in events if event["kind"] == "profile"]
    assert {event["userid_value"] for event in profiles} == logins
    assert all(event["subject"] == f"login:{event['userid_value']}" for event in profiles)
    itineraries = [event for event in events if event["kind"] == "itinerary"]
    assert sorted(event["trip_id"] for event in itineraries) == sorted(trips)
    assert all(event["event_type"] == "UPDATE" and event["event_time"] for event in itineraries)
    assert all(event["object_uri"].startswith(simulator.url) for event in itineraries)
    fetches = [r for r in simulator.requests() if r["path"].endswith("/profile")]
    assert {r["query"]["userid_value"] for r in fetches} == logins  # the admin token names each user
    assert collect(redis, pipeline.settings.queue_name)["pending"] == 0
    assert TOKEN not in captured_logs.text and TOKEN not in pipeline.events_file.read_text()

    # After processing: a trip change stays known (exact dedup for DEDUP_TTL); a profile is "this
    # traveller changed" and is queued again, as a postback would be once a worker has read it.
    third = run_backfill(pipeline.settings, TOKEN, SINCE)
    assert third.counts[Kind.ITINERARY].queued == 0
    assert third.counts[Kind.ITINERARY].duplicates == len(trips)
    assert third.counts[Kind.PROFILE].queued == len(logins)


def test_backfill_is_deduplicated_against_postbacks(pipeline: Pipeline, simulator: Simulator) -> None:
    """A trip change that arrived as a company postback is not queued again by the backfill."""
    company = generate_company()
    trip = next(t for t in company.trips if t.modified >= SINCE)
    pipeline.post(
        simulator.notification(trip.trip_id, "UPDATE", trip.modified),
        type="Itinerary",
        oauth_token_key=TOKEN,
        userid_type="login",
        userid_value=trip.login,
    )
    result = run_backfill(pipeline.settings, TOKEN, SINCE, kinds=(Kind.ITINERARY,))
    assert result.counts[Kind.ITINERARY].duplicates == 1
    assert Kind.PROFILE not in result.counts


def test_backfill_stops_on_a_concur_error_with_a_readable_message(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    simulator.fault(match="/summary", status=401, times=5)
    with pytest.raises(Exception, match="HTTP 401") as caught:
        run_backfill(pipeline.settings, TOKEN, SINCE, kinds=(Kind.PROFILE,))
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2026-06-01", "2026-06-01T00:00:00"),
        ("2026-06-01T10:11:12.345", "2026-06-01T10:11:12"),
        ("2026-06-01T12:00:00+02:00", "2026-06-01T10:00:00"),
    ],
)
def test_since_is_sent_as_concur_wants_it(given: str, sent: str) -> None:
    assert parse_since(given) == sent


@pytest.fixture
def cli_env(pipeline: Pipeline, quiet_logs: io.StringIO) -> Iterator[dict[str, str]]:
    settings = pipeline.settings
    assert settings.redis_url and settings.token_encryption_key
    yield {
        "REDIS_URL": settings.redis_url,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key.get_secret_value(),
        "CONCUR_BASE_URL": settings.concur_base_url,
        "CONCUR_ALLOWED_HOSTS": "",
        "LOG_LEVEL": "WARNING",
    }
    logs.configure("DEBUG", stream=quiet_logs)  # the command configured logging for itself


def test_backfill_command(cli_env: dict[str, str], pipeline: Pipeline) -> None:
    logins, trips = expected()
    total = len(logins) + len(trips)
    runner = CliRunner()
    result = runner.invoke(main, ["backfill", "--since", SINCE, "--token", TOKEN], env=cli_env)
    assert result.exit_code == 0, result.output
    assert f"found {total} / queued {total} / duplicates 0" in result.output
    assert TOKEN not in result.output
    only = runner.invoke(
        main,
        ["backfill", "--since", SINCE, "--kind", "itinerary"],
        env={**cli_env, "CONCUR_ACCESS_TOKEN": TOKEN},
    )
    assert only.exit_code == 0, only.output
    assert f"found {len(trips)} / queued 0 / duplicates {len(trips)}" in only.output
    bad = runner.invoke(main, ["backfill", "--since", "yesterday", "--token", TOKEN], env=cli_env)
    assert bad.exit_code == 2 and "not an ISO 8601" in bad.output and TOKEN not in bad.output


def test_backfill_command_reports_concur_errors(cli_env: dict[str, str], simulator: Simulator) -> None:
    simulator.fault(match="/v1.1/", status=403, times=5)
    result = CliRunner().invoke(
        main, ["backfill", "--since", SINCE, "--kind", "itinerary", "--token", TOKEN], env=cli_env
    )
    assert result.exit_code == 1
    assert "backfill failed: HTTP 403" in result.output
    assert TOKEN not in result.output


def test_backfill_retries_what_concur_asks_to_retry(pipeline: Pipeline, simulator: Simulator) -> None:
    simulator.fault(match="/summary", status=429, times=1, retry_after="0")
    simulator.fault(match="/v1.1/", status=503, times=2)
    result = run_backfill(pipeline.settings, TOKEN, SINCE)
    logins, trips = expected()
    assert result.total().queued == len(logins) + len(trips)
    statuses = [r["status"] for r in simulator.requests()]
    assert statuses.count(429) == 1 and statuses.count(503) == 2


def test_a_backfilled_change_has_the_event_id_of_the_same_change_posted_by_concur(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    """The user's own subscription reported the change; backfill finds it again in the summaries
    (with the admin token, so not deduplicated at ingest): a sink idempotent on `id` keeps one."""
    trip = next(t for t in generate_company().trips if t.modified >= SINCE)
    posted = pipeline.post(
        simulator.notification(trip.trip_id, "UPDATE", trip.modified), type="Itinerary", oauth_token_key=TOKEN
    )
    run_backfill(pipeline.settings, "admin-" + TOKEN, SINCE, kinds=(Kind.ITINERARY,))
    pipeline.work()
    events = [event for event in pipeline.events() if event["trip_id"] == trip.trip_id]
    assert len(events) == 2 and posted in {event["notification_id"] for event in events}
    assert events[0]["subject"] != events[1]["subject"]
    assert events[0]["id"] == events[1]["id"]
