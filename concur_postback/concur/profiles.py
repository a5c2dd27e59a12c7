"""Concur Travel Profile documents (v1 and v2 `<ProfileResponse>`) as typed, frozen records.

The worker fetches a profile after a `type=Profile` postback and hands the record to the sinks, so the
record must carry everything Concur sent: each record keeps what it does not model in ``extra``.
v1 and v2 differ (v1 addresses have `Line1`/`ZipCode`, v2 `Street`/`PostalCode`; v1 custom fields
have `Name`/`Value` children, v2 a `Name` attribute; v2 adds identity documents, TSA data, roles and
unused tickets), so the records hold the union and ``version`` says which shape was seen.

Values are stripped text exactly as Concur sent them (dates stay strings, `2022-10- 14` included);
booleans go through `to_bool`. Nothing card-shaped leaves in full (see `ProfileFields`), and the
`Password` of a create request is dropped rather than passed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from concur_postback.concur.documents import JSON, parse
from concur_postback.concur.profile_preferences import (
    AdvantageMembership,
    AirPreferences,
    CarPreferences,
    DiscountCode,
    HotelPreferences,
    ProfileFields,
    RailPreferences,
    RatePreferences,
    TsaInfo,
    UnusedTicket,
    advantage_membership,
    air,
    car,
    discount_code,
    hotel,
    rail,
    rate_preferences,
    tsa_info,
    unused_ticket,
)
from concur_postback.concur.xml import local_name

Version = Literal["v1", "v2"]

# Top-level elements only the v2 model has; any of them (or a LoginId attribute) marks a v2 document.
_V2_SECTIONS = (
    "EmergencyContact NationalIDs HasNoPassport Passports Visas Rail Roles Sponsors TSAInfo UnusedTickets"
    " SouthwestUnusedTickets AdvantageMemberships"
)
_V2_ONLY = frozenset(name.lower() for name in _V2_SECTIONS.split())


@dataclass(frozen=True)
class General:
    name_prefix: str | None
    first_name: str | None
    middle_name: str | None
    last_name: str | None
    name_suffix: str | None
    preferred_name: str | None
    job_title: str | None
    cost_center: str | None
    company_employee_id: str | None
    division: str | None
    preferred_language: str | None  # the locale, e.g. en-US
    e_receipt_opt_in: bool | None
    marketing_opt_in: bool | None
    has_open_booking: bool | None
    country_code: str | None
    company_name: str | None
    company_id: str | None
    rule_class: str | None
    travel_config_id: str | None
    medical_alerts: str | None
    agency_number: str | None
    search_id: str | None
    gds_profile_name: str | None
    sabre_profile_id: str | None
    uuid: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Phone:
    type: str | None  # Work, Home, Cell, Fax, Pager, Other, ...
    country_code: str | None
    number: str | None
    extension: str | None
    contact_opt_in: bool | None  # a child element in v1, an attribute in v2
    primary_mobile: bool | None
    mobile_device: str | None
    mobile_name: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """A v1 (`Line1..3`, `ZipCode`) or v2 (`Street`, `PostalCode`) address; also the emergency contact's."""

    type: str | None
    street: str | None
    line1: str | None
    line2: str | None
    line3: str | None
    attention_line: str | None
    mail_stop: str | None
    city: str | None
    state_province: str | None
    country_code: str | None
    postal_code: str | None  # v2 PostalCode, v1 ZipCode
    latitude: str | None
    longitude: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Email:
    address: str | None
    type: str | None
    contact: bool | None  # used for travel notifications
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class EmergencyPhone:
    type: str | None  # DayTime, Alternate
    number: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class EmergencyContact:
    name: str | None
    relationship: str | None
    phones: list[EmergencyPhone]
    address: Address | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class DriversLicense:
    number: str | None
    issuing_country: str | None
    issuing_state: str | None
    expiration: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Passport:
    number: str | None
    nationality: str | None
    expiration: str | None
    date_issued: str | None
    city_issued: str | None
    country_issued: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Visa:
    number: str | None
    nationality: str | None
    type: str | None
    date_issued: str | None
    expiration: str | None
    city_issued: str | None
    country_issued: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class NationalId:
    number: str | None
    issuing_country: str | None
    expiration: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomField:
    name: str | None  # v1 `Name` child, v2 `Name` attribute
    value: str | None  # v1 `Value` child, v2 the element's text
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Role:
    """A travel arranger or manager of the traveller (v2 `Roles`)."""

    type: str | None  # `Type` attribute (Arranger, Manager), else the element's own name
    primary: bool | None  # PrimaryIndicatorFlag
    login_id: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    login_id: str | None  # what the worker keys on; v1 documents carry only `Unique`
    version: Version | None  # which shape was recognised; None when the document is too bare to tell
    status: str | None  # Active, Inactive
    action: str | None  # Create, Update on request bodies
    unique_id: str | None  # v1 `Unique`
    general: General | None
    emergency_contact: EmergencyContact | None
    phones: list[Phone]
    addresses: list[Address]
    emails: list[Email]
    drivers_licenses: list[DriversLicense]
    has_no_passport: bool | None
    passports: list[Passport]
    visas: list[Visa]
    national_ids: list[NationalId]
    rate_preferences: RatePreferences | None
    discount_codes: list[DiscountCode]
    air: AirPreferences | None
    rail: RailPreferences | None
    car: CarPreferences | None
    hotel: HotelPreferences | None
    custom_fields: list[CustomField]
    tsa_info: TsaInfo | None
    unused_tickets: list[UnusedTicket]
    roles: list[Role]
    advantage_memberships: list[AdvantageMembership]
    extra: dict[str, JSON] = field(default_factory=dict)  # Sponsors, SouthwestUnusedTickets, new fields


