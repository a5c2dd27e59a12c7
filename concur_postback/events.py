"""The event every sink receives: one JSON object per change, never the token.

``id`` names the change, so that a sink can be idempotent on it. It is the same however often the
change is processed (a re-run after a crash, a requeue) and differs between changes:

* an itinerary notification names its change: the trip, the event type and the event time
  (EventDateTime; for `backfill`, the trip's modification time), so the same change reported through
  a user subscription, a company subscription or a backfill has one id, whoever's token fetched it;
* a profile or FOP notification says only "this traveller's data changed", so each notification is
  its own change (its notification id): a profile changed A → B → A gives three events, not two;
* an ``ERROR`` event (Concur refused the fetch) belongs to its notification alone;
* an ESS event names itself: ESS's event id, which a redelivery repeats.

The JSON Schema is `schemas/event.schema.json`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from concur_postback.concur.ess import EssEvent
from concur_postback.concur.notification import Kind
from concur_postback.inbox import ESS, POSTBACK, Record
from concur_postback.tokens import TokenVault

SCHEMA_VERSION = 2  # 2: source, topic and the ESS fields


@dataclass(frozen=True)
class FetchFailure:
    """Why there is no ``data``: a permanent answer from Concur (401/403: token revoked or not permitted)."""

    status: int | None
    reason: str


@dataclass(frozen=True)
class Event:
    id: str
    kind: str  # itinerary | profile | fop | event (an ESS event as Concur sent it)
    event_type: str  # CREATE | UPDATE | CANCEL; UPDATE for profile and fop; ERROR when fetching was refused
    received_at: str  # when the postback arrived (ISO 8601, UTC)
    fetched_at: str | None  # when Concur answered; None when there is no document (cancelled trip, error)
    notification_id: str
    request_id: str | None  # the postback's x-request-id: follows the change through the logs
    subject: str  # "login:<id>" for company notifications, else a pseudonym of the traveller's token
    login_id: str | None  # from the fetched document, when it says
    userid_type: str | None
    userid_value: str | None
    trip_id: str | None
    object_uri: str | None
    event_time: str | None  # EventDateTime of an itinerary notification
    data: object | None  # Trip, Profile or FormOfPayment; None for a cancelled trip that is gone, or an error
    error: FetchFailure | None = None
    source: str = POSTBACK  # postback | ess
    topic: str | None = None  # the ESS topic, with its public. prefix
    ess_event_id: str | None = None
    correlation_id: str | None = None  # ESS's, to quote to Concur's support
    company_id: str | None = None
    user_id: str | None = None  # Concur's user UUID
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(self)


def iso(epoch_ms: float) -> str:
    return _utc(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def now_iso() -> str:
    return _utc(datetime.now(UTC))


def _utc(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(record: Record, event_type: str) -> str:
    if record.kind is Kind.ITINERARY and record.event_time is not None and event_type != "ERROR":
        parts = [record.kind.value, record.trip_id or "", event_type, record.event_time]
    else:
        parts = [record.kind.value, record.id, event_type]
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def build_event(
    record: Record,
    data: object | None,
    *,
    event_type: str | None = None,
    fetched_at: str | None = None,
    login_id: str | None = None,
    error: FetchFailure | None = None,
) -> Event:
    kind_event = event_type or record.event_type or "UPDATE"
    return Event(
        id=event_id(record, kind_event),
        kind=record.kind.value,
        event_type=kind_event,
        received_at=iso(record.received_ms),
        fetched_at=fetched_at,
        notification_id=record.id,
        request_id=record.request_id,
        subject=record.subject,
        login_id=login_id or (record.userid_value if record.userid_type == "login" else None),
        userid_type=record.userid_type,
        userid_value=record.userid_value,
        trip_id=record.trip_id,
        object_uri=record.object_uri,
        event_time=record.event_time,
        data=data,
        error=error,
    )


_AS_SENT: Any = object()


def ess_event_id(ess: EssEvent, kind: Kind) -> str:
    """ESS's event id names the change; the form of payment fetched beside a profile is a second one."""
    named = f"ess\x1f{ess.id}" + (f"\x1f{kind.value}" if kind is Kind.FOP else "")
    return "evt_" + hashlib.sha256(named.encode()).hexdigest()[:32]


def build_ess_event(
    record: Record,
    ess: EssEvent,
    *,
    kind: Kind = Kind.EVENT,
    data: Any = _AS_SENT,
    fetched_at: str | None = None,
) -> Event:
    """An ESS event's event: by default the event as Concur sent it (kind ``event``); with ``kind``
    and ``data``, what was fetched for it (``None``: nothing to fetch, such as a deletion)."""
    login = ess.facts.get("loginId")
    if not isinstance(login, str):
        login = getattr(data, "login_id", None)  # whose trip: the fetched trip says
    trip = ess.facts.get("id") if kind is Kind.ITINERARY else None
    return Event(
        id=ess_event_id(ess, kind),
        kind=kind.value,
        event_type=ess.event_type,
        received_at=iso(record.received_ms),
        fetched_at=fetched_at,
        notification_id=record.id,
        request_id=record.request_id,
        subject=record.subject,
        login_id=login if isinstance(login, str) else None,
        userid_type=None,
        userid_value=None,
        trip_id=trip if isinstance(trip, str) else None,
        object_uri=None,
        event_time=ess.timestamp,
        data=ess.as_sent() if data is _AS_SENT else data,
        source=ESS,
        topic=ess.topic,
        ess_event_id=ess.id,
        correlation_id=ess.correlation_id,
        company_id=ess.company_id,
        user_id=ess.user_id,
    )


def event_from_json(payload: bytes) -> Event:
    """An event read back from Redis for a retry: ``data`` and ``error`` stay plain JSON values."""
    fields = orjson.loads(payload)
    return Event(**fields)


def seal_event(vault: TokenVault, notification_id: str, payload: bytes) -> str:
    """An event as Redis keeps it for sink retries and dead letters: encrypted, bound to its
    notification (it holds passport, licence and card-holder data)."""
    return vault.seal(payload, bound_to="event:" + notification_id)


def open_event(vault: TokenVault, notification_id: str, stored: bytes | str) -> bytes:
    """The event `seal_event` stored; one an earlier version stored in clear (JSON) reads as it is,
    until `rekey` seals it."""
    raw = stored.encode() if isinstance(stored, str) else stored
    if raw.startswith(b"{"):
        return raw
    return vault.open(raw.decode(), "event:" + notification_id)
