"""What Concur posts to the postback URL, validated into typed values.

`POST <postback>?type=Itinerary|FOP|Profile&oauth_token_key=<token>[&userid_type=login&userid_value=<id>]`
with a `<Notification>` body for itineraries. Everything here is pure: bytes in, values or
InvalidPostback out, so the web tier, the workers and the tests share one definition of "valid".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from urllib.parse import parse_qsl

from concur_postback.concur.hosts import TRIP_ID_RE, HostPolicy
from concur_postback.concur.reader import VERBATIM, read, text
from concur_postback.concur.redaction import mask
from concur_postback.concur.xml import XmlNode, local_name, parse_document
from concur_postback.errors import InvalidPostback

_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,2048}\Z")  # visible ASCII, no spaces (\Z: `$` admits a final "\n")
_USERID_VALUE_MAX = 255
_USERID_TYPES = {"login": "login", "login_id": "login", "xmlsyncid": "xmlsyncid"}
_KNOWN_PARAMS = ("type", "oauth_token_key", "userid_type", "userid_value")


class Kind(StrEnum):
    """What a stored notification is about: a postback's type, or an ESS event."""

    ITINERARY = "itinerary"
    FOP = "fop"
    PROFILE = "profile"
    IDENTITY = "identity"  # an Identity v4 user, fetched for an ESS identity event
    EVENT = "event"  # an ESS event, delivered as Concur sent it


POSTBACK_KINDS = (Kind.ITINERARY, Kind.FOP, Kind.PROFILE)  # what `type=` may name


