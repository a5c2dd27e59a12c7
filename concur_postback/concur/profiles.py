"""Concur Travel Profile documents (v1 and v2 `<ProfileResponse>`) as typed, frozen records.

The worker fetches a profile after a `type=Profile` postback and hands the record to the sinks, so the
record must carry everything Concur sent: each record keeps what it does not model in ``extra``.
v1 and v2 differ (v1 addresses have `Line1`/`ZipCode`, v2 `Street`/`PostalCode`; v1 custom fields
have `Name`/`Value` children, v2 a `Name` attribute; v2 adds identity documents, TSA data, roles and
unused tickets), so the records hold the union and ``version`` says which shape was seen.

Values are stripped text exactly as Concur sent them (dates stay strings, `2022-10- 14` included);
flags that are not booleans are kept as sent in ``extra``. Card numbers leave masked (see `reader`), and
the `Password` of a create request never leaves at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from concur_postback.concur.profile_preferences import (
    AdvantageMembership,
    AirPreferences,
    CarPreferences,
    DiscountCode,
    HotelPreferences,
    RailPreferences,
    RatePreferences,
    TsaInfo,
    UnusedTicket,
)
from concur_postback.concur.reader import JSON, flag, from_names, own_text, read, record, records, text
from concur_postback.concur.xml import parse

Version = Literal["v1", "v2"]

# Top-level elements only the v2 model has; any of them (or a LoginId attribute) marks a v2 document.
_V2_SECTIONS = (
    "EmergencyContact NationalIDs HasNoPassport Passports Visas Rail Roles Sponsors TSAInfo UnusedTickets"
    " SouthwestUnusedTickets AdvantageMemberships"
)
_V2_ONLY = frozenset(name.lower() for name in _V2_SECTIONS.split())


@dataclass(frozen=True, kw_only=True)
class General:
    name_prefix: str | None = text("NamePrefix")
    first_name: str | None = text("FirstName")
    middle_name: str | None = text("MiddleName")
    last_name: str | None = text("LastName")
    name_suffix: str | None = text("NameSuffix")
    preferred_name: str | None = text("PreferredName")
    job_title: str | None = text("JobTitle")
    cost_center: str | None = text("CostCenter")
    company_employee_id: str | None = text("CompanyEmployeeID")
    division: str | None = text("Division")
    preferred_language: str | None = text("PreferredLanguage")  # the locale, e.g. en-US
    e_receipt_opt_in: bool | None = flag("EReceiptOptIn")
    marketing_opt_in: bool | None = flag("MarketingOptIn")
    has_open_booking: bool | None = flag("HasOpenBooking")
    country_code: str | None = text("CountryCode")
    company_name: str | None = text("CompanyName")
    company_id: str | None = text("CompanyID")
    rule_class: str | None = text("RuleClass")
    travel_config_id: str | None = text("TravelConfigID")
    medical_alerts: str | None = text("MedicalAlerts")
    agency_number: str | None = text("AgencyNumber")
    search_id: str | None = text("SearchID")
    gds_profile_name: str | None = text("GDSProfileName")
    sabre_profile_id: str | None = text("SabreProfileId")
    uuid: str | None = text("UUID")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Phone:
    type: str | None = text("Type")  # Work, Home, Cell, Fax, Pager, Other, ...
    country_code: str | None = text("CountryCode")
    number: str | None = text("PhoneNumber")
    extension: str | None = text("Extension")
    contact_opt_in: bool | None = flag("ContactOptIn")  # a child element in v1, an attribute in v2
    primary_mobile: bool | None = flag("PrimaryMobile")
    mobile_device: str | None = text("MobileDevice")
    mobile_name: str | None = text("MobileName")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Address:
    """A v1 (`Line1..3`, `ZipCode`) or v2 (`Street`, `PostalCode`) address; also the emergency contact's."""

    type: str | None = text("Type")
    street: str | None = text("Street")
    line1: str | None = text("Line1")
    line2: str | None = text("Line2")
    line3: str | None = text("Line3")
    attention_line: str | None = text("AttentionLine")
    mail_stop: str | None = text("MailStop")
    city: str | None = text("City")
    state_province: str | None = text("StateProvince")
    country_code: str | None = text("CountryCode")
    postal_code: str | None = text("PostalCode", "ZipCode")  # v2 PostalCode, v1 ZipCode
    latitude: str | None = text("Latitude", "Laditude")  # the v1 data model's misspelling
    longitude: str | None = text("Longitude")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Email:
    address: str | None = own_text()
    type: str | None = text("Type")
    contact: bool | None = flag("Contact")  # used for travel notifications
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EmergencyPhone:
    type: str | None = text("Type")  # DayTime, Alternate
    # The docs show the number as the element's text; the schema table names a PhoneNumber field.
    number: str | None = text("PhoneNumber", or_own_text=True)
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EmergencyContact:
    name: str | None = text("Name")
    relationship: str | None = text("Relationship")
    phones: list[EmergencyPhone] = records(EmergencyPhone, "Phones", "Phone")
    address: Address | None = record(Address, "Address")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class DriversLicense:
    number: str | None = text("DriversLicenseNumber")
    issuing_country: str | None = text("IssuingCountry")
    issuing_state: str | None = text("IssuingState")
    expiration: str | None = text("Expiration")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Passport:
    number: str | None = text("PassportNumber")
    nationality: str | None = text("PassportNationality")
    expiration: str | None = text("PassportExpiration")
    date_issued: str | None = text("PassportDateIssued")
    city_issued: str | None = text("PassportCityIssued")
    country_issued: str | None = text("PassportCountryIssued")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Visa:
    number: str | None = text("VisaNumber")
    nationality: str | None = text("VisaNationality")
    type: str | None = text("VisaType")
    date_issued: str | None = text("VisaDateIssued")
    expiration: str | None = text("VisaExpiration")
    city_issued: str | None = text("VisaCityIssued")
    country_issued: str | None = text("VisaCountryIssued")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class NationalId:
    number: str | None = text("NationalIDNumber")
    issuing_country: str | None = text("IssuingCountry")
    expiration: str | None = text("Expiration")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CustomField:
    name: str | None = text("Name")  # v1 `Name` child, v2 `Name` attribute
    value: str | None = text("Value", or_own_text=True)  # v1 `Value` child, v2 the element's text
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Role:
    """A travel arranger or manager of the traveller (v2 `Roles`)."""

    type: str | None = text(
        "Type", or_name=True
    )  # `Type` attribute (Arranger, Manager), else the element's name
    primary: bool | None = flag("PrimaryIndicatorFlag")  # PrimaryIndicatorFlag
    login_id: str | None = text("LoginId")
    first_name: str | None = text("FirstName")
    last_name: str | None = text("LastName")
    email: str | None = text("EmailAddress", "Email")
    extra: dict[str, JSON] = field(default_factory=dict)


