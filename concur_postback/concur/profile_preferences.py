"""The travel side of a Concur travel profile: rates, discount codes, air/rail/car/hotel preferences
with their loyalty memberships, TSA Secure Flight data and unused tickets.

Split from `profiles` only to keep each module readable; `parse_profile` there is the entry point.
Loyalty numbers (``AccountNo`` here) are not card numbers: they arrive as sent unless they are one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concur_postback.concur.reader import JSON, flag, own_text, records, text


@dataclass(frozen=True, kw_only=True)
class RatePreferences:
    aaa: bool | None = flag("AAARate")
    aarp: bool | None = flag("AARPRate")
    government: bool | None = flag("GovtRate")
    military: bool | None = flag("MilitaryRate")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class DiscountCode:
    vendor: str | None = text("Vendor", "Type")  # `Vendor` attribute; the 2015 data model called it `Type`
    code: str | None = own_text()
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Membership:
    """A loyalty programme membership (air, rail, car or hotel); every value is text as Concur sent it."""

    vendor_code: str | None = text("VendorCode")
    account_no: str | None = text("AccountNo")
    status: str | None = text("Status")
    status_benefits: str | None = text("StatusBenefits")
    point_total: str | None = text("PointTotal")
    segment_total: str | None = text("SegmentTotal")
    next_status: str | None = text("NextStatus")
    points_until_next_status: str | None = text("PointsUntilNextStatus")
    segments_until_next_status: str | None = text("SegmentsUntilNextStatus")
    expiration: str | None = text("Expiration")
    extra: dict[str, JSON] = field(default_factory=dict)  # IsSenator, BahnCardClass, ...


@dataclass(frozen=True, kw_only=True)
class AdvantageMembership:
    """A v2 `AdvantageMemberships` entry: rail/air discount cards and similar programmes."""

    vendor_code: str | None = text("VendorCode")
    vendor_type: str | None = text("VendorType")
    program_code: str | None = text("ProgramCode")
    program_name: str | None = text("ProgramName")
    program_number: str | None = text("ProgramNumber")
    origin_code: str | None = text("OriginCode", "OriginStationCode")
    destination_code: str | None = text("DestinationCode", "DestinationStationCode")
    expiration_date: str | None = text("ExpirationDate")
    option_code: str | None = text("OptionCode")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AirPreferences:
    smoking_code: str | None = text("AirSmokingCode")
    inter_row_position: str | None = text("Seat/InterRowPositionCode")  # Seat/InterRowPositionCode
    section_position: str | None = text("Seat/SectionPositionCode")  # Seat/SectionPositionCode
    meal_code: str | None = text("Meals/MealCode")  # Meals/MealCode
    home_airport: str | None = text("HomeAirport")
    other: str | None = text("AirOther")
    redress_number: str | None = text("DHSRedressNumber")  # v1 DHSRedressNumber; v2 moved it to TSAInfo
    known_traveler_number: str | None = text("DHSKnownTravelerNumber")  # v1 DHSKnownTravelerNumber
    memberships: list[Membership] = records(Membership, "AirMemberships", "AirMembership")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RailPreferences:
    seat: str | None = text("Seat")
    coach: str | None = text("Coach")
    noise_comfort: str | None = text("NoiseComfort")
    bed: str | None = text("Bed")
    bed_category: str | None = text("BedCategory")
    berth: str | None = text("Berth")
    deck: str | None = text("Deck")
    space_type: str | None = text("SpaceType")
    fare_space_comfort: str | None = text("FareSpaceComfort")
    special_meals: str | None = text("SpecialMeals")
    contingencies: str | None = text("Contingencies")
    memberships: list[Membership] = records(Membership, "RailMemberships", "RailMembership")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CarPreferences:
    smoking_code: str | None = text("CarSmokingCode")
    gps: bool | None = flag("CarGPS")
    car_type: str | None = text("CarType")
    option: str | None = text("CarOption")  # v1 CarOption
    other: str | None = text("CarOther")
    ski_rack: bool | None = flag("CarSkiRack")
    transmission: str | None = text("CarTransmission")
    memberships: list[Membership] = records(Membership, "CarMemberships", "CarMembership")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HotelPreferences:
    smoking_code: str | None = text("SmokingCode", "HotelSmokingCode")  # v1 / v2 names
    room_type: str | None = text("RoomType")
    other: str | None = text("HotelOther")
    prefer_foam_pillows: bool | None = flag("PreferFoamPillows")
    prefer_crib: bool | None = flag("PreferCrib")
    prefer_rollaway_bed: bool | None = flag("PreferRollawayBed")
    prefer_gym: bool | None = flag("PreferGym")
    prefer_pool: bool | None = flag("PreferPool")
    prefer_restaurant: bool | None = flag("PreferRestaurant", "PreferRestaraunt")  # Concur's own misspelling
    prefer_wheelchair_access: bool | None = flag("PreferWheelchairAccess")
    prefer_access_for_blind: bool | None = flag("PreferAccessForBlind")
    prefer_room_service: bool | None = flag("PreferRoomService")
    prefer_early_check_in: bool | None = flag("PreferEarlyCheckIn")
    memberships: list[Membership] = records(Membership, "HotelMemberships", "HotelMembership")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TsaInfo:
    """TSA Secure Flight data (v2 `TSAInfo`); v1 kept the DHS numbers under `Air`."""

    gender: str | None = text("Gender")
    date_of_birth: str | None = text("DateOfBirth")
    no_middle_name: bool | None = flag("NoMiddleName")
    known_traveler_number: str | None = text(
        "PreCheckNumber", "KnownTravelerNumber"
    )  # Concur calls it PreCheckNumber
    redress_number: str | None = text("RedressNumber")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UnusedTicket:
    carrier: str | None = text("Carrier")
    ticket_number: str | None = text("TicketNumber")
    record_locator: str | None = text("RecordLocator")
    base_fare: str | None = text("BaseFare")
    taxes: str | None = text("Taxes")
    fees: str | None = text("Fees")
    currency: str | None = text("Currency")
    ticket_type: str | None = text("TicketType")
    issue_date: str | None = text("IssueDate")
    expiration_date: str | None = text("ExpirationDate")
    notes: str | None = text("Notes")
    extra: dict[str, JSON] = field(default_factory=dict)
