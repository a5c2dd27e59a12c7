"""The travel side of a Concur travel profile, and the reader both profile modules share.

Rates, discount codes, air/rail/car/hotel preferences with their loyalty memberships, TSA Secure Flight
data and unused tickets. Split from `profiles` only to keep each module readable; `parse_profile`
there is the entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from lxml import etree

from concur_postback.concur.documents import (
    JSON,
    Fields,
    add_value,
    element_data,
    scrub_card_numbers,
    to_bool,
)
from concur_postback.concur.xml import local_name

T = TypeVar("T")
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


class ProfileFields(Fields):
    """`Fields` that scrub every value they hand out and keep what nested elements leave unread.

    Scrubbing here rather than field by field is what makes "no card number leaves the parser in
    full" hold for the typed fields as it does for ``extra``: loyalty numbers, notes and custom fields
    are free text a traveller can paste anything into. Lists (``items``) and nested groups (``child``)
    are read through here too, so their unknown children still reach the owner's ``rest()``.
    """

    def __init__(self, element: etree._Element) -> None:
        super().__init__(element)
        self._nested: list[ProfileFields] = []
        self._spares: list[etree._Element] = []

    def text(self, *names: str) -> str | None:
        """As `Fields.text`, but what the text leaves out (a repeat of the element, attributes or child
        elements on it) is kept for ``rest``."""
        found = self.all(*names)
        self._spares.extend(e for i, e in enumerate(found) if i or _has_more_than_text(e))
        return _scrub(super().text(*names))

    def attr(self, *names: str) -> str | None:
        return _scrub(super().attr(*names))

    def value(self, *names: str) -> str | None:
        """An attribute or, failing that, a child element: v1 and v2 put some fields (ContactOptIn) in
        different places. Both are looked up so neither lands in ``extra``."""
        attribute, child = self.attr(*names), self.text(*names)
        return attribute if attribute is not None else child

    def flag(self, *names: str) -> bool | None:
        return to_bool(self.value(*names))

    def own_text(self) -> str | None:
        """The element's own text (`<EmailAddress Type="Business">a@b.c</EmailAddress>`)."""
        if next(_children(self.element), None) is None:
            text = "".join(map(str, self.element.itertext()))
        else:
            text = self.element.text or ""
        return _scrub(text.strip() or None)

    def section(self, name: str, parse: Callable[[ProfileFields], T]) -> T | None:
        """The first child called ``name`` as a record; None when absent. Repeats are kept in ``rest``."""
        found = self.all(name)
        self._spares.extend(found[1:])
        return parse(ProfileFields(found[0])) if found else None

    def child(self, name: str) -> ProfileFields:
        """A nested group read field by field (Air/Seat); an empty one when absent."""
        found = self.all(name)
        self._spares.extend(found[1:])
        nested = ProfileFields(found[0] if found else etree.Element("absent"))
        if found:
            self._nested.append(nested)
        return nested

    def items(self, container: str, parse: Callable[[ProfileFields], T], *names: str) -> list[T]:
        """The ``names`` elements inside every ``container`` (any element child when no names are
        given), then any sitting directly in this element: the v1 data model puts a `CarMembership`
        beside its `CarMemberships`. Whatever else a container holds stays in ``rest``."""
        records: list[T] = []
        for holder in self.all(container):
            inner = ProfileFields(holder)
            wanted = names or tuple(dict.fromkeys(local_name(c) for c in _children(holder)))
            records.extend(parse(ProfileFields(item)) for item in inner.all(*wanted))
            self._nested.append(inner)
        if names:
            records.extend(parse(ProfileFields(item)) for item in self.all(*names))
        return records

    def rest(self) -> dict[str, JSON]:
        """``extra()`` plus what nested groups and containers left unread, under their own names."""
        data = self.extra()
        for nested in self._nested:
            leftover = nested.rest()
            if leftover:
                add_value(data, local_name(nested.element), leftover)
        for spare in dict.fromkeys(self._spares):  # a field read twice is kept once
            add_value(data, local_name(spare), element_data(spare))
        return data


def _scrub(value: str | None) -> str | None:
    return scrub_card_numbers(value) if value else value


def _has_more_than_text(element: etree._Element) -> bool:
    """Child elements, or attributes other than schema markup (`xsi:nil`, `xsi:type`)."""
    has_attributes = any(not str(key).startswith(_XSI) for key in element.attrib)
    return has_attributes or next(_children(element), None) is not None


def _children(element: etree._Element) -> Iterator[etree._Element]:
    return element.iterchildren(etree.Element)


