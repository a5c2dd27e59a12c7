"""Events (events.py): ids that stay the same for the same change, and sealed storage."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from concur_postback.concur.notification import Kind
from concur_postback.errors import TokenDecryptionError
from concur_postback.events import build_event, event_id, open_event, seal_event
from concur_postback.inbox import Record
from concur_postback.tokens import TokenVault, generate_key

ITINERARY = Record(
    id="0192a0b1c2d3aaaaaaaaaaaaaaaa",
    kind=Kind.ITINERARY,
    token="sealed",
    subject="login:traveller@example.com",
    dedup_key="cp:seen:x",
    received_ms=1_764_000_000_000,
    trip_id="TRIP1",
    event_type="UPDATE",
    event_time="2026-11-22T10:00:00",
)
PROFILE = Record(
    id="0192a0b1c2d3bbbbbbbbbbbbbbbb",
    kind=Kind.PROFILE,
    token="sealed",
    subject="login:traveller@example.com",
    dedup_key="cp:coalesce:y",
    received_ms=1_764_000_000_000,
)


def test_event_ids_are_pinned() -> None:
    """Sinks deduplicate by these ids: a change of the formula would deliver every change again."""
    assert event_id(ITINERARY, "UPDATE") == "evt_67eac03e37f3ede1b6fbd62fbfcc8aad"
    assert event_id(PROFILE, "UPDATE") == "evt_cd253a5eec0822e5be788cf317461dcc"


def test_a_redelivered_itinerary_change_has_the_same_id() -> None:
    """Another notification (a new id, received later) about the same change: the same event id."""
    again = replace(ITINERARY, id="0192a0b1c2d4cccccccccccccccc", received_ms=ITINERARY.received_ms + 5000)
    assert event_id(again, "UPDATE") == event_id(ITINERARY, "UPDATE")
    assert event_id(replace(ITINERARY, event_time="2026-11-22T10:00:01"), "UPDATE") != event_id(
        ITINERARY, "UPDATE"
    )
    assert event_id(ITINERARY, "CANCEL") != event_id(ITINERARY, "UPDATE")


def test_profile_and_error_events_are_one_per_notification() -> None:
    """A profile notification names no change, only "it changed": each is its own event."""
    assert event_id(replace(PROFILE, id="0192a0b1c2d4dddddddddddddddd"), "UPDATE") != event_id(
        PROFILE, "UPDATE"
    )
    assert event_id(ITINERARY, "ERROR") != event_id(replace(ITINERARY, id="other"), "ERROR")


def test_build_event_copies_the_record() -> None:
    event = build_event(ITINERARY, {"trip": 1}, fetched_at="2026-11-22T10:00:02.000Z")
    assert (event.kind, event.event_type, event.trip_id, event.notification_id) == (
        "itinerary",
        "UPDATE",
        "TRIP1",
        ITINERARY.id,
    )
    assert event.received_at == "2025-11-24T16:00:00.000Z"
    assert orjson.loads(event.to_json())["data"] == {"trip": 1}


def test_sealed_events_open_only_for_their_notification() -> None:
    vault = TokenVault(generate_key())
    payload = build_event(PROFILE, {"passport": "X1234567"}).to_json()
    sealed = seal_event(vault, PROFILE.id, payload)
    assert b"X1234567" not in sealed.encode()
    assert open_event(vault, PROFILE.id, sealed) == payload
    with pytest.raises(TokenDecryptionError):
        open_event(vault, ITINERARY.id, sealed)
    assert open_event(vault, PROFILE.id, payload) == payload  # stored in clear by an earlier version
