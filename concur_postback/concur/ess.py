"""What Concur's Event Subscription Service (ESS v4) posts: one JSON event, validated into a typed value.

`POST /events` with `{"id", "correlationId", "eventType", "topic", "timeStamp", "facts", ["subtopic"],
["data"], ...}`. Pure, like notification.py: bytes in, an EssEvent or InvalidEvent out.

Tolerant where Concur's own documents differ, strict where a wrong value would mislead a sink:

* fields this version does not know are kept (``extra``) and delivered, never dropped;
* the ``public.`` prefix of a topic is optional (Concur's samples use both) and added when missing;
* event types are kept as sent (Concur documents their case: ``ItineraryCreated``);
* ``timeStamp`` is kept as sent: Concur's own samples hold impossible dates (month 13), and the
  event is still the event;
* a card number anywhere in the event is masked to its last four digits (``masked``) before a sink
  or a log sees it: by the worker, off the ack path, as the event is sealed while it waits in Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from concur_postback.concur.redaction import scrub_card_numbers
from concur_postback.errors import InvalidEvent

TOPIC_PREFIX = "public."
# The topics whose changes are fetched, and their event types as Concur documents them.
ITINERARY_TOPIC = "public.concur.travel.itinerary"
ITINERARY_FETCHED = frozenset(("ItineraryCreated", "ItineraryUpdated", "ItineraryCancelled"))
ITINERARY_GONE = frozenset(("ItineraryDeleted", "ItineraryAnonymized"))
IDENTITY_TOPICS = frozenset(("public.concur.user.profile.identity", "public.concur.profile.identity"))
IDENTITY_FETCHED = frozenset(("IdentityProfileCreated", "IdentityProfileUpdated"))
IDENTITY_DELETED = "IdentityProfileDeleted"
PROFILE_TOPIC = "public.concur.user.travel.profile"
PROFILE_FETCHED = frozenset(("TravelProfileCreated", "TravelProfileUpdated"))
PROFILE_DELETED = "TravelProfileDeleted"

ESS_REDELIVERY_SECONDS = 72 * 3600  # how long ESS retries an event that was not acknowledged
_ID_RE = re.compile(r"^[\x21-\x7e]{1,256}\Z")  # visible ASCII: ids are logged and hashed, never parsed
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._:-]{1,256}\Z")
_TEXT_MAX = 256
_REQUIRED = ("id", "correlationId", "eventType", "topic", "timeStamp", "facts")
_KNOWN = (*_REQUIRED, "subtopic", "data")


@dataclass(frozen=True)
class EssEvent:
    id: str  # ESS's own id: a redelivery carries the same one
    correlation_id: str
    event_type: str  # as Concur sent it: ItineraryUpdated, TravelProfileDeleted, ...
    topic: str  # always with the public. prefix
    timestamp: str  # as Concur sent it
    facts: dict[str, Any]
    subtopic: str | None = None
    data: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know

    @property
    def company_id(self) -> str | None:
        return _text_fact(self.facts, "companyId")

    @property
    def user_id(self) -> str | None:
        return _text_fact(self.facts, "userId")

    def as_sent(self) -> dict[str, Any]:
        """The event in Concur's own shape (topic normalised): what is stored and, masked, what a
        sink receives for a topic this version does not fetch."""
        sent: dict[str, Any] = {
            **self.extra,
            "id": self.id,
            "correlationId": self.correlation_id,
            "eventType": self.event_type,
            "topic": self.topic,
            "timeStamp": self.timestamp,
            "facts": self.facts,
        }
        if self.subtopic is not None:
            sent["subtopic"] = self.subtopic
        if self.data is not None:
            sent["data"] = self.data
        return sent

    @property
    def changes_a_profile(self) -> bool:
        """A travel profile was created or updated: the profile (and its FOP) can be fetched."""
        return self.topic == PROFILE_TOPIC and self.event_type in PROFILE_FETCHED

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_sent())

    def masked(self) -> EssEvent:
        """This event with every card number in its strings masked; nothing else changed."""
        return replace(self, facts=_masked(self.facts), data=_masked(self.data), extra=_masked(self.extra))


def parse_ess_event(body: bytes) -> EssEvent:
    """Validate an ESS event body; raise InvalidEvent with a stable code."""
    try:
        sent = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidEvent("invalid_json", "the body is not JSON") from None
    if not isinstance(sent, dict):
        raise InvalidEvent("not_an_event", "an ESS event is a JSON object")
    missing = [name for name in _REQUIRED if name not in sent]
    if missing:
        raise InvalidEvent("not_an_event", f"missing {', '.join(missing)}")
    ident = _text(sent, "id", _ID_RE)
    event_type = _text(sent, "eventType")  # free text: one of Concur's samples lists three, "A| B| C"
    topic = _text(sent, "topic", _TOPIC_RE)
    facts = sent["facts"]
    if not isinstance(facts, dict):
        raise InvalidEvent("invalid_field", "facts must be a JSON object")
    subtopic = sent.get("subtopic")
    if subtopic is not None:
        subtopic = _text(sent, "subtopic")
    return EssEvent(
        id=ident,
        correlation_id=_text(sent, "correlationId"),
        event_type=event_type,
        topic=topic if topic.startswith(TOPIC_PREFIX) else TOPIC_PREFIX + topic,
        timestamp=_text(sent, "timeStamp"),
        facts=facts,
        subtopic=subtopic,
        data=sent.get("data"),
        extra={name: value for name, value in sent.items() if name not in _KNOWN},
    )


def _text(sent: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = sent[name]
    if not isinstance(value, str) or not value or len(value) > _TEXT_MAX:
        raise InvalidEvent("invalid_field", f"{name} must be a string of 1 to {_TEXT_MAX} characters")
    if pattern is not None and not pattern.match(value):
        raise InvalidEvent("invalid_field", f"{name} has characters not allowed")
    return value


def _text_fact(facts: dict[str, Any], name: str) -> str | None:
    value = facts.get(name)
    return value if isinstance(value, str) and value else None


def _masked(value: Any) -> Any:
    """``value`` with every card number in its strings masked; nothing else changed."""
    if isinstance(value, str):
        return scrub_card_numbers(value)
    if isinstance(value, dict):
        return {name: _masked(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value