@dataclass(frozen=True)
class RatePreferences:
    aaa: bool | None
    aarp: bool | None
    government: bool | None
    military: bool | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class DiscountCode:
    vendor: str | None  # `Vendor` attribute; the 2015 data model called it `Type`
    code: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Membership:
    """A loyalty programme membership (air, rail, car or hotel); every value is text as Concur sent it."""

    vendor_code: str | None
    account_no: str | None
    status: str | None
    status_benefits: str | None
    point_total: str | None
    segment_total: str | None
    next_status: str | None
    points_until_next_status: str | None
    segments_until_next_status: str | None
    expiration: str | None
    extra: dict[str, JSON] = field(default_factory=dict)  # IsSenator, BahnCardClass, ...


@dataclass(frozen=True)
class AdvantageMembership:
    """A v2 `AdvantageMemberships` entry: rail/air discount cards and similar programmes."""

    vendor_code: str | None
    vendor_type: str | None
    program_code: str | None
    program_name: str | None
    program_number: str | None
    origin_code: str | None
    destination_code: str | None
    expiration_date: str | None
    option_code: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class AirPreferences:
    smoking_code: str | None
    inter_row_position: str | None  # Seat/InterRowPositionCode
    section_position: str | None  # Seat/SectionPositionCode
    meal_code: str | None  # Meals/MealCode
    home_airport: str | None
    other: str | None
    redress_number: str | None  # v1 DHSRedressNumber; v2 moved it to TSAInfo
    known_traveler_number: str | None  # v1 DHSKnownTravelerNumber
    memberships: list[Membership]
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class RailPreferences:
    seat: str | None
    coach: str | None
    noise_comfort: str | None
    bed: str | None
    bed_category: str | None
    berth: str | None
    deck: str | None
    space_type: str | None
    fare_space_comfort: str | None
    special_meals: str | None
    contingencies: str | None
    memberships: list[Membership]
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class CarPreferences:
    smoking_code: str | None
    gps: bool | None
    car_type: str | None
    option: str | None  # v1 CarOption
    other: str | None
    ski_rack: bool | None
    transmission: str | None
    memberships: list[Membership]
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class HotelPreferences:
    smoking_code: str | None
    room_type: str | None
    other: str | None
    prefer_foam_pillows: bool | None
    prefer_crib: bool | None
    prefer_rollaway_bed: bool | None
    prefer_gym: bool | None
    prefer_pool: bool | None
    prefer_restaurant: bool | None
    prefer_wheelchair_access: bool | None
    prefer_access_for_blind: bool | None
    prefer_room_service: bool | None
    prefer_early_check_in: bool | None
    memberships: list[Membership]
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class TsaInfo:
    """TSA Secure Flight data (v2 `TSAInfo`); v1 kept the DHS numbers under `Air`."""

    gender: str | None
    date_of_birth: str | None
    no_middle_name: bool | None
    known_traveler_number: str | None  # Concur calls it PreCheckNumber
    redress_number: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class UnusedTicket:
    carrier: str | None
    ticket_number: str | None
    record_locator: str | None
    base_fare: str | None
    taxes: str | None
    fees: str | None
    currency: str | None
    ticket_type: str | None
    issue_date: str | None
    expiration_date: str | None
    notes: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


def rate_preferences(f: ProfileFields) -> RatePreferences:
    return RatePreferences(
        aaa=f.flag("AAARate"),
        aarp=f.flag("AARPRate"),
        government=f.flag("GovtRate"),
        military=f.flag("MilitaryRate"),
        extra=f.rest(),
    )


def discount_code(f: ProfileFields) -> DiscountCode:
    return DiscountCode(vendor=f.attr("Vendor", "Type"), code=f.own_text(), extra=f.rest())


def membership(f: ProfileFields) -> Membership:
    return Membership(
        vendor_code=f.text("VendorCode"),
        account_no=f.text("AccountNo"),
        status=f.text("Status"),
        status_benefits=f.text("StatusBenefits"),
        point_total=f.text("PointTotal"),
        segment_total=f.text("SegmentTotal"),
        next_status=f.text("NextStatus"),
        points_until_next_status=f.text("PointsUntilNextStatus"),
        segments_until_next_status=f.text("SegmentsUntilNextStatus"),
        expiration=f.text("Expiration"),
        extra=f.rest(),
    )


