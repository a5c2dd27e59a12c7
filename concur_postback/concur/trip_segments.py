"""Segments of an Itinerary v1.1 booking (`Booking/Segments/*`), and how trip records are read.

Every field is declared once, next to the element it comes from (``vendor = text("Vendor")``), and
one function, `read`, fills any record from its element. Nine segment kinds share most of their
fields, so a reader per kind would be nine copies of the same forty lines; here a new field is one
line. Field names follow ``ItinServices_Public_0.xsd`` (a field list, not an oracle: the examples
carry elements it lacks, which land in ``extra``).

Values stay as Concur sent them, stripped: dates and amounts are text (no float rounding, no
guessing at zones). Counts become ``int`` and flags ``bool`` only when they parse; otherwise the raw
text goes to ``extra``, with every element and attribute nobody declared, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields
from functools import partial
from typing import Any, ClassVar, Protocol, TypeVar

from lxml import etree

from concur_postback.concur.documents import (
    JSON,
    Fields,
    add_value,
    element_data,
    local_attr,
    scrub_card_numbers,
    to_bool,
)
from concur_postback.concur.xml import local_name

_READER = "concur.reader"  # dataclass field metadata key: how the field is read from its element
# Known element kinds spelled as the XSD does, so `kind` is stable whatever case Concur sends.
_KINDS = {
    name.lower(): name
    for name in (
        *("Air", "Car", "Hotel", "Rail", "Dining", "Ride", "Parking", "Event", "Travel"),
        *("Fixed", "Percent", "Rate", "RateWithAllowance", "FrequentFlyer", "RailProgram"),
    )
}


class _Record(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


R = TypeVar("R", bound=_Record)
Leftovers = dict[str, JSON]  # values read but not representable in their field, kept for ``extra``
Reader = Callable[[Fields, Leftovers], object]


def read(cls: type[R], element: etree._Element) -> R:
    """Fill the record ``cls`` from ``element``: declared fields first, then all the rest into extra."""
    found = Fields(element)
    leftovers: Leftovers = {}
    values: dict[str, object] = {
        spec.name: spec.metadata[_READER](found, leftovers)
        for spec in fields(cls)
        if _READER in spec.metadata
    }
    extra = found.extra()
    own_text = (element.text or "").strip()
    if own_text:
        extra["#text"] = scrub_card_numbers(own_text)
    for name, value in leftovers.items():
        add_value(extra, name, value)
    values["extra"] = extra
    return cls(**values)


def _declared(function: Reader) -> Any:
    """A field filled by ``function(fields, leftovers)``; None when the element is absent."""
    return field(default=None, metadata={_READER: function})


def text(*names: str) -> Any:
    """Stripped text of the first child named any of ``names`` (None when absent or empty)."""
    return _declared(partial(_text, names))


def count(*names: str) -> Any:
    """A whole number; text that is not one (``1.5``, ``n/a``) is kept in extra instead."""
    return _declared(partial(_parsed, names, _to_int))


def flag(*names: str) -> Any:
    """A boolean (true/false, 1/0, Y/N); anything else is kept in extra instead."""
    return _declared(partial(_parsed, names, to_bool))


def element_kind() -> Any:
    """The element's own name, e.g. ``Air`` or ``RateWithAllowance``: what kind of record this is."""
    return field(default="", metadata={_READER: _kind})


def records(cls: type[_Record], container: str, *item_names: str, bare: bool = False) -> dict[str, Reader]:
    """Metadata of a list field, ``field(default_factory=list, metadata=records(...))``: one ``cls`` per
    child of each ``container`` element named any of ``item_names`` (any name when none are given).
    With ``bare``, items found directly in the record, without the container, count too."""
    return items(partial(read, cls), container, *item_names, bare=bare)


def items(
    make: Callable[[etree._Element], object], container: str, *item_names: str, bare: bool = False
) -> dict[str, Reader]:
    """Like `records`, with ``make`` choosing the record for each element (segments: by kind)."""
    return {_READER: partial(_items, make, container, {n.lower() for n in item_names}, bare=bare)}


def _text(names: tuple[str, ...], found: Fields, leftovers: Leftovers) -> str | None:
    elements = found.all(*names)
    if not elements:
        return None
    first = _joined(elements[0])
    for element in elements:
        # A repeated element that disagrees, or one that came with structure, must not vanish silently.
        if len(element) or _joined(element) != first:
            add_value(leftovers, local_name(element), element_data(element))
    return first


def _parsed(
    names: tuple[str, ...], parse: Callable[[str], object], found: Fields, leftovers: Leftovers
) -> object:
    raw = _text(names, found, leftovers)
    value = None if raw is None else parse(raw)
    if raw is not None and value is None:
        add_value(leftovers, local_name(found.all(*names)[0]), scrub_card_numbers(raw))
    return value


