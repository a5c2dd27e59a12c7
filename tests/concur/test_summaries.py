"""Profile and trip summaries: Concur's documented examples, their quirks, and the simulator's pages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from concur_postback.concur.summaries import parse_profile_summaries, parse_trip_summaries
from concur_postback.errors import InvalidDocument
from concur_postback.simulator.api import create_simulator
from concur_postback.simulator.company import generate_company
from tests.conftest import CORPUS, LiveServer, serve_asgi


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_v2_profile_summaries_example() -> None:
    page = parse_profile_summaries(corpus("profiles/v2_profile-summaries_response.xml"))
    assert [(s.login_id, s.status) for s in page.items] == [
        ("mariab@company1.com", "Active"),
        ("peterk@company1.com", "Inactive"),
    ]
    assert page.items[0].xml_sync_id == "`string`123"  # the literal backticks of the doc example
    assert page.items[0].last_modified == "2015-01-01T01:00:00"
    assert page.paging is not None
    assert (page.paging.total_pages, page.paging.total_items, page.paging.page) == (1, 2, 1)
    assert page.paging.items_per_page == 200
    assert not page.has_more(1)


def test_v1_profile_summaries_example_has_no_status() -> None:
    page = parse_profile_summaries(corpus("profiles/v1_profile-summaries_response.xml"))
    assert [s.login_id for s in page.items] == ["mariab@company1.com", "peterk@company1.com"]
    assert all(s.status is None for s in page.items)


def test_profile_summaries_data_model_has_only_empty_elements() -> None:
    """The data-model example is what an out-of-range page looks like: nothing to take from it."""
    page = parse_profile_summaries(corpus("profiles/v2_profile-summaries_data-model.xml"))
    assert page.items == []
    assert not page.has_more(1)


def test_paged_trip_summaries_example() -> None:
    page = parse_trip_summaries(corpus("trips/trip-summaries_paged_response.xml"))
    assert [t.trip_id for t in page.items] == [
        "naIzQJ0y2DBWjCIQOb2SHTsozwBsHDkdP",
        "I2uwiJJw8r7Owl3IWlSie9WIelxhAhwiL",
    ]
    first = page.items[0]
    assert (
        first.uri == "https://www.concursolutions.com/api/travel/trip/v1.1/naIzQJ0y2DBWjCIQOb2SHTsozwBsHDkdP"
    )
    assert (first.login_id, first.last_modified) == ("cm@example.com", "2012-02-14T17:13:07")
    assert first.name == "Trip from Baltimore to New York"
    assert page.paging is not None
    assert (page.paging.total_pages, page.paging.total_items, page.paging.page) == (38, 187, 2)
    assert page.has_more(1)  # the caller's own count decides, not the example's inconsistent CurrentPage
    assert not page.has_more(38)


def test_wrapped_urls_and_ids_are_joined() -> None:
    page = parse_trip_summaries(corpus("trips/trip-summaries_paged_wrapped-urls_response.xml"))
    assert page.paging is not None and page.paging.next_page_url is not None
    assert " " not in page.paging.next_page_url and "\n" not in page.paging.next_page_url
    wrapped = parse_trip_summaries(corpus("trips/trip-summaries_by-created-date_response.xml"))
    assert wrapped.items and all(t.uri is None or " " not in t.uri for t in wrapped.items)
    assert wrapped.paging is None  # a bare ItineraryInfoList: one page


def test_tmc_guide_trip_summaries() -> None:
    page = parse_trip_summaries(corpus("trips/tmc-guide_trip-summaries-by-date_paged_response.xml"))
    [trip] = page.items
    assert trip.trip_id == "gWu9dRi$pEjxZlYNx0hlIfOeylb7xUY4Q96nbtow"
    assert trip.login_id == "demo10@pe30-connect.com"
    assert trip.last_modified == "2020-10-18T22:30:09"


def test_namespaces_and_case_are_ignored() -> None:
    body = b"""<c:CONNECTRESPONSE xmlns:c="urn:x"><c:metadata><c:paging><c:totalpages>3</c:totalpages>
      <c:page>1</c:page></c:paging></c:metadata><c:data><c:profilesummary><c:loginid>a@b.c</c:loginid>
      <c:profilelastmodifiedutc>2026-01-02T03:04:05</c:profilelastmodifiedutc></c:profilesummary></c:data>
      </c:CONNECTRESPONSE>"""
    page = parse_profile_summaries(body)
    assert [s.login_id for s in page.items] == ["a@b.c"]
    assert page.paging is not None and page.paging.total_pages == 3
    assert page.has_more(2) and not page.has_more(3)


@pytest.mark.parametrize(
    ("parse", "body", "code"),
    [
        (parse_profile_summaries, b"<Error><Message>Invalid User</Message></Error>", "unexpected_document"),
        (parse_trip_summaries, b"<Itinerary/>", "unexpected_document"),
        (parse_trip_summaries, b"<ConnectResponse>", "malformed_xml"),
        (parse_profile_summaries, b"", "empty_body"),
    ],
)
def test_refuses_what_is_not_a_summary_list(parse: object, body: bytes, code: str) -> None:
    assert callable(parse)
    with pytest.raises(InvalidDocument) as caught:
        parse(body)
    assert caught.value.code == code


@pytest.fixture
def live_simulator() -> Iterator[LiveServer]:
    yield from serve_asgi(create_simulator(travellers=23, seed=7))


def test_simulator_profile_summaries_page_through(live_simulator: LiveServer) -> None:
    headers = {"Authorization": "OAuth admin-token-123456"}
    logins: list[str] = []
    page = 1
    while True:
        response = live_simulator.client.get(
            "/api/travelprofile/v2.0/summary",
            params={"LastModifiedDate": "1900-01-01T12:00:00", "Page": page, "ItemsPerPage": 10},
            headers=headers,
        )
        assert response.status_code == 200
        summaries = parse_profile_summaries(response.content)
        logins += [s.login_id for s in summaries.items]
        if not summaries.has_more(page):
            break
        page += 1
    assert page == 3
    assert len(logins) == len(set(logins)) == 23
    beyond = live_simulator.client.get(
        "/api/travelprofile/v2.0/summary",
        params={"LastModifiedDate": "1900-01-01T12:00:00", "Page": 9, "ItemsPerPage": 10},
        headers=headers,
    )
    assert parse_profile_summaries(beyond.content).items == []  # documented: empty elements
    missing = live_simulator.client.get("/api/travelprofile/v2.0/summary", headers=headers)
    assert missing.status_code == 400 and b"LastModifiedDate is required" in missing.content


def test_simulator_is_reproducible_and_filters_by_date(live_simulator: LiveServer) -> None:
    assert generate_company(23, 7) == generate_company(23, 7) != generate_company(23, 8)
    headers = {"Authorization": "Bearer admin-token-123456"}
    params = {"userid_type": "login", "userid_value": "ALL", "includeMetadata": "true", "Page": 1}
    everything = live_simulator.client.get("/api/travel/trip/v1.1/", params=params, headers=headers)
    trips = parse_trip_summaries(everything.content).items
    assert trips
    assert all(t.uri == f"{live_simulator.url}/api/travel/trip/v1.1/{t.trip_id}" for t in trips)
    middle = sorted(t.last_modified or "" for t in trips)[len(trips) // 2]
    recent = live_simulator.client.get(
        "/api/travel/trip/v1.1/", params={**params, "lastModifiedDate": middle}, headers=headers
    )
    newer = parse_trip_summaries(recent.content).items
    assert 0 < len(newer) < len(trips)
    assert all((t.last_modified or "") >= middle for t in newer)
    with httpx.Client(base_url=live_simulator.url) as client:  # without the trailing slash too
        again = client.get("/api/travel/trip/v1.1", params=params, headers=headers)
    assert parse_trip_summaries(again.content).items == trips
    assert {t.trip_id for t in trips} == {t.trip_id for t in generate_company(23, 7).trips}
