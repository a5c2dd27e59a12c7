"""Hypothesis against the JSON readers (ESS events, Itinerary v4, Identity v4): any JSON value or
mangled body gives a typed value orjson can serialise, or a clean refusal with a known code."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concur_postback.concur.ess import EssEvent, parse_ess_event
from concur_postback.concur.identity import Identity, parse_identity
from concur_postback.concur.trips import Trip, parse_trip_v4
from concur_postback.errors import InvalidEvent, InvalidInput
from tests.conftest import CORPUS

FUZZ = settings(max_examples=80, deadline=timedelta(seconds=1))
READERS: dict[str, tuple[Callable[[bytes], object], type, bytes]] = {
    "ess event": (parse_ess_event, EssEvent,
                  (CORPUS / "ess" / "event-topics__travel__v4.itinerary-events__2.json").read_bytes()),
    "trip v4": (parse_trip_v4, Trip,
                (CORPUS / "ess" / "api-reference__travel__itinerary-v4__v4.itinerary__1.json").read_bytes()),
    "identity v4": (parse_identity, Identity,
                    (CORPUS / "ess" / "api-reference__profile__v4.identity__2.json").read_bytes()),
}  # fmt: skip
CODES = {"invalid_json", "not_an_event", "invalid_field", "malformed_json", "unexpected_document", "too_deep"}
NAMES = st.sampled_from(["id", "Bookings", "Segments", "Air", "facts", "topic", "name", "emails", "x", "ID"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=5),
    max_leaves=40,
)


def check(name: str, body: bytes) -> None:
    parse, record, _ = READERS[name]
    try:
        result = parse(body)
    except (InvalidEvent, InvalidInput) as exc:
        assert exc.code in CODES, exc
        return
    assert isinstance(result, record)
    orjson.dumps(result)


@pytest.mark.parametrize("name", READERS)
@FUZZ
@given(value=VALUES)
def test_any_json_value_gives_a_value_or_a_clean_refusal(name: str, value: object) -> None:
    check(name, json.dumps(value).encode())  # json: integers of any size, as a sender may write them


@pytest.mark.parametrize("name", READERS)
@FUZZ
@given(data=st.data())
def test_a_mangled_documented_body_gives_a_value_or_a_clean_refusal(name: str, data: st.DataObject) -> None:
    body = bytearray(READERS[name][2])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        piece = data.draw(st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b"\\u0000", b"\xff", b"null"]))
        body[at:at] = piece
    check(name, bytes(body))


def test_a_document_nested_past_the_records_is_refused_not_recursed_into() -> None:
    deep = b'{"a": ' * 5000 + b"1" + b"}" * 5000
    for name in READERS:
        check(name, deep)