def parse_profile(data: bytes) -> Profile:
    """Read a fetched travel profile; InvalidDocument if it is malformed or not a `<ProfileResponse>`."""
    root = parse(data, "ProfileResponse")
    f = ProfileFields(root)
    f.all("Password")  # a create request's credential: consumed so it never reaches extra
    return Profile(
        login_id=f.value("LoginId"),
        version=_version(root),
        status=f.attr("Status"),
        action=f.attr("Action"),
        unique_id=f.attr("Unique"),
        general=f.section("General", _general),
        emergency_contact=f.section("EmergencyContact", _emergency_contact),
        phones=f.items("Telephones", _phone, "Telephone"),
        addresses=f.items("Addresses", _address, "Address"),
        emails=f.items("EmailAddresses", _email, "EmailAddress"),
        drivers_licenses=f.items("DriversLicenses", _drivers_license, "DriversLicense"),
        has_no_passport=f.flag("HasNoPassport"),
        passports=f.items("Passports", _passport, "Passport"),
        visas=f.items("Visas", _visa, "Visa"),
        national_ids=f.items("NationalIDs", _national_id, "NationalID"),
        rate_preferences=f.section("RatePreferences", rate_preferences),
        discount_codes=f.items("DiscountCodes", discount_code, "DiscountCode"),
        air=f.section("Air", air),
        rail=f.section("Rail", rail),
        car=f.section("Car", car),
        hotel=f.section("Hotel", hotel),
        custom_fields=f.items("CustomFields", _custom_field, "CustomField"),
        tsa_info=f.section("TSAInfo", tsa_info),
        unused_tickets=f.items("UnusedTickets", unused_ticket, "UnusedTicket"),
        roles=f.items("Roles", _role) + f.items("TravelArrangers", _role),
        advantage_memberships=f.items("AdvantageMemberships", advantage_membership, "AdvantageMembership"),
        extra=f.rest(),
    )


def _version(root: etree._Element) -> Version | None:
    """A hint, not a validation: v2 is marked by a LoginId attribute or a v2-only section, v1 by `Unique`."""
    attributes = {str(key).rpartition("}")[2].lower() for key in root.attrib}
    sections = {local_name(child).lower() for child in root.iterchildren(etree.Element)}
    if "loginid" in attributes or sections & _V2_ONLY:
        return "v2"
    return "v1" if "unique" in attributes else None


def _general(f: ProfileFields) -> General:
    return General(
        name_prefix=f.text("NamePrefix"),
        first_name=f.text("FirstName"),
        middle_name=f.text("MiddleName"),
        last_name=f.text("LastName"),
        name_suffix=f.text("NameSuffix"),
        preferred_name=f.text("PreferredName"),
        job_title=f.text("JobTitle"),
        cost_center=f.text("CostCenter"),
        company_employee_id=f.text("CompanyEmployeeID"),
        division=f.text("Division"),
        preferred_language=f.text("PreferredLanguage"),
        e_receipt_opt_in=f.flag("EReceiptOptIn"),
        marketing_opt_in=f.flag("MarketingOptIn"),
        has_open_booking=f.flag("HasOpenBooking"),
        country_code=f.text("CountryCode"),
        company_name=f.text("CompanyName"),
        company_id=f.text("CompanyID"),
        rule_class=f.text("RuleClass"),
        travel_config_id=f.text("TravelConfigID"),
        medical_alerts=f.text("MedicalAlerts"),
        agency_number=f.text("AgencyNumber"),
        search_id=f.text("SearchID"),
        gds_profile_name=f.text("GDSProfileName"),
        sabre_profile_id=f.text("SabreProfileId"),
        uuid=f.text("UUID"),
        extra=f.rest(),
    )