def advantage_membership(f: ProfileFields) -> AdvantageMembership:
    return AdvantageMembership(
        vendor_code=f.text("VendorCode"),
        vendor_type=f.text("VendorType"),
        program_code=f.text("ProgramCode"),
        program_name=f.text("ProgramName"),
        program_number=f.text("ProgramNumber"),
        origin_code=f.text("OriginCode", "OriginStationCode"),
        destination_code=f.text("DestinationCode", "DestinationStationCode"),
        expiration_date=f.text("ExpirationDate"),
        option_code=f.text("OptionCode"),
        extra=f.rest(),
    )


def _memberships(f: ProfileFields, kind: str) -> list[Membership]:
    return f.items(f"{kind}Memberships", membership, f"{kind}Membership")


def air(f: ProfileFields) -> AirPreferences:
    seat, meals = f.child("Seat"), f.child("Meals")
    return AirPreferences(
        smoking_code=f.text("AirSmokingCode"),
        inter_row_position=seat.text("InterRowPositionCode"),
        section_position=seat.text("SectionPositionCode"),
        meal_code=meals.text("MealCode"),
        home_airport=f.text("HomeAirport"),
        other=f.text("AirOther"),
        redress_number=f.text("DHSRedressNumber"),
        known_traveler_number=f.text("DHSKnownTravelerNumber"),
        memberships=_memberships(f, "Air"),
        extra=f.rest(),
    )


def rail(f: ProfileFields) -> RailPreferences:
    return RailPreferences(
        seat=f.text("Seat"),
        coach=f.text("Coach"),
        noise_comfort=f.text("NoiseComfort"),
        bed=f.text("Bed"),
        bed_category=f.text("BedCategory"),
        berth=f.text("Berth"),
        deck=f.text("Deck"),
        space_type=f.text("SpaceType"),
        fare_space_comfort=f.text("FareSpaceComfort"),
        special_meals=f.text("SpecialMeals"),
        contingencies=f.text("Contingencies"),
        memberships=_memberships(f, "Rail"),
        extra=f.rest(),
    )


def car(f: ProfileFields) -> CarPreferences:
    return CarPreferences(
        smoking_code=f.text("CarSmokingCode"),
        gps=f.flag("CarGPS"),
        car_type=f.text("CarType"),
        option=f.text("CarOption"),
        other=f.text("CarOther"),
        ski_rack=f.flag("CarSkiRack"),
        transmission=f.text("CarTransmission"),
        memberships=_memberships(f, "Car"),
        extra=f.rest(),
    )


def hotel(f: ProfileFields) -> HotelPreferences:
    return HotelPreferences(
        smoking_code=f.text("SmokingCode", "HotelSmokingCode"),  # v1 / v2 names
        room_type=f.text("RoomType"),
        other=f.text("HotelOther"),
        prefer_foam_pillows=f.flag("PreferFoamPillows"),
        prefer_crib=f.flag("PreferCrib"),
        prefer_rollaway_bed=f.flag("PreferRollawayBed"),
        prefer_gym=f.flag("PreferGym"),
        prefer_pool=f.flag("PreferPool"),
        prefer_restaurant=f.flag("PreferRestaurant", "PreferRestaraunt"),  # Concur's own misspelling
        prefer_wheelchair_access=f.flag("PreferWheelchairAccess"),
        prefer_access_for_blind=f.flag("PreferAccessForBlind"),
        prefer_room_service=f.flag("PreferRoomService"),
        prefer_early_check_in=f.flag("PreferEarlyCheckIn"),
        memberships=_memberships(f, "Hotel"),
        extra=f.rest(),
    )


def tsa_info(f: ProfileFields) -> TsaInfo:
    return TsaInfo(
        gender=f.text("Gender"),
        date_of_birth=f.text("DateOfBirth"),
        no_middle_name=f.flag("NoMiddleName"),
        known_traveler_number=f.text("PreCheckNumber", "KnownTravelerNumber"),
        redress_number=f.text("RedressNumber"),
        extra=f.rest(),
    )


def unused_ticket(f: ProfileFields) -> UnusedTicket:
    return UnusedTicket(
        carrier=f.text("Carrier"),
        ticket_number=f.text("TicketNumber"),
        record_locator=f.text("RecordLocator"),
        base_fare=f.text("BaseFare"),
        taxes=f.text("Taxes"),
        fees=f.text("Fees"),
        currency=f.text("Currency"),
        ticket_type=f.text("TicketType"),
        issue_date=f.text("IssueDate"),
        expiration_date=f.text("ExpirationDate"),
        notes=f.text("Notes"),
        extra=f.rest(),
    )
