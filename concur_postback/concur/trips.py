"""A trip as Concur's Itinerary v1.1 API returns it (`GET /api/travel/trip/v1.1/{tripId}`).

`parse_trip` turns the fetched `<Itinerary>` into frozen records: Trip -> Booking -> Passenger and
segments (`trip_segments`). Elements are matched by local name without regard to case, so the
`http://`, `https://` and missing namespaces Concur uses all read the same. Values are kept as the
stripped text Concur sent; anything not declared here (``CustomAttributes``, ``AirfareQuotes``,
``CalculatedAirCharges`` and whatever Concur adds next) is in each record's ``extra``.
The records serialise with ``orjson.dumps`` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concur_postback.concur.json_node import parse_json
from concur_postback.concur.reader import JSON, count, element_kind, flag, items, read, records, text
from concur_postback.concur.trip_segments import (
    SEGMENT_KINDS,
    AirSegment,
    BaseSegment,
    CarSegment,
    Charge,
    DiningSegment,
    EventSegment,
    HotelSegment,
    ParkingSegment,
    RailSegment,
    RideSegment,
    Seat,
    Segment,
    TravelSegment,
    UnknownSegment,
    read_segment,
)
from concur_postback.concur.xml import parse

__all__ = [
    "SEGMENT_KINDS",
    "AirSegment",
    "BaseSegment",
    "Booking",
    "CarSegment",
    "Charge",
    "DiningSegment",
    "EventSegment",
    "HotelSegment",
    "ParkingSegment",
    "Passenger",
    "RailSegment",
    "RideSegment",
    "Seat",
    "Segment",
    "TravelSegment",
    "TravelerProgram",
    "Trip",
    "UnknownSegment",
    "parse_trip",
]


@dataclass(frozen=True, kw_only=True)
class TravelerProgram:
    """A passenger's `FrequentFlyer` or `RailProgram` (``kind``) membership."""

    kind: str = element_kind("FrequentFlyer", "RailProgram")
    program_vendor: str | None = text("ProgramVendor")
    airline_vendor: str | None = text("AirlineVendor")
    number: str | None = text("FrequentFlyerNumber", "ProgramNumber")
    status: str | None = text("Status")
    description: str | None = text("Description")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Passenger:
    name_first: str | None = text("NameFirst")
    name_middle: str | None = text("NameMiddle")
    name_last: str | None = text("NameLast")
    name_prefix: str | None = text("NamePrefix")
    name_suffix: str | None = text("NameSuffix")
    name_title: str | None = text("NameTitle")
    text_name: str | None = text("TextName")
    programs: list[TravelerProgram] = records(
        TravelerProgram, "FrequentTravelerPrograms", "FrequentFlyer", "RailProgram"
    )
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Booking:
    """One booking record (a PNR from one source) and its segments, in document order."""

    record_locator: str | None = text("RecordLocator")
    booking_source: str | None = text("BookingSource")
    booking_owner: str | None = text("BookingOwner")
    source: str | None = text("Source")
    itin_source_name: str | None = text("ItinSourceName")
    date_booked_local: str | None = text("DateBookedLocal")
    date_created_utc: str | None = text("DateCreatedUtc")
    date_modified_utc: str | None = text("DateModifiedUtc")
    passenger_count: int | None = count("PassengerCount")
    form_of_payment_name: str | None = text("FormOfPaymentName")
    form_of_payment_type: str | None = text("FormOfPaymentType")
    passengers: list[Passenger] = records(Passenger, "Passengers", "Passenger")
    segments: list[Segment] = items(read_segment, "Segments")
    charges: list[Charge] = records(Charge, "Charges")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Trip:
    """An `<Itinerary>`. ``status`` is `TripStatus` as sent: 0 confirmed, 1 ticketed, 2 cancelled,
    6 proposal, 7 booked proposal (TripLink suppliers send booking codes such as ``HK``)."""

    id: str | None = text("id")  # the trip's URL
    trip_id: str | None = text("TripId")
    itin_locator: str | None = text("ItinLocator")
    client_locator: str | None = text("ClientLocator")
    trip_link_locator: str | None = text("TripLinkLocator")
    name: str | None = text("TripName")
    description: str | None = text("Description")
    comments: str | None = text("Comments")
    cancel_comments: str | None = text("CancelComments")
    status: str | None = text("TripStatus")
    start_date_local: str | None = text("StartDateLocal")
    end_date_local: str | None = text("EndDateLocal")
    start_date_utc: str | None = text("StartDateUtc")
    end_date_utc: str | None = text("EndDateUtc")
    booked_by_first_name: str | None = text("BookedByFirstName")
    booked_by_last_name: str | None = text("BookedByLastName")
    booked_via: str | None = text("BookedVia")
    user_login_id: str | None = text("UserLoginId")
    itin_source_name: str | None = text("ItinSourceName")
    date_booked_local: str | None = text("DateBookedLocal")
    date_created_utc: str | None = text("DateCreatedUtc")
    date_modified_utc: str | None = text("DateModifiedUtc")
    is_personal: bool | None = flag("IsPersonal")
    project_name: str | None = text("ProjectName")
    travel_request_id: str | None = text("TravelRequestId")
    # Usually `Bookings/Booking`; the booking POST's response puts `Booking` right under `Itinerary`.
    bookings: list[Booking] = records(Booking, "Bookings", "Booking")
    extra: dict[str, JSON] = field(default_factory=dict)

    @property
    def login_id(self) -> str | None:
        """Whose trip this is, named as the profile and FOP records name it (events key on it)."""
        return self.user_login_id


def parse_trip(data: bytes) -> Trip:
    """Read a fetched trip; InvalidDocument if it is malformed or not an `<Itinerary>`."""
    return read(Trip, parse(data, "Itinerary"))


def parse_trip_v4(data: bytes) -> Trip:
    """Read an Itinerary v4 trip (JSON, the v1.1 names); InvalidDocument if it is not one."""
    return read(Trip, parse_json(data))
