"""The XML the simulator answers with, built as elements (lxml) so that every value is escaped.

Trips, profiles and forms of payment come from Concur's documented examples in ``data/`` with the
trip id and login filled in; listings, errors and subscription answers are built here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree
from lxml.builder import E, ElementMaker

from concur_postback.simulator.company import SimTraveller, SimTrip

XML = "application/xml"
TRIP_NS = "http://www.concursolutions.com/api/travel/trip/2010/06"
# Next to this module (importlib.resources does not read namespace packages such as this one).
_DATA = Path(__file__).resolve().parent / "data"
# The documented examples, by name: trip, profile_v1, profile_v2, fop (XML), itinerary_v4 (JSON).
TEMPLATES = {
    path.stem: path.read_text() for path in sorted(_DATA.iterdir()) if path.suffix in (".xml", ".json")
}

_TRIP = ElementMaker(namespace=TRIP_NS, nsmap={None: TRIP_NS})


@dataclass(frozen=True)
class Paging:
    total_items: int
    page: int
    per_page: int
    previous_url: str = ""
    next_url: str = ""

    @property
    def total_pages(self) -> int:
        return (self.total_items + self.per_page - 1) // self.per_page


def from_template(name: str, **values: str) -> str:
    """A documented example with ``{{KEY}}`` placeholders filled in."""
    body = TEMPLATES[name]
    for key, value in values.items():
        body = body.replace("{{" + key + "}}", value)
    return body


def error_document(message: str, *, stamped: bool = True) -> bytes:
    """Concur's error body; ``stamped`` adds its Server-Time and Id."""
    root = E.Error(E.Message(message))
    if stamped:
        root.append(E("Server-Time", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")))
        root.append(E.Id(str(uuid.uuid4()).upper()))
    return etree.tostring(root)


def profile_summaries(travellers: Sequence[SimTraveller], paging: Paging, *, v2: bool) -> bytes:
    def summary(status: str, login: str, sync_id: str, modified: str) -> etree._Element:
        fields = [E.LoginID(login), E.XmlProfileSyncID(sync_id), E.ProfileLastModifiedUTC(modified)]
        element: etree._Element = E.ProfileSummary(*([E.Status(status)] if v2 else []), *fields)
        return element

    items = [summary(t.status, t.login, t.sync_id, t.modified) for t in travellers]
    if not items:  # documented: a page out of range gives empty elements
        items = [summary("", "", "", "")]
    metadata = E.Paging(
        E.TotalPages(str(paging.total_pages)),
        E.TotalItems(str(paging.total_items)),
        E.Page(str(paging.page)),
        E.ItemsPerPage(str(paging.per_page)),
        E.PreviousPageURL(),
        E.NextPageURL(),
    )
    return etree.tostring(E.ConnectResponse(E.Metadata(metadata), E.Data(*items)))


def trip_summaries(trips: Sequence[SimTrip], base_url: str, paging: Paging | None) -> bytes:
    """The ItineraryInfoList; with ``paging`` (includeMetadata=true) wrapped as a ConnectResponse."""
    listing = _TRIP.ItineraryInfoList(
        *(
            _TRIP.ItineraryInfo(
                _TRIP.TripId(t.trip_id),
                _TRIP.TripName(t.name),
                _TRIP.StartDateLocal(t.start),
                _TRIP.EndDateLocal(t.end),
                _TRIP.UserLoginId(t.login),
                _TRIP.DateModifiedUtc(t.modified),
                _TRIP.id(f"{base_url}/api/travel/trip/v1.1/{t.trip_id}"),
            )
            for t in trips
        )
    )
    if paging is None:
        return etree.tostring(listing)
    metadata = E.Paging(
        E.TotalPages(str(paging.total_pages)),
        E.TotalItems(str(paging.total_items)),
        E.CurrentPage(str(paging.page)),
        E.ItemsPerPage(str(paging.per_page)),
        E.PreviousPageURL(paging.previous_url),
        E.NextPageURL(paging.next_url),
    )
    return etree.tostring(E.ConnectResponse(E.Metadata(metadata), E.Data(listing)))


def subscription_success() -> bytes:
    root = E.TravelProfileResponseMessage(
        E.Code("S001"), E.Message("Success, no errors or warnings reported")
    )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def itinerary_notification(concur_url: str, trip_id: str, event: str, when: str) -> bytes:
    """The body Concur posts for an itinerary change."""
    uri = f"{concur_url.rstrip('/')}/api/travel/trip/v1.1/{trip_id}"
    root = E.Notification(
        E.ObjectType("ITINERARY"),
        E.ObjectURI(uri),
        E.EventDateTime(when),
        E.EventType(event),
        E.Context(),
        E.TripId(trip_id),
    )
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