def _items(
    make: Callable[[etree._Element], object],
    container: str,
    item_names: set[str],
    found: Fields,
    leftovers: Leftovers,
    *,
    bare: bool,
) -> list[object]:
    made: list[object] = []
    for element in found.all(container, *(item_names if bare else ())):
        if local_name(element).lower() != container.lower():  # a bare item
            made.append(make(element))
            continue
        for child in _children(element, leftovers):
            if item_names and local_name(child).lower() not in item_names:  # kept, not mislabelled
                add_value(leftovers, local_name(element), {local_name(child): element_data(child)})
            else:
                made.append(make(child))
    return made


def _children(container: etree._Element, leftovers: Leftovers) -> Iterator[etree._Element]:
    """A list container's elements; its own text or attributes (never sent, but) go to leftovers."""
    stray: dict[str, JSON] = {
        f"@{local_attr(str(k))}": scrub_card_numbers(str(v)) for k, v in container.attrib.items()
    }
    own_text = (container.text or "").strip()
    if own_text:
        stray["#text"] = scrub_card_numbers(own_text)
    if stray:
        add_value(leftovers, local_name(container), stray)
    return container.iterchildren(etree.Element)


def _kind(found: Fields, leftovers: Leftovers) -> str:
    name = local_name(found.element)
    return _KINDS.get(name.lower(), name)


def _joined(element: etree._Element) -> str | None:
    return "".join(map(str, element.itertext())).strip() or None


def _to_int(raw: str) -> int | None:
    digits = raw.removeprefix("-")
    # ASCII digits only (int() also takes "1_0" and other scripts), and short enough to be a count.
    return int(raw) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


@dataclass(frozen=True, kw_only=True)
class Charge:
    """One `Charges/*` entry; ``kind`` is Fixed, Percent, Rate or RateWithAllowance."""

    kind: str = element_kind()
    amount: str | None = text("Amount")
    currency: str | None = text("Currency")
    description: str | None = text("Description")
    semantics_code: str | None = text("SemanticsCode")  # DAYS, ROOMRATE, SEGFEE, DROPOFFFEE, ...
    semantics_vendor_type: str | None = text("SemanticsVendorType")  # A, C, H, ...
    is_primary: bool | None = flag("IsPrimary")
    is_paid: bool | None = flag("IsPaid")
    start_date_local: str | None = text("StartDateLocal")
    per_unit: str | None = text("PerUnit")
    num_units: str | None = text("NumUnits")  # "1.0000": a quantity, not a count
    vendor: str | None = text("Vendor")
    vendor_charge_code: str | None = text("VendorChargeCode")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Seat:
    """An `AirSeat` or `RailSeat` (rail seats' wagon, deck, position... are in extra)."""

    seat_number: str | None = text("SeatNumber")
    passenger_rph: int | None = count("PassengerRph")
    status: str | None = text("Status")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BaseSegment:
    """Fields every segment kind shares (None where a kind has no such element).

    ``start_location``/``end_location`` are the pick-up and drop-off of a car, ride or parking;
    ``number`` is the flight or train number.
    """

    kind: str = element_kind()
    vendor: str | None = text("Vendor")
    vendor_name: str | None = text("VendorName")
    confirmation_number: str | None = text("ConfirmationNumber")
    cancellation_number: str | None = text("CancellationNumber")
    status: str | None = text("Status")  # booking status code: HK, GK, ...
    start_date_local: str | None = text("StartDateLocal")
    end_date_local: str | None = text("EndDateLocal")
    start_date_utc: str | None = text("StartDateUtc")
    end_date_utc: str | None = text("EndDateUtc")
    time_zone_id: str | None = text("TimeZoneId")
    date_created_utc: str | None = text("DateCreatedUtc")
    date_modified_utc: str | None = text("DateModifiedUtc")
    date_cancelled_utc: str | None = text("DateCancelledUtc")
    start_city_code: str | None = text("StartCityCode")
    end_city_code: str | None = text("EndCityCode")
    start_location: str | None = text("StartLocation")
    end_location: str | None = text("EndLocation")
    start_address: str | None = text("StartAddress")
    start_city: str | None = text("StartCity")
    start_state: str | None = text("StartState")
    start_country: str | None = text("StartCountry")
    start_postal_code: str | None = text("StartPostalCode")
    end_address: str | None = text("EndAddress")
    end_city: str | None = text("EndCity")
    end_state: str | None = text("EndState")
    end_country: str | None = text("EndCountry")
    end_postal_code: str | None = text("EndPostalCode")
    number: str | None = text("FlightNumber", "TrainNumber")
    class_of_service: str | None = text("ClassOfService")
    seats: list[Seat] = field(default_factory=list, metadata=records(Seat, "Seats", "AirSeat", "RailSeat"))
    num_persons: int | None = count("NumPersons")
    phone_number: str | None = text("PhoneNumber")
    currency: str | None = text("Currency")
    daily_rate: str | None = text("DailyRate")
    total_rate: str | None = text("TotalRate")
    rate_code: str | None = text("RateCode")
    charges: list[Charge] = field(default_factory=list, metadata=records(Charge, "Charges"))
    is_preferred_vendor: bool | None = flag("IsPreferredVendor")
    notes: str | None = text("Notes")