def _version(names: set[str]) -> Version | None:
    """A hint, not a validation: v2 is marked by a LoginId attribute or a v2-only section, v1 by `Unique`."""
    if "@loginid" in names or names & _V2_ONLY:
        return "v2"
    return "v1" if "@unique" in names else None


@dataclass(frozen=True, kw_only=True)
class Profile:
    login_id: str | None = text("LoginId")  # what the worker keys on; v1 documents carry only `Unique`
    version: Version | None = from_names(
        _version
    )  # which shape was recognised; None when the document is too bare to tell
    status: str | None = text("Status")  # Active, Inactive
    action: str | None = text("Action")  # Create, Update on request bodies
    unique_id: str | None = text("Unique")  # v1 `Unique`
    general: General | None = record(General, "General")
    emergency_contact: EmergencyContact | None = record(EmergencyContact, "EmergencyContact")
    phones: list[Phone] = records(Phone, "Telephones", "Telephone")
    addresses: list[Address] = records(Address, "Addresses", "Address")
    emails: list[Email] = records(Email, "EmailAddresses", "EmailAddress")
    drivers_licenses: list[DriversLicense] = records(DriversLicense, "DriversLicenses", "DriversLicense")
    has_no_passport: bool | None = flag("HasNoPassport")
    passports: list[Passport] = records(Passport, "Passports", "Passport")
    visas: list[Visa] = records(Visa, "Visas", "Visa")
    national_ids: list[NationalId] = records(NationalId, "NationalIDs", "NationalID")
    rate_preferences: RatePreferences | None = record(RatePreferences, "RatePreferences")
    discount_codes: list[DiscountCode] = records(DiscountCode, "DiscountCodes", "DiscountCode")
    air: AirPreferences | None = record(AirPreferences, "Air")
    rail: RailPreferences | None = record(RailPreferences, "Rail")
    car: CarPreferences | None = record(CarPreferences, "Car")
    hotel: HotelPreferences | None = record(HotelPreferences, "Hotel")
    custom_fields: list[CustomField] = records(CustomField, "CustomFields", "CustomField")
    tsa_info: TsaInfo | None = record(TsaInfo, "TSAInfo")
    unused_tickets: list[UnusedTicket] = records(UnusedTicket, "UnusedTickets", "UnusedTicket")
    roles: list[Role] = records(Role, ("Roles", "TravelArrangers"))
    advantage_memberships: list[AdvantageMembership] = records(
        AdvantageMembership, "AdvantageMemberships", "AdvantageMembership"
    )
    extra: dict[str, JSON] = field(default_factory=dict)  # Sponsors, SouthwestUnusedTickets, new fields


def parse_profile(data: bytes) -> Profile:
    """Read a fetched travel profile; InvalidDocument if it is malformed or not a `<ProfileResponse>`."""
    return read(Profile, parse(data, "ProfileResponse"))
