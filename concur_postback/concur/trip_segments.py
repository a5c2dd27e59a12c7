"""Segments of an Itinerary v1.1 booking (`Booking/Segments/*`), and the charges and seats they hold.

Every field is declared once, next to the element it comes from (``vendor = text("Vendor")``; see
`reader`). Nine segment kinds share most of their fields, so a record per kind adds only what that
kind has. Field names follow ``ItinServices_Public_0.xsd`` (a field list, not an oracle: the
examples carry elements it lacks, which land in ``extra``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concur_postback.concur.reader import (
    JSON,
    Node,
    Redaction,
    count,
    element_kind,
    flag,
    read,
    records,
    text,
)

# Known kinds spelled as the XSD does, so `kind` is stable whatever case Concur sends.
SEGMENT_NAMES = ("Air", "Car", "Hotel", "Rail", "Dining", "Ride", "Parking", "Event", "Travel")
CHARGE_NAMES = ("Fixed", "Percent", "Rate", "RateWithAllowance")


@dataclass(frozen=True, kw_only=True)
class Charge:
    """One `Charges/*` entry; ``kind`` is Fixed, Percent, Rate or RateWithAllowance."""

    kind: str = element_kind(*CHARGE_NAMES)
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

    kind: str = element_kind(*SEGMENT_NAMES)
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
    seats: list[Seat] = records(Seat, "Seats", "AirSeat", "RailSeat")
    num_persons: int | None = count("NumPersons")
    phone_number: str | None = text("PhoneNumber")
    currency: str | None = text("Currency")
    daily_rate: str | None = text("DailyRate")
    total_rate: str | None = text("TotalRate")
    rate_code: str | None = text("RateCode")
    charges: list[Charge] = records(Charge, "Charges")
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


def read_segment(node: Node, redaction: Redaction) -> Segment:
    """The record for one `Segments` child, chosen by its name; an unknown kind is kept, not dropped."""
    return read(SEGMENT_KINDS.get(node.name.lower(), UnknownSegment), node, redaction)
