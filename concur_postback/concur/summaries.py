"""Profile and trip summaries: what changed since a date, one page at a time (used by `backfill`).

Two documented shapes, both read here without caring about namespaces or the case of element names:

* profile summaries (`GET /api/travelprofile/v2.0/summary?LastModifiedDate=…&Page=&ItemsPerPage=`, v1:
  `GET /api/travelprofile/v1.0/profile?LastModifiedDate=…`): `ConnectResponse/Metadata/Paging` (with
  `Page`) + `Data/ProfileSummary{Status?, LoginID, XmlProfileSyncID, ProfileLastModifiedUTC}`;
* trip summaries (`GET /api/travel/trip/v1.1/?lastModifiedDate=…&includeMetadata=true&Page=…`):
  `ConnectResponse/Metadata/Paging` (with `CurrentPage`) + `Data/ItineraryInfoList/ItineraryInfo{TripId,
  UserLoginId, DateModifiedUtc, id, …}`, or a bare `ItineraryInfoList` without paging.

A page out of range comes back with empty elements: summaries without a login (or trip id) are skipped.
Concur's own paging numbers are inconsistent in its examples, so callers count pages themselves and
use ``Paging.total_pages`` only to know when to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, TypeVar

from lxml import etree

from concur_postback.concur.reader import VERBATIM, count, read, text
from concur_postback.concur.xml import XmlNode, local_name, parse_document
from concur_postback.errors import InvalidDocument

T = TypeVar("T")

PROFILE_SUMMARY_PATH = "/api/travelprofile/v2.0/summary"
TRIP_SUMMARY_PATH = "/api/travel/trip/v1.1/"
PROFILE_PAGE_MAX = 200  # documented maximum (and default) of ItemsPerPage for profile summaries


def _squeeze(value: str | None) -> str:
    """Values the docs wrap over several lines (ids, URLs): whitespace inside is not part of them."""
    return "".join(value.split()) if value else ""


def normalise_time(value: str | None) -> str | None:
    """ISO 8601 as the notification parser normalises EventDateTime (so dedup keys agree)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return None


@dataclass(frozen=True, kw_only=True)
class Paging:
    total_pages: int | None = count("TotalPages")
    total_items: int | None = count("TotalItems")
    page: int | None = count("Page", "CurrentPage")
    items_per_page: int | None = count("ItemsPerPage")
    next_page_url: str | None = text("NextPageURL")  # whitespace inside squeezed out by `_paging`


@dataclass(frozen=True)
class ProfileSummary:
    login_id: str
    xml_sync_id: str | None
    status: str | None
    last_modified: str | None


@dataclass(frozen=True)
class TripSummary:
    trip_id: str
    uri: str | None
    login_id: str | None
    last_modified: str | None
    name: str | None


@dataclass(frozen=True, kw_only=True)
class _ProfileSummarySent:
    login_id: str | None = text("LoginID")
    xml_sync_id: str | None = text("XmlProfileSyncID")
    status: str | None = text("Status")
    last_modified: str | None = text("ProfileLastModifiedUTC")


@dataclass(frozen=True, kw_only=True)
class _TripSummarySent:
    trip_id: str | None = text("TripId")
    uri: str | None = text("id")
    login_id: str | None = text("UserLoginId")
    last_modified: str | None = text("DateModifiedUtc")
    name: str | None = text("TripName")


@dataclass(frozen=True)
class SummaryPage(Generic[T]):
    items: list[T]
    paging: Paging | None

    def has_more(self, page: int) -> bool:
        """Whether a page after ``page`` (counted by the caller, from 1) can hold anything."""
        if not self.items or self.paging is None or self.paging.total_pages is None:
            return False
        return page < self.paging.total_pages


def parse_profile_summaries(data: bytes) -> SummaryPage[ProfileSummary]:
    root = parse_document(data, InvalidDocument)
    if _lower(root) not in ("connectresponse", "concurresponse"):
        raise InvalidDocument(
            "unexpected_document", f"expected <ConnectResponse>, got <{local_name(root)[:64]}>"
        )
    items = []
    for element in _descendants(root, "profilesummary"):
        sent = read(_ProfileSummarySent, XmlNode(element), VERBATIM)
        if sent.login_id:
            last_modified = normalise_time(sent.last_modified)
            items.append(ProfileSummary(sent.login_id, sent.xml_sync_id, sent.status, last_modified))
    return SummaryPage(items, _paging(root))


def parse_trip_summaries(data: bytes) -> SummaryPage[TripSummary]:
    root = parse_document(data, InvalidDocument)
    name = _lower(root)
    if name not in ("connectresponse", "concurresponse", "itineraryinfolist"):
        raise InvalidDocument(
            "unexpected_document",
            f"expected <ConnectResponse> or <ItineraryInfoList>, got <{local_name(root)[:64]}>",
        )
    items = []
    for element in _descendants(root, "itineraryinfo"):
        sent = read(_TripSummarySent, XmlNode(element), VERBATIM)
        trip_id, uri = _squeeze(sent.trip_id), _squeeze(sent.uri)
        if not trip_id and uri:
            trip_id = uri.rstrip("/").rpartition("/")[2]
        if trip_id:
            last_modified = normalise_time(sent.last_modified)
            items.append(TripSummary(trip_id, uri or None, sent.login_id, last_modified, sent.name))
    return SummaryPage(items, _paging(root) if name != "itineraryinfolist" else None)


def _paging(root: etree._Element) -> Paging | None:
    found = _descendants(root, "paging")
    if not found:
        return None
    paging = read(Paging, XmlNode(found[0]), VERBATIM)
    return replace(paging, next_page_url=_squeeze(paging.next_page_url) or None)


def _lower(element: etree._Element) -> str:
    return local_name(element).lower()


def _descendants(root: etree._Element, name: str) -> list[etree._Element]:
    return [element for element in root.iter(etree.Element) if _lower(element) == name]
