from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from xml.sax.saxutils import escape

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from concur_postback.concur.reader import to_bool
from concur_postback.concur.redaction import scrub_card_numbers
from concur_postback.concur.trips import (
    AirSegment,
    CarSegment,
    DiningSegment,
    EventSegment,
    HotelSegment,
    ParkingSegment,
    RailSegment,
    RideSegment,
    TravelSegment,
    Trip,
    UnknownSegment,
    parse_trip,
)
from concur_postback.errors import InvalidDocument
from tests.cards import non_card_runs, spelled_card_numbers, surrounding
from tests.conftest import CORPUS, FIXTURES

TRIPS = CORPUS / "trips"
NS = "http://www.concursolutions.com/api/travel/trip/2010/06"


def corpus(name: str) -> bytes:
    return (TRIPS / name).read_bytes()


def trip(name: str) -> Trip:
    return parse_trip(corpus(name))


def refusal(data: bytes) -> str:
    with pytest.raises(InvalidDocument) as caught:
        parse_trip(data)
    return caught.value.code


def root_name(data: bytes) -> str | None:
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    return etree.QName(root).localname


def leaf_texts(data: bytes) -> Iterator[str]:
    """Every non-blank text in a document: what a lossless parse must carry somewhere."""
    for element in etree.fromstring(data).iter(etree.Element):
        text = (element.text or "").strip()
        if text:
            yield text