@dataclass(frozen=True, kw_only=True)
class AirSegment(BaseSegment):
    aircraft_code: str | None = text("AircraftCode")
    cabin: str | None = text("Cabin")
    num_stops: int | None = count("NumStops")
    e_ticket: bool | None = flag("ETicket")
    start_terminal: str | None = text("StartTerminal")
    end_terminal: str | None = text("EndTerminal")
    start_gate: str | None = text("StartGate")
    end_gate: str | None = text("EndGate")
    duration: str | None = text("Duration")  # minutes
    miles: str | None = text("Miles")
    leg_id: str | None = text("LegId")
    operated_by_vendor: str | None = text("OperatedByVendor")
    operated_by_flight_number: str | None = text("OperatedByFlightNumber")
    extra: dict[str, JSON] = field(default_factory=dict)

    @property
    def flight_number(self) -> str | None:
        return self.number


@dataclass(frozen=True, kw_only=True)
class CarSegment(BaseSegment):
    car_class: str | None = text("Class")  # ACRISS letters: class, body, transmission, air conditioning
    body: str | None = text("Body")
    transmission: str | None = text("Transmission")
    air_condition: str | None = text("AirCondition")
    num_cars: int | None = count("NumCars")
    rate_type: str | None = text("RateType")
    discount_code: str | None = text("DiscountCode")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HotelSegment(BaseSegment):
    name: str | None = text("Name")
    hotel_property_id: str | None = text("HotelPropertyId")
    checkin_time: str | None = text("CheckinTime")
    checkout_time: str | None = text("CheckoutTime")
    room_type: str | None = text("RoomType")
    room_description: str | None = text("RoomDescription")
    num_rooms: int | None = count("NumRooms")
    rate_type: str | None = text("RateType")
    cancellation_policy: str | None = text("CancellationPolicy")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RailSegment(BaseSegment):
    cabin: str | None = text("Cabin")
    start_rail_station: str | None = text("StartRailStation")
    start_rail_station_name: str | None = text("StartRailStationName")
    end_rail_station: str | None = text("EndRailStation")
    end_rail_station_name: str | None = text("EndRailStationName")
    start_platform: str | None = text("StartPlatform")
    end_platform: str | None = text("EndPlatform")
    train_type_name: str | None = text("TrainTypeName")
    transport_mode: str | None = text("TransportMode")
    fare_type: str | None = text("FareType")
    e_ticket: bool | None = flag("ETicket")
    num_stops: int | None = count("NumStops")
    duration: str | None = text("Duration")
    wagon_number: str | None = text("WagonNumber")
    operated_by_train_number: str | None = text("OperatedByTrainNumber")
    extra: dict[str, JSON] = field(default_factory=dict)

    @property
    def train_number(self) -> str | None:
        return self.number


@dataclass(frozen=True, kw_only=True)
class DiningSegment(BaseSegment):
    name: str | None = text("Name")  # the restaurant
    restaurant_id: str | None = text("RestaurantId")
    reservation_id: str | None = text("ReservationId")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RideSegment(BaseSegment):
    name: str | None = text("Name")
    start_location_name: str | None = text("StartLocationName")  # pick-up
    end_location_name: str | None = text("EndLocationName")  # drop-off
    pickup_instructions: str | None = text("PickupInstructions")
    dropoff_instructions: str | None = text("DropoffInstructions")
    meeting_instructions: str | None = text("MeetingInstructions")
    duration: str | None = text("Duration")
    number_of_hours: str | None = text("NumberOfHours")
    miles: str | None = text("Miles")
    rate: str | None = text("Rate")
    rate_type: str | None = text("RateType")
    rate_description: str | None = text("RateDescription")
    reservation_id: str | None = text("ReservationId")
    cancellation_policy: str | None = text("CancellationPolicy")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ParkingSegment(BaseSegment):
    name: str | None = text("Name")
    parking_location_id: str | None = text("ParkingLocationId")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EventSegment(BaseSegment):
    name: str | None = text("Name")
    event_type: str | None = text("Type")
    segment_locator: str | None = text("SegmentLocator")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TravelSegment(BaseSegment):
    transport_mode: str | None = text("TransportMode")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UnknownSegment(BaseSegment):
    """A kind the XSD does not list (``kind`` is its element name): kept with the shared fields."""

    extra: dict[str, JSON] = field(default_factory=dict)


Segment = (
    AirSegment
    | CarSegment
    | HotelSegment
    | RailSegment
    | DiningSegment
    | RideSegment
    | ParkingSegment
    | EventSegment
    | TravelSegment
    | UnknownSegment
)
SEGMENT_KINDS: dict[str, type[Segment]] = {
    cls.__name__.removesuffix("Segment").lower(): cls
    for cls in (
        *(AirSegment, CarSegment, HotelSegment, RailSegment, DiningSegment),
        *(RideSegment, ParkingSegment, EventSegment, TravelSegment),
    )
}


def read_segment(element: etree._Element) -> Segment:
    """The record for one `Segments` child, chosen by its name; an unknown kind is kept, not dropped."""
    return read(SEGMENT_KINDS.get(local_name(element).lower(), UnknownSegment), element)