class EventType(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    CANCEL = "CANCEL"


@dataclass(frozen=True)
class OAuthToken:
    """A live credential. Its repr and str show only the last four characters."""

    value: str = field(repr=False)

    @property
    def masked(self) -> str:
        return mask(self.value)

    def hidden_in(self, text: str) -> str:
        """``text`` (an error a caller is about to show) with this token replaced by its mask."""
        return text.replace(self.value, self.masked) if self.value else text

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"OAuthToken({self.masked})"


@dataclass(frozen=True)
class ItineraryNotification:
    """The `<Notification>` body of an itinerary postback."""

    object_uri: str
    trip_id: str
    event_type: EventType
    event_time: str | None  # ISO 8601 as Concur sent it (no zone in the docs), normalised
    context: str | None


@dataclass(frozen=True)
class Postback:
    """One validated postback: what the worker needs to fetch the changed object."""

    kind: Kind
    token: OAuthToken
    userid_type: str | None = None
    userid_value: str | None = None
    itinerary: ItineraryNotification | None = None


@dataclass(frozen=True, kw_only=True)
class _Sent:
    """The `<Notification>` children as sent, verbatim: identifiers to fetch by, not event text."""

    object_type: str | None = text("ObjectType")
    object_uri: str | None = text("ObjectURI")
    trip_id: str | None = text("TripId")
    event_type: str | None = text("EventType")
    event_time: str | None = text("EventDateTime")
    context: str | None = text("Context")


def parse_query(query_string: bytes) -> dict[str, str]:
    """Return the known parameters, refusing duplicates (a smuggling vector) and bad encodings.

    A ``+`` is a literal ``+``, not a space: Concur sends logins (``cm+travel@example.com``) and
    base64-like tokens unencoded, and none of these values can hold a space.
    """
    try:
        text = query_string.decode("ascii").replace("+", "%2B")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=32, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidPostback("invalid_query", "query string cannot be decoded") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key not in _KNOWN_PARAMS:
            continue
        if key in params:
            raise InvalidPostback("duplicate_parameter", f"parameter {key} appears more than once")
        params[key] = value
    return params


def parse_postback(query_string: bytes, body: bytes, policy: HostPolicy) -> Postback:
    """Validate a postback's query string and body; raise InvalidPostback with a stable code."""
    params = parse_query(query_string)
    kind = _kind(params.get("type"))
    token = checked_token(params.get("oauth_token_key"))  # before the body: refusing is cheaper than parsing
    userid_type, userid_value = _company_user(params.get("userid_type"), params.get("userid_value"))
    itinerary = parse_itinerary_notification(body, policy) if kind is Kind.ITINERARY else None
    return Postback(kind, token, userid_type, userid_value, itinerary)


def checked_token(token: str | None) -> OAuthToken:
    """A postback's oauth_token_key (or backfill's token), refused if missing or malformed."""
    if not token:
        raise InvalidPostback("missing_token", "oauth_token_key is required")
    if not _TOKEN_RE.match(token):
        raise InvalidPostback("invalid_token", "oauth_token_key has characters or a length not allowed")
    return OAuthToken(token)


def new_postback(
    kind: Kind,
    token: OAuthToken,
    userid_type: str | None = None,
    userid_value: str | None = None,
    itinerary: ItineraryNotification | None = None,
) -> Postback:
    """A Postback made from parts (backfill's summaries), with the same checks as parse_postback: the
    token from ``checked_token``, the company user here, ``itinerary`` from ``new_itinerary``."""
    userid_type, userid_value = _company_user(userid_type, userid_value)
    return Postback(kind, token, userid_type, userid_value, itinerary)


def parse_itinerary_notification(body: bytes, policy: HostPolicy) -> ItineraryNotification:
    root = parse_document(body)
    if local_name(root) != "Notification":
        raise InvalidPostback(
            "unexpected_document", f"expected <Notification>, got <{local_name(root)[:64]}>"
        )
    sent = read(_Sent, XmlNode(root), VERBATIM)
    if sent.object_type is not None and sent.object_type.upper() != "ITINERARY":
        raise InvalidPostback("object_type_mismatch", "ObjectType must be ITINERARY for type=Itinerary")
    return new_itinerary(
        sent.object_uri,
        sent.trip_id,
        _event_type(sent.event_type),
        sent.event_time,
        context=sent.context,
        policy=policy,
    )


def new_itinerary(
    object_uri: str | None,
    trip_id: str | None,
    event_type: EventType,
    event_time: str | None,
    *,
    context: str | None = None,
    policy: HostPolicy,
) -> ItineraryNotification:
    """The one way to make an ItineraryNotification: the URI allowed by ``policy`` and naming the
    trip, the trip id well-formed, the event time normalised. Raises InvalidPostback."""
    if not object_uri:
        raise InvalidPostback("missing_field", "ObjectURI is required")
    uri_trip_id = policy.trip_id_from_uri(object_uri)
    trip_id = trip_id or uri_trip_id
    if trip_id != uri_trip_id:
        raise InvalidPostback("trip_id_mismatch", "TripId does not match the trip in ObjectURI")
    if not TRIP_ID_RE.match(trip_id):
        raise InvalidPostback("invalid_trip_id", "TripId has characters or a length not allowed")
    return ItineraryNotification(
        object_uri=object_uri,
        trip_id=trip_id,
        event_type=event_type,
        event_time=_event_time(event_time),
        context=context,
    )


_KINDS = {kind.value: kind for kind in POSTBACK_KINDS}
_EVENT_TYPES = {event.value: event for event in EventType}


def _kind(value: str | None) -> Kind:
    if not value:
        raise InvalidPostback("missing_type", "type is required (Itinerary, FOP or Profile)")
    kind = _KINDS.get(value.lower())
    if kind is None:
        raise InvalidPostback("invalid_type", "type must be Itinerary, FOP or Profile")
    return kind


def _company_user(userid_type: str | None, userid_value: str | None) -> tuple[str | None, str | None]:
    if not userid_type and not userid_value:
        return None, None
    if not userid_type or not userid_value:
        raise InvalidPostback("incomplete_user", "userid_type and userid_value must be given together")
    normalised = _USERID_TYPES.get(userid_type.lower())
    if normalised is None:
        raise InvalidPostback("invalid_userid_type", "userid_type must be login or xmlsyncid")
    if len(userid_value) > _USERID_VALUE_MAX or not userid_value.isprintable():
        raise InvalidPostback("invalid_userid_value", "userid_value is too long or not printable")
    return normalised, userid_value


def _event_type(value: str | None) -> EventType:
    if not value:
        raise InvalidPostback("missing_field", "EventType is required")
    event = _EVENT_TYPES.get(value.upper())
    if event is None:
        raise InvalidPostback("invalid_event_type", "EventType must be CREATE, UPDATE or CANCEL")
    return event


def _event_time(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidPostback("invalid_event_time", "EventDateTime is not an ISO 8601 date-time") from None