def scalars(value: object) -> set[str]:
    """Every str/int value in a serialised record tree, as text."""
    if isinstance(value, dict):
        return set().union(*(scalars(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(scalars(v) for v in value)) if value else set()
    if isinstance(value, bool) or value is None:
        return set()
    return {str(value)}


def assert_nothing_lost(data: bytes, parsed: Trip) -> None:
    kept = scalars(orjson.loads(orjson.dumps(parsed)))
    for text in leaf_texts(data):
        as_count = re.fullmatch(r"-?[0-9]{1,18}", text) and str(int(text)) in kept
        assert text in kept or as_count or to_bool(text) is not None, f"{text!r} was lost"


# --- the corpus: Concur's own examples --------------------------------------------------------------


def test_every_itinerary_in_the_corpus_parses_and_keeps_every_value() -> None:
    parsed = 0
    for path in sorted(TRIPS.glob("*.xml")):
        data = path.read_bytes()
        name = root_name(data)
        if name is None:
            continue  # malformed: see test_malformed_originals_are_refused
        if name != "Itinerary":
            assert refusal(data) == "unexpected_document", path.name
            continue
        result = parse_trip(data)
        assert_nothing_lost(data, result)
        parsed += 1
    assert parsed == 16  # 14 well-formed Itinerary examples + 2 repaired truncated ones


@pytest.mark.parametrize(
    ("name", "root"),
    [
        ("get-trip-details_tripit-format_response.xml", "Response"),
        ("trip-summaries_by-start-end-date_response.xml", "ItineraryInfoList"),
        ("tmc-guide_trip-summaries-by-traveler_response.xml", "ItineraryInfoList"),
        ("trip-summaries_paged_response.xml", "ConnectResponse"),
        ("tmc-guide_trip-summaries-by-date_paged_response.xml", "ConnectResponse"),
        ("post-booking_request.xml", "Booking"),
        ("hist-2015_triplink_cancel-booking_response.xml", "Booking"),
        ("cancel-booking_response.fixed.xml", "Car"),
        ("tmc-guide_cancel-itinerary_response.xml", "Message"),
    ],
)
def test_documents_that_are_not_trip_details_are_refused(name: str, root: str) -> None:
    with pytest.raises(InvalidDocument) as caught:
        trip(name)
    assert caught.value.code == "unexpected_document"
    assert f"<{root}>" in caught.value.detail


@pytest.mark.parametrize(
    "name",
    [
        "cancel-booking_response.xml",  # xsi:nil without the xsi prefix declared
        "tmc-guide_update-itinerary_request_truncated.xml",  # "." lines where the doc elides
        "tmc-guide_update-itinerary_response_truncated.xml",  # starts with "<<?xml"
    ],
)
def test_malformed_originals_are_refused(name: str) -> None:
    assert refusal(corpus(name)) == "malformed_xml"
    assert (TRIPS / name.replace(".xml", ".fixed.xml")).exists()


def test_trip_details_response() -> None:
    result = trip("get-trip-details_response.xml")
    assert result.id == "https://www.concursolutions.com/api/travel/trip/v1.1/CNQR1234567890"
    assert (result.itin_locator, result.client_locator) == ("CNQR1234567890", "KK-CNQ-1M1P6-5HJ")
    assert result.name == "Trip from Dallas to Seattle"
    assert (result.start_date_local, result.end_date_local) == ("2013-12-21T07:25:00", "2013-12-24T23:59:00")
    assert (result.booked_via, result.booked_by_first_name, result.booked_by_last_name) == (
        "EveryGDS",
        "Chris",
        "Miller",
    )
    assert result.comments is None  # <Comments />
    assert result.itin_source_name == "ConcurTravel"
    assert [b.record_locator for b in result.bookings] == ["C123456789", "0987654321"]
    cars, hotels = result.bookings
    assert (cars.booking_source, cars.passenger_count, cars.date_booked_local) == (
        "ConcurCars",
        1,
        "2013-11-10T13:01:00",
    )
    assert [(p.name_first, p.name_last) for p in cars.passengers] == [("Chris", "Miller")]
    [car] = cars.segments
    assert isinstance(car, CarSegment)
    assert (car.kind, car.vendor, car.status, car.confirmation_number) == ("Car", "CQ", "HK", "F1672664579")
    assert (car.start_location, car.end_location, car.car_class, car.body, car.num_cars) == (
        "SEA",
        "SEA",
        "E",
        "C",
        1,
    )
    assert (car.daily_rate, car.total_rate, car.currency) == ("44.0000", "44.0000", "USD")
    dropoff, days = car.charges
    assert (dropoff.kind, dropoff.description, dropoff.amount, dropoff.semantics_code) == (
        "Fixed",
        "Dropoff Fee",
        "0.0000",
        "DROPOFFFEE",
    )
    assert (days.kind, days.is_primary, days.per_unit, days.num_units) == (
        "RateWithAllowance",
        True,
        "DAY",
        "1.0000",
    )
    assert days.extra["AllowanceAmount"] == "0.2400"
    [hotel] = hotels.segments
    assert isinstance(hotel, HotelSegment)
    assert (hotel.name, hotel.hotel_property_id, hotel.num_rooms, hotel.daily_rate) == (
        "CONCUR HOTEL",
        "CONQ",
        1,
        "240.3500",
    )
    assert hotel.cancellation_policy == "Cxl 1 day prior to Arrival"
    assert hotel.room_description == "1 KING BED ACCESSIBLE ROOM - K1RRC"
    assert hotels.extra == {"OriginalItinLocator": "33491211"}  # not in the XSD, still delivered


def test_tmc_created_itinerary_with_two_flights_a_car_and_a_hotel() -> None:
    result = trip("tmc-guide_create-itinerary_request.xml")
    assert (result.client_locator, result.status) == ("XYZ123", "0")
    assert (result.start_date_utc, result.end_date_utc) == ("2021-01-11T15:55:00", "2021-01-15T14:35:00")
    assert result.date_booked_local == "2020-01-06T00:00:00-04:00"  # offset kept as sent
    assert result.extra["IsDemoTrip"] == "false"
    [booking] = result.bookings
    assert booking.record_locator == "EYQA1001"
    assert [s.kind for s in booking.segments] == ["Hotel", "Car", "Air", "Air"]
    hotel, car, out, back = booking.segments
    assert isinstance(hotel, HotelSegment)
    assert (hotel.room_type, hotel.start_city, hotel.vendor, hotel.total_rate) == (
        "King",
        "ROM",
        "$$",
        "1000.0000",
    )
    assert isinstance(car, CarSegment)
    assert (car.vendor_name, car.confirmation_number, car.rate_code) == ("SIXT", "1252246711", "IH9564")
    assert isinstance(out, AirSegment)
    assert isinstance(back, AirSegment)
    assert [(a.flight_number, a.start_city_code, a.end_city_code) for a in (out, back)] == [
        ("2013", "MIL", "ROM"),
        ("2038", "FCO", "LIN"),
    ]
    assert (out.vendor, out.aircraft_code, out.num_stops, out.class_of_service) == ("AZ", "A320", 0, "S")
    assert (out.start_terminal, out.end_terminal, out.duration, out.miles) == ("LIN", "FCO", "80", "303")
    assert out.is_preferred_vendor is True  # sent as 1
    assert out.confirmation_number is None  # <ConfirmationNumber />
    assert [(seat.passenger_rph, seat.seat_number) for seat in out.seats] == [(1, None)]
    [price] = out.charges
    assert (price.amount, price.currency, price.is_paid) == ("333.75", "EUR", False)
    assert price.extra == {"VendorName": "Alitalia Airlines"}
    assert out.extra["FareBasisCode"] == ""  # an element the XSD lacks, sent empty
    assert booking.extra["CalculatedAirCharges"] == {
        "CalculatedAirCharge": {
            "Charges": "",
            "Text": "Estimated Air Fare",
            "BaseFare": "",
            "TotalFareCurrency": "EUR",
            "TotalFare": "333.75",
            "NetFare": "333.75",
            "FareType": "Quote",
            "Tax": "",
        }
    }


def test_tmc_trip_details_with_trip_id_and_login() -> None:
    result = trip("tmc-guide_get-trip-details_response.xml")
    assert result.trip_id == result.itin_locator == "gWu9dRi$pEjxZlYNx0hlIfOeylb7xUY4Q96nbtow"
    assert (result.user_login_id, result.trip_link_locator, result.status) == (
        "demo10@pe30-connect.com",
        "MYR2UH",
        "1",
    )
    assert (result.date_created_utc, result.date_modified_utc) == (
        "2020-10-18T22:26:53",
        "2020-10-18T22:30:09",
    )
    empty, full = result.bookings
    assert (empty.record_locator, empty.segments) == ("XYZ123", [])
    assert empty.extra["AirfareQuotes"] == {
        "Quote": {
            "BaseFare": "333.7500",
            "BaseFareCurrency": "EUR",
            "DateCreatedUtc": "2020-10-18T22:26:53",
            "DateModifiedUtc": "2020-10-18T22:26:53",
            "TotalFare": "400.0000",
            "TotalFareCurrency": "EUR",
        }
    }
    assert (full.booking_owner, full.source, full.booking_source) == (
        "ConcurConnectAPI",
        "ConcurConnectAPI",
        "POSTMAN",
    )
    assert [s.kind for s in full.segments] == ["Hotel", "Air", "Air", "Car"]
    air = full.segments[1]
    assert isinstance(air, AirSegment)
    assert (air.leg_id, air.start_date_utc, air.end_date_utc) == (
        "1",
        "2021-01-11T06:00:00",
        "2021-01-15T07:30:00",
    )


def test_booking_response_with_https_namespace_and_a_bare_booking() -> None:
    data = corpus("post-booking_response.xml")
    assert b'xmlns="https://www.concursolutions.com/api/travel/trip/2010/06"' in data
    result = parse_trip(data)
    assert (result.itin_locator, result.name) == ("CNQR1234567890", "Trip to Seattle")
    [booking] = result.bookings  # <Booking> directly under <Itinerary>, no <Bookings>
    assert (booking.record_locator, booking.booking_source) == ("PANAMA50", "Alamo")
    [passenger] = booking.passengers
    assert passenger.extra == {"PassengerKey": "0"}
    [car] = booking.segments
    assert isinstance(car, CarSegment)
    assert (car.vendor, car.vendor_name, car.confirmation_number) == ("AL", "Alamo", "F16726AIUS")
    assert (car.start_date_utc, car.end_date_utc) == ("2013-12-21T20:00:00", "2013-12-23T20:00:00")
    assert (car.num_persons, car.total_rate, car.transmission) == (1, "105.0000", "A")


def test_proposal_with_custom_attributes_and_travel_request() -> None:
    result = trip("post-trip_third-party_request.xml")
    assert (result.status, result.travel_request_id) == ("7", "3339")
    attributes = result.extra["CustomAttributes"]
    assert isinstance(attributes, dict)
    assert attributes["CustomAttribute"] == [
        {
            "ExternalId": "",
            "DataType": "Numeric",
            "Name": "ProposalBatchSize",
            "DisplayTitle": "",
            "Data": "3",
            "DisplayOnItinerary": "true",
        },
        {
            "ExternalId": "",
            "DataType": "Numeric",
            "Name": "ProposalSequenceIndex",
            "DisplayTitle": "",
            "Data": "1",
            "DisplayOnItinerary": "true",
        },
    ]


def test_triplink_trip_status_and_time_zone_are_kept_as_sent() -> None:
    result = trip("post-trip_triplink_request.xml")
    assert result.status == "HK"  # the XSD says unsignedByte
    hotel = result.bookings[1].segments[0]
    assert isinstance(hotel, HotelSegment)
    assert (hotel.time_zone_id, hotel.start_city, hotel.start_country) == ("Pacific", "Seattle", "US")


def test_2015_trip_details_and_cancelled_trips() -> None:
    old = trip("hist-2015_triplink_get-trip-details_response.xml")
    assert (old.trip_id, old.is_personal, old.description, old.cancel_comments) == (
        "CNQR1234567890",
        False,
        None,
        None,
    )
    assert old.date_modified_utc == "2012-07-24T19:15:52"  # sent twice, same value
    assert "DateModifiedUtc" not in old.extra
    assert [b.booking_owner for b in old.bookings] == ["ConcurTravel", "ConcurTravel"]
    for name in ("cancel-trip_response.xml", "hist-2015_triplink_cancel-trip_response.xml"):
        cancelled = trip(name)
        assert [len(b.segments) for b in cancelled.bookings] == [0, 0]
        assert [b.passengers[0].name_last for b in cancelled.bookings] == ["Miller", "Miller"]


def test_repaired_truncated_examples_parse() -> None:
    request = trip("tmc-guide_update-itinerary_request_truncated.fixed.xml")
    assert (request.name, request.bookings) == ("Trip from Milan to Rome UPDATED", [])
    assert request.extra == {"RuleViolations": "", "ExternalLinks": "", "FormsOfId": ""}
    response = trip("tmc-guide_update-itinerary_response_truncated.fixed.xml")
    assert response.trip_id == "gWu9dRi$pEjxZlYNx0hlIfOeylb7xUY4Q96nbtow"


def test_records_serialise_with_orjson() -> None:
    result = trip("tmc-guide_get-trip-details_response.xml")
    data = orjson.loads(orjson.dumps(result))
    assert data["bookings"][1]["segments"][1]["kind"] == "Air"
    assert data["bookings"][1]["segments"][1]["number"] == "2013"
    assert data["bookings"][1]["segments"][3]["charges"][0]["kind"] == "RateWithAllowance"


# --- segment kinds the corpus has no example of -----------------------------------------------------


def test_segment_kinds_without_corpus_examples() -> None:
    data = (FIXTURES / "trips" / "segments_without_corpus_examples.xml").read_bytes()
    result = parse_trip(data)
    assert_nothing_lost(data, result)
    [booking] = result.bookings
    assert (booking.record_locator, booking.passenger_count) == ("GRND42", 2)
    [passenger] = booking.passengers
    assert (passenger.name_first, passenger.name_middle, passenger.name_last) == ("Chris", "J", "Miller")
    assert [(p.kind, p.program_vendor, p.number, p.status) for p in passenger.programs] == [
        ("RailProgram", "2C", "RP778899", "Grand Voyageur"),
        ("FrequentFlyer", "AF", "FB123456", None),
    ]
    assert passenger.programs[1].airline_vendor == "AF"
    rail, dining, ride, parking, event, travel = booking.segments

    assert isinstance(rail, RailSegment)
    assert (rail.kind, rail.train_number, rail.vendor_name, rail.cabin, rail.class_of_service) == (
        "Rail",
        "6604",
        "SNCF",
        "First",
        "1",
    )
    assert (rail.start_rail_station, rail.end_rail_station) == ("FRLPD", "FRPLY")
    assert (rail.start_rail_station_name, rail.end_rail_station_name) == (
        "Lyon Part-Dieu",
        "Paris Gare de Lyon",
    )
    assert (rail.e_ticket, rail.num_stops, rail.train_type_name, rail.duration) == (
        True,
        0,
        "TGV INOUI",
        "115",
    )
    [seat] = rail.seats
    assert (seat.seat_number, seat.passenger_rph) == ("61", 1)
    assert seat.extra == {"WagonNumber": "14", "SeatPosition": "Window"}

    assert isinstance(dining, DiningSegment)
    assert (dining.name, dining.restaurant_id, dining.reservation_id, dining.num_persons) == (
        "Le Train Bleu",
        "R-1901",
        "RES-88",
        4,
    )
    assert (dining.start_address, dining.start_city, dining.start_postal_code, dining.phone_number) == (
        "Place Louis-Armand",
        "Paris",
        "75012",
        "+33 1 43 43 09 06",
    )

    assert isinstance(ride, RideSegment)
    assert (ride.start_location, ride.start_location_name, ride.end_location_name) == (
        "FRPLY",
        "Paris Gare de Lyon, Hall 1",
        "La Defense, Tour First",
    )
    assert (ride.end_address, ride.end_city, ride.pickup_instructions) == (
        "1 Place des Saisons",
        "Courbevoie",
        "Taxi rank, exit 3",
    )
    assert (ride.duration, ride.miles, ride.rate, ride.rate_type) == ("30", "7", "45.5000", "Flat")

    assert isinstance(parking, ParkingSegment)
    assert (parking.name, parking.parking_location_id, parking.start_location) == (
        "Indigo Gare de Lyon",
        "IND-GDL-2",
        "Level -2",
    )
    [rate] = parking.charges
    assert (rate.kind, rate.amount, rate.num_units, rate.semantics_vendor_type) == (
        "Rate",
        "31.0000",
        "2.0000",
        "P",
    )

    assert isinstance(event, EventSegment)
    assert (event.name, event.event_type, event.segment_locator, event.total_rate) == (
        "Travel Tech Summit",
        "Conference",
        "SL-42",
        "350.0000",
    )

    assert isinstance(travel, TravelSegment)
    assert (travel.transport_mode, travel.start_location, travel.end_location) == (
        "Ferry",
        "Port de la Bourdonnais",
        "Port de Bercy",
    )
    assert [s.confirmation_number for s in booking.segments] == [
        "QWERTY",
        "DIN-2071",
        "RIDE-5150",
        "PK-300",
        "EVT-9",
        "FERRY-77",
    ]
    for segment in booking.segments:
        assert (segment.status, segment.extra) == ("HK", {})  # every element written is a declared field


# --- nothing is lost ---------------------------------------------------------------------------------


def minimal(segment: str = "<Air><Vendor>AZ</Vendor></Air>", trip_fields: str = "", ns: str = NS) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    return (
        f"<Itinerary{xmlns}><TripName>T</TripName>{trip_fields}"
        f"<Bookings><Booking><RecordLocator>R1</RecordLocator><Segments>{segment}</Segments></Booking></Bookings>"
        "</Itinerary>"
    ).encode()


def test_unknown_elements_land_in_extra() -> None:
    data = corpus("get-trip-details_response.xml")
    data = data.replace(b"<TripName>", b"<NewConcurField>x</NewConcurField><TripName>", 1)
    data = data.replace(
        b"<Class>E</Class>", b"<Class>E</Class><NewConcurField><Deep a='1'>y</Deep></NewConcurField>"
    )
    result = parse_trip(data)
    assert result.extra == {"NewConcurField": "x"}
    car = result.bookings[0].segments[0]
    assert car.extra == {"NewConcurField": {"Deep": {"@a": "1", "#text": "y"}}}
    assert result.name == "Trip from Dallas to Seattle"


def test_unknown_segment_kind_is_kept() -> None:
    cruise = (
        "<Cruise><Vendor>RC</Vendor><ConfirmationNumber>CR-1</ConfirmationNumber>"
        "<StartDateLocal>2022-05-01T17:00:00</StartDateLocal><ShipName>Serenade</ShipName></Cruise>"
    )
    [segment] = parse_trip(minimal(cruise)).bookings[0].segments
    assert isinstance(segment, UnknownSegment)
    assert (segment.kind, segment.vendor, segment.confirmation_number, segment.start_date_local) == (
        "Cruise",
        "RC",
        "CR-1",
        "2022-05-01T17:00:00",
    )
    assert segment.extra == {"ShipName": "Serenade"}


def test_unknown_charge_kind_and_stray_items_are_kept() -> None:
    segment = (
        "<Air><Charges><Discount><Amount>-5.00</Amount></Discount></Charges>"
        "<Seats><AirSeat><SeatNumber>12A</SeatNumber></AirSeat><Upgrade>W</Upgrade></Seats></Air>"
    )
    [air] = parse_trip(minimal(segment)).bookings[0].segments
    assert [(c.kind, c.amount) for c in air.charges] == [("Discount", "-5.00")]
    assert [s.seat_number for s in air.seats] == ["12A"]
    assert air.extra == {"Seats": {"Upgrade": "W"}}  # not mistaken for a seat


def test_values_that_do_not_parse_are_kept_in_extra() -> None:
    segment = (
        "<Air><NumStops>one</NumStops><ETicket>maybe</ETicket><NumPersons>two dozen</NumPersons>"
        "<Vendor>AZ</Vendor><Vendor>LH</Vendor><Cabin><Code>Y</Code></Cabin></Air>"
    )
    [air] = parse_trip(minimal(segment)).bookings[0].segments
    assert isinstance(air, AirSegment)
    assert (air.num_stops, air.e_ticket, air.num_persons, air.vendor, air.cabin) == (
        None,
        None,
        None,
        "AZ",
        "Y",
    )
    assert air.extra == {
        "NumStops": "one",
        "ETicket": "maybe",
        "NumPersons": "two dozen",
        "Vendor": "LH",  # a second, different Vendor
        "Cabin": {"Code": "Y"},  # a text field that came with structure
    }


def test_card_numbers_are_masked_in_extra() -> None:
    data = minimal("<Air><Vendor>AZ</Vendor><VirtualCreditCard>4111 1111 1111 1111</VirtualCreditCard></Air>")
    [air] = parse_trip(data).bookings[0].segments
    assert air.extra == {"VirtualCreditCard": "****1111"}


def test_card_numbers_are_masked_in_typed_fields_where_agents_put_them() -> None:
    segment = "<Air><Vendor>AZ</Vendor><Notes>cc 5500-0000-0000-0004 exp 12/30</Notes></Air>"
    data = minimal(segment, trip_fields="<Comments>guarantee 4111 1111 1111 1111</Comments>")
    data = data.replace(
        b"<RecordLocator>", b"<FormOfPaymentName>VI 4111111111111111</FormOfPaymentName><RecordLocator>"
    )
    result = parse_trip(data)
    assert result.comments == "guarantee ****1111"
    assert result.bookings[0].form_of_payment_name == "VI ****1111"
    [air] = result.bookings[0].segments
    assert air.notes == "cc ****0004 exp 12/30"


def test_numbers_that_are_no_card_numbers_arrive_as_sent() -> None:
    segment = (
        "<Air><Vendor>AZ</Vendor><ConfirmationNumber>6001234567890123</ConfirmationNumber>"
        "<PhoneNumber>+44 20 7946 0958 123</PhoneNumber>"
        "<MasterTicketNumber>0167423874521</MasterTicketNumber></Air>"
    )
    [air] = parse_trip(minimal(segment)).bookings[0].segments
    assert air.confirmation_number == "6001234567890123"  # a 16-digit number, but not Luhn-valid
    assert air.phone_number == "+44 20 7946 0958 123"
    assert air.extra == {"MasterTicketNumber": "0167423874521"}  # a 13-digit IATA ticket number


TRIP_TEXT_FIELDS = [
    "TripName",
    "Description",
    "Comments",
    "CancelComments",
    "BookedByFirstName",
    "ProjectName",
]
SEGMENT_TEXT_FIELDS = ["Notes", "ConfirmationNumber", "StartAddress", "PhoneNumber", "Cabin", "NewField"]


@given(
    card=spelled_card_numbers(),
    before=surrounding,
    after=surrounding,
    trip_field=st.sampled_from(TRIP_TEXT_FIELDS),
    segment_field=st.sampled_from(SEGMENT_TEXT_FIELDS),
    as_attribute=st.booleans(),
)
def test_a_card_number_in_any_text_field_never_reaches_the_record(
    card: tuple[str, str], before: str, after: str, trip_field: str, segment_field: str, as_attribute: bool
) -> None:
    digits, written = card
    value = escape(f"{before}{written}{after}", {'"': "&quot;"})
    segment = (
        f'<Air Remark="{value}"><Vendor>AZ</Vendor></Air>'
        if as_attribute
        else f"<Air><Vendor>AZ</Vendor><{segment_field}>{value}</{segment_field}></Air>"
    )
    result = parse_trip(minimal(segment, trip_fields=f"<{trip_field}>{value}</{trip_field}>"))
    out = orjson.dumps(result).decode()
    assert digits not in out.replace(" ", "").replace("-", "")
    assert out.count("****" + digits[-4:]) == 2


@given(run=non_card_runs(), field_name=st.sampled_from(TRIP_TEXT_FIELDS + SEGMENT_TEXT_FIELDS))
def test_a_digit_run_that_is_no_card_number_reaches_the_record_unchanged(run: str, field_name: str) -> None:
    segment = f"<Air><Vendor>AZ</Vendor><{field_name}>ref {run}.</{field_name}></Air>"
    result = parse_trip(minimal(segment, trip_fields=f"<{field_name}>ref {run}.</{field_name}>"))
    assert orjson.dumps(result).decode().count(f"ref {run}.") == 2


# --- namespaces, case, refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("ns", [NS, NS.replace("http:", "https:"), "", "urn:something-else"])
def test_any_namespace_reads_the_same(ns: str) -> None:
    result = parse_trip(minimal(ns=ns))
    assert (result.name, result.bookings[0].record_locator) == ("T", "R1")
    assert isinstance(result.bookings[0].segments[0], AirSegment)


def test_prefixed_namespace_and_any_case() -> None:
    data = (
        b"<t:itinerary xmlns:t='" + NS.encode() + b"'><t:TRIPNAME>T</t:TRIPNAME><t:bookings><t:booking>"
        b"<t:segments><t:AIR><t:flightnumber>12</t:flightnumber></t:AIR></t:segments>"
        b"</t:booking></t:bookings></t:itinerary>"
    )
    result = parse_trip(data)
    [air] = result.bookings[0].segments
    assert (result.name, air.kind, air.number) == ("T", "Air", "12")


def test_records_are_frozen() -> None:
    result = parse_trip(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.name = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_body"),
        (b"   \n", "empty_body"),
        (b"\x00\xff garbage \x89PNG", "malformed_xml"),
        (b"not xml at all", "malformed_xml"),
        (b"<Itinerary><TripName>T</Itinerary>", "malformed_xml"),
        (b"<Trip/>", "unexpected_document"),
        (b'<ProfileResponse xmlns="' + NS.encode() + b'"/>', "unexpected_document"),
        (b"<?xml version='1.0' encoding='x-unknown'?><Itinerary/>", "malformed_xml"),
        (b'<!DOCTYPE Itinerary SYSTEM "http://127.0.0.1:9/x.dtd"><Itinerary/>', "dtd_forbidden"),
        (
            b'<!DOCTYPE i [<!ENTITY x SYSTEM "file:///etc/passwd">]><Itinerary><TripName>&x;</TripName></Itinerary>',
            "dtd_forbidden",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b"<Itinerary><TripName>&lol2;</TripName></Itinerary>",
            "dtd_forbidden",
        ),
    ],
)
def test_unreadable_documents_are_refused(data: bytes, code: str) -> None:
    assert refusal(data) == code


# --- properties ------------------------------------------------------------------------------------------


@given(st.binary(max_size=512))
def test_any_bytes_give_a_trip_or_a_clean_refusal(data: bytes) -> None:
    try:
        result = parse_trip(data)
    except InvalidDocument as exc:
        assert exc.code
    else:
        assert isinstance(result, Trip)


NAMES = [
    *("TripName", "id", "Bookings", "Booking", "Segments", "Air", "Car", "Rail", "Cruise", "Charges"),
    *("Fixed", "Seats", "AirSeat", "RailSeat", "Passengers", "Passenger", "FrequentTravelerPrograms"),
    *("FrequentFlyer", "NumStops", "IsPrimary", "PassengerCount", "Vendor", "FlightNumber", "Amount"),
    *("NewConcurField", "tripname", "SEGMENTS", "booking"),
]
TEXT = st.one_of(
    st.sampled_from(["", " ", "1", "007", "-3", "true", "Y", "maybe", "1_0", "AZ", "HK", "12.50"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn")), max_size=8),
).filter(lambda t: scrub_card_numbers(t) == t)  # card numbers are masked in extra, on purpose
Node = tuple[str, str, list["Node"]]
NODES: st.SearchStrategy[Node] = st.recursive(
    st.tuples(st.sampled_from(NAMES), TEXT, st.just([])),
    lambda children: st.tuples(st.sampled_from(NAMES), TEXT, st.lists(children, max_size=4)),
    max_leaves=30,
)


def build(name: str, text: str, children: list[Node]) -> etree._Element:
    element = etree.Element(f"{{{NS}}}{name}")
    element.text = text
    element.extend(build(*child) for child in children)
    return element


@settings(max_examples=200, deadline=None)
@given(st.lists(NODES, max_size=6), TEXT)
def test_any_itinerary_parses_serialises_and_loses_no_value(children: list[Node], text: str) -> None:
    data = etree.tostring(build("Itinerary", text, children))
    result = parse_trip(data)
    assert_nothing_lost(data, result)
