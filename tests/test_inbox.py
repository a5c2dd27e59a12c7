"""The durable inbox (inbox.py): ids, dedup keys, records, and the ingest script against a real Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import orjson
from redis import Redis

from concur_postback.concur.ess import parse_ess_event
from concur_postback.concur.notification import EventType, ItineraryNotification, Kind, OAuthToken, Postback
from concur_postback.config import Settings
from concur_postback.inbox import (
    ESS_DEDUP_SECONDS,
    Record,
    build_ess_record,
    build_record,
    dedup_key,
    new_id,
    store,
)
from concur_postback.keys import COALESCE_PREFIX, INBOX_KEY, PENDING_KEY, RECORD_PREFIX, SEEN_PREFIX
from concur_postback.tokens import vault_from_settings
from tests.conftest import TOKEN
from tests.service.test_ess import EVENT

NOTE = ItineraryNotification(
    "https://www.concursolutions.com/api/travel/trip/v1.1/TRIP1",
    "TRIP1",
    EventType.UPDATE,
    "2026-11-22T10:00:00",
    None,
)


def test_ids_start_with_the_received_time_and_sort_by_it() -> None:
    first, second = new_id(1_764_000_000_000), new_id(1_764_000_000_001)
    assert int(first[:12], 16) == 1_764_000_000_000
    assert len(first) == 28
    assert first < second
    assert new_id(1_764_000_000_000) != first


def test_an_itinerary_change_is_deduplicated_exactly_and_the_rest_coalesced() -> None:
    trip = Postback(Kind.ITINERARY, OAuthToken(TOKEN), itinerary=NOTE)
    key, exact = dedup_key(trip, "token:abc")
    assert exact
    assert key.startswith(SEEN_PREFIX)
    assert dedup_key(trip, "token:abc") == (key, True)
    assert dedup_key(trip, "token:other")[0] != key
    profile_key, profile_exact = dedup_key(Postback(Kind.PROFILE, OAuthToken(TOKEN)), "token:abc")
    assert not profile_exact
    assert profile_key.startswith(COALESCE_PREFIX)
    undated = Postback(Kind.ITINERARY, OAuthToken(TOKEN), itinerary=replace(NOTE, event_time=None))
    undated_key, undated_exact = dedup_key(undated, "token:abc")
    assert not undated_exact  # no change named: coalesced like a profile
    assert undated_key.startswith(COALESCE_PREFIX)


def test_the_record_holds_the_token_sealed_and_reads_back(settings: Settings) -> None:
    vault = vault_from_settings(settings)
    record = build_record(
        Postback(Kind.ITINERARY, OAuthToken(TOKEN), "login", "a@example.com", NOTE), vault, "r1", 1.5
    )
    assert TOKEN not in record.to_json().decode()
    assert vault.decrypt(record.token, bound_to=record.id).value == TOKEN
    assert Record.from_json(record.to_json()) == record
    assert (record.subject, record.trip_id, record.received_ms) == ("login:a@example.com", "TRIP1", 1500)


def test_store_writes_record_inbox_and_pending_once(redis: Redis, settings: Settings) -> None:
    vault = vault_from_settings(settings)
    postback = Postback(Kind.FOP, OAuthToken(TOKEN))
    first = build_record(postback, vault, None, 1_764_000_000.0)
    again = build_record(postback, vault, None, 1_764_000_001.0)  # Concur's redelivery: the same dedup key
    results = store(redis, [first, again], settings)
    assert [(result.accepted, result.id) for result in results] == [(True, first.id), (False, first.id)]
    assert redis.lrange(INBOX_KEY, 0, -1) == [first.id.encode()]
    assert redis.zscore(PENDING_KEY, first.id) == 1_764_000_000_000
    assert 0 < redis.ttl(RECORD_PREFIX + first.id) <= settings.token_ttl_seconds
    assert 0 < redis.ttl(first.dedup_key) <= settings.coalesce_window_seconds
    assert store(redis, [], settings) == []


def test_a_postback_record_is_stored_as_workers_before_ess_read_it(settings: Settings) -> None:
    """Rolling deploys: this web tier's postback records are read by the workers before it."""
    record = build_record(Postback(Kind.PROFILE, OAuthToken(TOKEN)), vault_from_settings(settings), None, 0.0)
    stored = orjson.loads(record.to_json())
    assert not {"source", "topic", "payload"} & set(stored)
    assert Record.from_json(record.to_json()) == record


def test_an_ess_event_is_deduplicated_on_its_own_id_for_at_least_ess_s_72_hours(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(dedup_ttl_seconds=3600)
    vault = vault_from_settings(settings)
    event = parse_ess_event(EVENT)
    first, again = (build_ess_record(event, vault, None, 0.0) for _ in range(2))
    assert first.id != again.id and first.dedup_key == again.dedup_key
    results = store(redis, [first], settings) + store(redis, [again], settings)
    assert [(r.accepted, r.id) for r in results] == [(True, first.id), (False, first.id)]
    assert redis.ttl(first.dedup_key) > ESS_DEDUP_SECONDS - 60 > 72 * 3600
