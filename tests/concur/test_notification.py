from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import (
    EventType,
    Kind,
    OAuthToken,
    parse_itinerary_notification,
    parse_postback,
    parse_query,
)
from concur_postback.errors import InvalidPostback
from tests.conftest import NOTIFICATION

POLICY = HostPolicy.from_base_url("https://us.api.concursolutions.com", ["*.concursolutions.com"])
TRIP = "naIzQJ0y2DBWjCIQOb2SHTsozwBsHDkdP"
URI = f"https://www.concursolutions.com/api/travel/trip/v1.1/{TRIP}"


def notification(
    *,
    uri: str = URI,
    trip: str | None = TRIP,
    event: str = "UPDATE",
    when: str | None = "2013-02-13T08:12:35",
    ns: str = "",
    object_type: str = "ITINERARY",
) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    parts = [
        f"<Notification{xmlns}>",
        f"<ObjectType>{object_type}</ObjectType>",
        f"<ObjectURI>{uri}</ObjectURI>",
        f"<EventDateTime>{when}</EventDateTime>" if when is not None else "",
        f"<EventType>{event}</EventType>",
        "<Context/>",
        f"<TripId>{trip}</TripId>" if trip is not None else "",
        "</Notification>",
    ]
    return "".join(parts).encode()


def reason(query: bytes, body: bytes = b"") -> str:
    with pytest.raises(InvalidPostback) as caught:
        parse_postback(query, body, POLICY)
    return caught.value.code


def test_corpus_notification_parses_to_its_values() -> None:
    note = parse_itinerary_notification(NOTIFICATION, POLICY)
    assert note.trip_id == TRIP
    assert note.object_uri == URI
    assert note.event_type is EventType.CREATE
    assert note.event_time == "2013-02-13T08:12:35"
    assert note.context is None


@pytest.mark.parametrize("type_", ["Itinerary", "itinerary", "ITINERARY", "iTiNeRaRy"])
def test_type_is_case_insensitive_for_itinerary(type_: str) -> None:
    postback = parse_postback(f"type={type_}&oauth_token_key=abc".encode(), NOTIFICATION, POLICY)
    assert postback.kind is Kind.ITINERARY
    assert postback.itinerary is not None


@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        ("FOP", Kind.FOP),
        ("fop", Kind.FOP),
        ("Profile", Kind.PROFILE),
        ("profile", Kind.PROFILE),
        ("PROFILE", Kind.PROFILE),
    ],
)
def test_fop_and_profile_need_no_body_and_tolerate_one(type_: str, kind: Kind) -> None:
    for body in (b"", b"anything at all, even <not xml"):
        postback = parse_postback(f"type={type_}&oauth_token_key=abc".encode(), body, POLICY)
        assert postback.kind is kind
        assert postback.itinerary is None


def test_company_parameters_are_kept_and_normalised() -> None:
    query = b"type=Profile&oauth_token_key=abc&userid_type=LOGIN_ID&userid_value=cm%40example.com"
    postback = parse_postback(query, b"", POLICY)
    assert (postback.userid_type, postback.userid_value) == ("login", "cm@example.com")


def test_namespaced_body_with_bom_and_other_encoding_parses() -> None:
    ns = "http://www.concursolutions.com/api/travel/trip/2010/06"
    body = b"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?>" + notification(ns=ns)
    assert parse_itinerary_notification(body, POLICY).event_type is EventType.UPDATE
    utf16 = ("<?xml version='1.0' encoding='UTF-16'?>" + notification(ns=ns).decode()).encode("utf-16")
    assert parse_itinerary_notification(utf16, POLICY).trip_id == TRIP
    latin1 = b"<?xml version='1.0' encoding='ISO-8859-1'?>" + notification().replace(
        b"<Context/>", b"<Context>caf\xe9</Context>"
    )
    assert parse_itinerary_notification(latin1, POLICY).context == "café"


def test_prefixed_namespace_and_lowercase_event_type() -> None:
    body = notification(event="cancel").replace(b"<Notification>", b"<c:Notification xmlns:c='urn:x'>")
    body = body.replace(b"</Notification>", b"</c:Notification>")
    assert parse_itinerary_notification(body, POLICY).event_type is EventType.CANCEL


def test_missing_trip_id_is_taken_from_the_uri() -> None:
    assert parse_itinerary_notification(notification(trip=None), POLICY).trip_id == TRIP