def _phone(f: ProfileFields) -> Phone:
    return Phone(
        type=f.attr("Type"),
        country_code=f.text("CountryCode"),
        number=f.text("PhoneNumber"),
        extension=f.text("Extension"),
        contact_opt_in=f.flag("ContactOptIn"),
        primary_mobile=f.flag("PrimaryMobile"),
        mobile_device=f.text("MobileDevice"),
        mobile_name=f.text("MobileName"),
        extra=f.rest(),
    )


def _address(f: ProfileFields) -> Address:
    return Address(
        type=f.attr("Type"),
        street=f.text("Street"),
        line1=f.text("Line1"),
        line2=f.text("Line2"),
        line3=f.text("Line3"),
        attention_line=f.text("AttentionLine"),
        mail_stop=f.text("MailStop"),
        city=f.text("City"),
        state_province=f.text("StateProvince"),
        country_code=f.text("CountryCode"),
        postal_code=f.text("PostalCode", "ZipCode"),
        latitude=f.text("Latitude", "Laditude"),  # the v1 data model's misspelling
        longitude=f.text("Longitude"),
        extra=f.rest(),
    )


def _email(f: ProfileFields) -> Email:
    return Email(address=f.own_text(), type=f.attr("Type"), contact=f.flag("Contact"), extra=f.rest())


def _emergency_phone(f: ProfileFields) -> EmergencyPhone:
    # The docs show the number as the element's text; the schema table names a PhoneNumber field.
    number = f.text("PhoneNumber") or f.own_text()
    return EmergencyPhone(type=f.attr("Type"), number=number, extra=f.rest())


def _emergency_contact(f: ProfileFields) -> EmergencyContact:
    return EmergencyContact(
        name=f.text("Name"),
        relationship=f.text("Relationship"),
        phones=f.items("Phones", _emergency_phone, "Phone"),
        address=f.section("Address", _address),
        extra=f.rest(),
    )


def _drivers_license(f: ProfileFields) -> DriversLicense:
    return DriversLicense(
        number=f.text("DriversLicenseNumber"),
        issuing_country=f.text("IssuingCountry"),
        issuing_state=f.text("IssuingState"),
        expiration=f.text("Expiration"),
        extra=f.rest(),
    )


def _passport(f: ProfileFields) -> Passport:
    return Passport(
        number=f.text("PassportNumber"),
        nationality=f.text("PassportNationality"),
        expiration=f.text("PassportExpiration"),
        date_issued=f.text("PassportDateIssued"),
        city_issued=f.text("PassportCityIssued"),
        country_issued=f.text("PassportCountryIssued"),
        extra=f.rest(),
    )


def _visa(f: ProfileFields) -> Visa:
    return Visa(
        number=f.text("VisaNumber"),
        nationality=f.text("VisaNationality"),
        type=f.text("VisaType"),
        date_issued=f.text("VisaDateIssued"),
        expiration=f.text("VisaExpiration"),
        city_issued=f.text("VisaCityIssued"),
        country_issued=f.text("VisaCountryIssued"),
        extra=f.rest(),
    )


def _national_id(f: ProfileFields) -> NationalId:
    return NationalId(
        number=f.text("NationalIDNumber"),
        issuing_country=f.text("IssuingCountry"),
        expiration=f.text("Expiration"),
        extra=f.rest(),
    )


def _custom_field(f: ProfileFields) -> CustomField:
    value = f.text("Value") if f.one("Value") is not None else f.own_text()
    return CustomField(name=f.value("Name"), value=value, extra=f.rest())


def _role(f: ProfileFields) -> Role:
    return Role(
        type=f.attr("Type") or local_name(f.element),
        primary=f.flag("PrimaryIndicatorFlag"),
        login_id=f.value("LoginId"),
        first_name=f.text("FirstName"),
        last_name=f.text("LastName"),
        email=f.text("EmailAddress", "Email"),
        extra=f.rest(),
    )
