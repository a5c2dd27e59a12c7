"""The simulator's additions: `fire` posting like Concur into the real web tier, the generated company,
and `simulate` still serving by default."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from concur_postback import logs
from concur_postback.cli import main
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import Kind, parse_postback
from concur_postback.embedded import free_port
from concur_postback.simulator.company import generate_company, traveller_token
from concur_postback.simulator.load import fire, plan_postbacks
from tests.conftest import Pipeline, Simulator
from tests.processes import Process, clean_env


def test_planned_postbacks_look_like_concur_postbacks() -> None:
    planned = plan_postbacks(
        9, kinds=(Kind.ITINERARY, Kind.FOP, Kind.PROFILE), concur_url="http://127.0.0.1:8081", seed=3
    )
    again = plan_postbacks(
        9, kinds=(Kind.ITINERARY, Kind.FOP, Kind.PROFILE), concur_url="http://127.0.0.1:8081", seed=3
    )
    assert [shot.params for shot in again] == [shot.params for shot in planned]  # reproducible
    policy = HostPolicy.from_base_url("http://127.0.0.1:8081", [])
    company = generate_company(seed=3)
    trip_ids = {t.trip_id for t in company.trips}
    for shot in planned:
        query = "&".join(f"{k}={v}" for k, v in shot.params.items()).encode()
        postback = parse_postback(query, shot.body, policy)
        if postback.kind is Kind.ITINERARY:
            assert postback.itinerary is not None and postback.itinerary.trip_id in trip_ids
            assert postback.itinerary.object_uri.startswith("http://127.0.0.1:8081/api/travel/trip/v1.1/")
        else:
            assert shot.body == b""
        assert postback.userid_type is None  # user notifications: the traveller's own token
        assert postback.token.value.startswith("sim-")
    company_postback = plan_postbacks(
        1, kinds=(Kind.PROFILE,), concur_url="http://x", seed=3, company_token="admin-tok-1234"
    )[0]
    assert company_postback.params["oauth_token_key"] == "admin-tok-1234"
    assert company_postback.params["userid_type"] == "login"
    assert traveller_token("a@b.c", 3) == traveller_token("a@b.c", 3) != traveller_token("a@b.c", 4)


def test_fire_into_the_service_then_the_worker_fetches_from_the_simulator(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    planned = plan_postbacks(12, kinds=(Kind.ITINERARY, Kind.PROFILE, Kind.FOP), concur_url=simulator.url)
    postback = f"{pipeline.server.url}/postback"
    result = asyncio.run(fire(postback, planned, rate=200))
    assert result.sent == 12
    assert result.seconds >= 11 / 200
    assert set(result.statuses) <= {"accepted", "duplicate"}  # profiles/FOP of one traveller coalesce
    assert result.statuses["accepted"] >= 4
    again = asyncio.run(fire(postback, planned, rate=0))  # Concur redelivering the same notifications
    assert again.statuses["accepted"] == 0 and again.statuses["duplicate"] == 12
    pipeline.work()
    events = pipeline.events()
    assert len(events) == result.statuses["accepted"]
    trips = [e for e in events if e["kind"] == "itinerary"]
    assert len(trips) == 4 and all(e["object_uri"].startswith(simulator.url) for e in trips)
    assert all(e["event_type"] != "ERROR" for e in events)


def test_fire_reports_refusals(pipeline: Pipeline) -> None:
    planned = plan_postbacks(2, kinds=(Kind.ITINERARY,), concur_url="https://evil.example.com")
    result = asyncio.run(fire(f"{pipeline.server.url}/postback", planned, rate=0))
    assert result.statuses == {"HTTP 400 object_uri_not_allowed": 2}
    unreachable = asyncio.run(fire(f"http://127.0.0.1:{free_port()}/postback", planned[:1], rate=0))
    assert list(unreachable.statuses) == ["error: ConnectError"]


@pytest.fixture
def restore_logs(quiet_logs: io.StringIO) -> Iterator[None]:
    yield
    logs.configure("DEBUG", stream=quiet_logs)


@pytest.mark.usefixtures("restore_logs")
def test_simulate_fire_command(pipeline: Pipeline, simulator: Simulator) -> None:
    args = ["simulate", "fire", "--to", f"{pipeline.server.url}/postback", "--count", "6", "--rate", "0"]
    result = CliRunner().invoke(main, [*args, "--kind", "itinerary", "--concur-url", simulator.url])
    assert result.exit_code == 0, result.output
    assert "fired 6 in" in result.output and "accepted 6" in result.output
    refused = CliRunner().invoke(
        main, [*args, "--kind", "itinerary", "--concur-url", "https://evil.example.com"]
    )
    assert refused.exit_code == 1 and "HTTP 400 object_uri_not_allowed 6" in refused.output


def test_trip_summaries_link_pages(simulator: Simulator) -> None:
    headers = {"Authorization": "OAuth admin-token-123456"}
    params = {"userid_value": "ALL", "includeMetadata": "true", "ItemsPerPage": "5", "Page": "2"}
    body = simulator.client.get("/api/travel/trip/v1.1/", params=params, headers=headers).text
    assert "<CurrentPage>2</CurrentPage>" in body
    next_url = body.split("<NextPageURL>")[1].split("</NextPageURL>")[0].replace("&amp;", "&")
    assert parse_qs(urlsplit(next_url).query)["Page"] == ["3"]
    bare = simulator.client.get("/api/travel/trip/v1.1/", params={"userid_value": "ALL"}, headers=headers)
    assert bare.text.startswith("<ItineraryInfoList")  # without includeMetadata: no paging wrapper
    assert simulator.client.get("/api/travel/trip/v1.1/").status_code == 401
    simulator.fault(match="/api/travel/trip/v1.1/", status=503, retry_after="2")
    faulted = simulator.client.get("/api/travel/trip/v1.1/", params=params, headers=headers)
    assert (faulted.status_code, faulted.headers["retry-after"]) == (503, "2")


@pytest.mark.slow
def test_simulate_still_serves_by_default() -> None:
    port = free_port()
    process = Process(["simulate", "--port", str(port), "--travellers", "3", "--seed", "9"], clean_env())
    try:
        process.wait_for("Uvicorn running on", prefix=True)
        company = httpx.get(f"http://127.0.0.1:{port}/_simulator/company", timeout=5).json()
        assert [t["login"] for t in company["travellers"]] == [
            t.login for t in generate_company(3, 9).travellers
        ]
    finally:
        process.stop()
