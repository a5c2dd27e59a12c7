"""ESS events, validated: Concur's own examples, tolerance where its documents differ, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from concur_postback.concur.ess import parse_ess_event
from concur_postback.errors import InvalidEvent
from tests.conftest import CORPUS

EXAMPLES = sorted((CORPUS / "ess").glob("event-topics__*.json"))


def _valid_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


def test_every_valid_example_of_concurs_event_pages_is_an_event_and_the_others_are_refused() -> None:
    valid = [path for path in EXAMPLES if _valid_json(path)]
    invalid = [path for path in EXAMPLES if not _valid_json(path)]
    assert len(valid) >= 8 and len(invalid) >= 3  # the pages hold both kinds
    for path in valid:
        event = parse_ess_event(path.read_bytes())
        assert event.topic.startswith("public.concur.")
        assert event.id == json.loads(path.read_bytes())["id"]
    for path in invalid:
        with pytest.raises(InvalidEvent) as refused:
            parse_ess_event(path.read_bytes())
        assert refused.value.code == "invalid_json"


def _event(**changes: object) -> bytes:
    sent: dict[str, object] = {
        "id": "8e2a1c2e-0b2f-4c1e-9d0b-1a2b3c4d5e6f",
        "correlationId": "c-1",
        "eventType": "ItineraryUpdated",
        "topic": "public.concur.travel.itinerary",
        "timeStamp": "2026-11-30T10:00:00.000Z",
        "facts": {"id": "trip-1", "userId": "user-1", "companyId": "company-1"},
    }
    sent.update(changes)
    return orjson.dumps({name: value for name, value in sent.items() if value is not None})


def test_the_public_prefix_of_a_topic_is_optional_and_added() -> None:
    assert parse_ess_event(_event(topic="concur.profile.identity")).topic == "public.concur.profile.identity"
    assert parse_ess_event(_event()).topic == "public.concur.travel.itinerary"


def test_unknown_fields_are_kept_and_delivered_as_sent() -> None:
    event = parse_ess_event(_event(route={"to": "x"}, scopes=["a"], data={"n": 1}, subtopic="s"))
    assert event.extra == {"route": {"to": "x"}, "scopes": ["a"]}
    sent = event.as_sent()
    assert sent["route"] == {"to": "x"} and sent["data"] == {"n": 1} and sent["subtopic"] == "s"
    assert parse_ess_event(event.to_json()) == event  # what is stored reads back the same


def test_the_people_an_event_names_are_read_from_its_facts() -> None:
    event = parse_ess_event(_event())
    assert (event.user_id, event.company_id) == ("user-1", "company-1")
    assert parse_ess_event(_event(facts={})).user_id is None


def test_a_card_number_anywhere_in_an_event_is_masked_and_nothing_else_changes() -> None:
    facts = {"note": "card 4111 1111 1111 1111 on file", "nested": [{"pan": "5555555555554444"}], "n": 7}
    sent = parse_ess_event(_event(facts=facts, data={"cc": "378282246310005"}, extra="4012888888881881"))
    event = sent.masked()
    assert event.facts == {"note": "card ****1111 on file", "nested": [{"pan": "****4444"}], "n": 7}
    assert event.data == {"cc": "****0005"} and event.extra == {"extra": "****1881"}
    assert (event.id, event.topic) == (sent.id, sent.topic)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[1, 2]", "not_an_event"),
        (b"", "invalid_json"),
        (b'{"id": "x", "id": "y"', "invalid_json"),
        (_event(facts=None), "not_an_event"),
        (_event(facts=["a"]), "invalid_field"),
        (_event(id=""), "invalid_field"),
        (_event(id="has space"), "invalid_field"),
        (_event(id=12), "invalid_field"),
        (_event(topic="public/concur"), "invalid_field"),
        (_event(eventType="x" * 300), "invalid_field"),
        (_event(subtopic=5), "invalid_field"),
    ],
)
def test_a_body_that_is_not_an_ess_event_is_refused_with_a_stable_code(body: bytes, code: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_ess_event(body)
    assert refused.value.code == code