@pytest.mark.parametrize(
    ("query", "body", "code"),
    [
        (b"oauth_token_key=abc", b"", "missing_type"),
        (b"type=Expense&oauth_token_key=abc", b"", "invalid_type"),
        (b"type=FOP", b"", "missing_token"),
        (b"type=FOP&oauth_token_key=", b"", "missing_token"),
        (b"type=FOP&oauth_token_key=a%20b", b"", "invalid_token"),
        (b"type=FOP&oauth_token_key=" + b"a" * 2049, b"", "invalid_token"),
        (b"type=FOP&oauth_token_key=a&oauth_token_key=b", b"", "duplicate_parameter"),
        (b"type=FOP&TYPE=Profile&oauth_token_key=a", b"", "duplicate_parameter"),
        (b"type=FOP&oauth_token_key=%ff", b"", "invalid_query"),
        (b"type=FOP&oauth_token_key=\xc3\xa9", b"", "invalid_query"),
        (b"type=Profile&oauth_token_key=a&userid_type=login", b"", "incomplete_user"),
        (b"type=Profile&oauth_token_key=a&userid_value=x", b"", "incomplete_user"),
        (b"type=Profile&oauth_token_key=a&userid_type=email&userid_value=x", b"", "invalid_userid_type"),
        (b"type=Itinerary&oauth_token_key=a", b"", "empty_body"),
        (b"type=Itinerary&oauth_token_key=a", b"not xml", "malformed_xml"),
        (b"type=Itinerary&oauth_token_key=a", b"<Notification><ObjectURI>", "malformed_xml"),
        (b"type=Itinerary&oauth_token_key=a", b"<Trip/>", "unexpected_document"),
    ],
)
def test_invalid_postbacks_are_refused_with_a_code(query: bytes, body: bytes, code: str) -> None:
    assert reason(query, body) == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (notification(event="DELETE"), "invalid_event_type"),
        (notification(when="yesterday"), "invalid_event_time"),
        (notification(object_type="PROFILE"), "object_type_mismatch"),
        (notification(trip="SomeOtherTrip"), "trip_id_mismatch"),
        (notification(uri="https://evil.example.com/api/travel/trip/v1.1/" + TRIP), "object_uri_not_allowed"),
        (
            notification(uri="http://www.concursolutions.com/api/travel/trip/v1.1/" + TRIP),
            "object_uri_not_allowed",
        ),
        (
            notification(uri="https://www.concursolutions.com:8443/api/travel/trip/v1.1/" + TRIP),
            "object_uri_not_allowed",
        ),
        (
            notification(uri="https://u:p@www.concursolutions.com/api/travel/trip/v1.1/" + TRIP),
            "object_uri_not_allowed",
        ),
        (notification(uri="https://10.0.0.1/api/travel/trip/v1.1/" + TRIP), "object_uri_not_allowed"),
        (
            notification(uri="ftp://www.concursolutions.com/api/travel/trip/v1.1/" + TRIP),
            "object_uri_not_allowed",
        ),
        (
            notification(uri="https://www.concursolutions.com/api/travelprofile/v2.0/profile"),
            "invalid_object_uri",
        ),
        (notification(uri=URI + "?x=1"), "invalid_object_uri"),
        (
            notification(uri="https://www.concursolutions.com/api/travel/trip/v1.1/bad%2Fid", trip=None),
            "invalid_object_uri",
        ),
        (notification(uri=""), "missing_field"),
        (notification(event=""), "missing_field"),
    ],
)
def test_invalid_notification_fields_are_refused(body: bytes, code: str) -> None:
    assert reason(b"type=Itinerary&oauth_token_key=a", body) == code


def test_doctype_and_entities_are_refused_without_expansion() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<Notification><Context>&lol2;</Context></Notification>"
    )
    xxe = b'<!DOCTYPE n [<!ENTITY x SYSTEM "file:///etc/passwd">]><Notification><Context>&x;</Context></Notification>'
    external = b'<!DOCTYPE Notification SYSTEM "http://127.0.0.1:9/x.dtd"><Notification/>'
    for body in (laughs, xxe, external):
        assert reason(b"type=Itinerary&oauth_token_key=a", body) == "dtd_forbidden"


def test_error_messages_never_contain_the_token() -> None:
    token = "SuperSecretToken1234"
    for query in (
        f"type=Nope&oauth_token_key={token}",
        f"oauth_token_key={token}&oauth_token_key={token}&type=FOP",
    ):
        with pytest.raises(InvalidPostback) as caught:
            parse_postback(query.encode(), b"", POLICY)
        assert token not in str(caught.value)


def test_a_token_is_hidden_in_an_error_a_caller_shows_but_its_last_four() -> None:
    token = OAuthToken("SuperSecretToken1234")
    shown = token.hidden_in("403 for SuperSecretToken1234 at /x?oauth_token_key=SuperSecretToken1234")
    assert shown == "403 for ****1234 at /x?oauth_token_key=****1234"
    assert OAuthToken("").hidden_in("nothing to hide") == "nothing to hide"


def test_a_plus_in_a_login_or_a_token_is_a_plus() -> None:
    """Concur sends these values unencoded; none of them can hold a space, so `+` is never one."""
    postback = parse_postback(
        b"type=Profile&oauth_token_key=0_AbC+dEf/Gh==&userid_type=login&userid_value=cm+travel@example.com",
        b"",
        POLICY,
    )
    assert (postback.token.value, postback.userid_value) == ("0_AbC+dEf/Gh==", "cm+travel@example.com")
    encoded = parse_postback(
        b"type=FOP&oauth_token_key=a%2Bb&userid_type=login&userid_value=a%2Bb%40x", b"", POLICY
    )
    assert (encoded.token.value, encoded.userid_value) == ("a+b", "a+b@x")  # encoded, it decodes the same


def test_unknown_parameters_are_ignored() -> None:
    assert parse_query(b"type=FOP&oauth_token_key=a&foo=1&foo=2") == {"type": "FOP", "oauth_token_key": "a"}


@given(st.binary(max_size=512))
def test_any_bytes_give_a_notification_or_a_clean_refusal(body: bytes) -> None:
    try:
        parse_itinerary_notification(body, POLICY)
    except InvalidPostback as exc:
        assert exc.code


@given(
    event=st.sampled_from(["CREATE", "UPDATE", "CANCEL", "create", "Update"]),
    trip=st.from_regex(r"[A-Za-z0-9$]{1,64}", fullmatch=True),
    ns=st.sampled_from(["", "http://www.concursolutions.com/api/travel/trip/2010/06", "urn:other"]),
    bom=st.booleans(),
)
def test_valid_notifications_round_trip(event: str, trip: str, ns: str, bom: bool) -> None:
    uri = f"https://www.concursolutions.com/api/travel/trip/v1.1/{trip}"
    body = (b"\xef\xbb\xbf" if bom else b"") + notification(uri=uri, trip=trip, event=event, ns=ns)
    note = parse_itinerary_notification(body, POLICY)
    assert (note.trip_id, note.event_type.value) == (trip, event.upper())
