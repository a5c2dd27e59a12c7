from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from concur_postback.concur.profiles import Profile, parse_profile
from concur_postback.concur.redaction import scrub_card_numbers
from concur_postback.errors import InvalidDocument
from tests.cards import non_card_runs, spelled_card_numbers, surrounding
from tests.conftest import CORPUS, FIXTURES

PROFILES = CORPUS / "profiles"
SYNTHETIC = (FIXTURES / "profiles" / "v2_full_profile_response.xml").read_bytes()


def holds_no_card_number(record: object) -> bool:
    """By the redaction rule's own definition: masking the serialised record changes nothing."""
    text = orjson.dumps(record).decode()
    return scrub_card_numbers(text) == text


def originals() -> list[Path]:
    """Every corpus profile example as published (not the `.fixed.xml` repairs)."""
    return sorted(p for p in PROFILES.glob("*.xml") if not p.name.endswith(".fixed.xml"))


def repaired(path: Path) -> Path | None:
    fixed = path.with_name(path.name.removesuffix(".xml") + ".fixed.xml")
    return fixed if fixed.exists() else None


def readable(path: Path) -> bytes:
    """The document as it parses: the repaired copy where the published one is not well-formed."""
    return (repaired(path) or path).read_bytes()


def corpus_params(paths: list[Path]) -> list[object]:
    return [pytest.param(p, id=p.name) for p in paths]


def root_name(data: bytes) -> str:
    return etree.QName(etree.fromstring(data)).localname


def corpus(name: str) -> Profile:
    """A corpus document parsed (its repaired copy where the published one is not well-formed)."""
    return parse_profile(readable(PROFILES / name))


def refusal(data: bytes) -> str:
    with pytest.raises(InvalidDocument) as caught:
        parse_profile(data)
    return caught.value.code


@pytest.mark.parametrize("path", corpus_params(originals()))
def test_every_corpus_document_parses_or_is_refused_by_root(path: Path) -> None:
    data = readable(path)
    if root_name(data) != "ProfileResponse":  # summaries (ConnectResponse) and the FAQ fragment
        assert refusal(data) == "unexpected_document"
        return
    profile = parse_profile(data)
    assert profile.version in ("v1", "v2")
    assert orjson.loads(orjson.dumps(profile))["version"] == profile.version


@pytest.mark.parametrize("path", corpus_params([p for p in originals() if repaired(p)]))
def test_malformed_originals_are_refused(path: Path) -> None:
    assert refusal(path.read_bytes()) == "malformed_xml"


@pytest.mark.parametrize("path", corpus_params([p for p in originals() if "summaries" in p.name]))
def test_profile_summaries_are_refused(path: Path) -> None:
    assert root_name(path.read_bytes()) == "ConnectResponse"
    assert refusal(path.read_bytes()) == "unexpected_document"


@pytest.mark.parametrize("path", corpus_params(originals()))
def test_no_card_like_number_leaves_the_parser_for_any_corpus_profile(path: Path) -> None:
    data = readable(path)
    if root_name(data) == "ProfileResponse":
        assert holds_no_card_number(parse_profile(data))


def test_v1_supplier_response_values() -> None:
    p = corpus("v1_get-profile_supplier_response.xml")
    assert (p.version, p.login_id, p.unique_id, p.status, p.action) == (
        "v1",
        None,
        "CM12345678",
        "Active",
        None,
    )
    assert p.general is not None
    assert (p.general.first_name, p.general.middle_name, p.general.last_name) == ("Maria", "X", "Black")
    assert (p.general.job_title, p.general.preferred_language) == ("Finance Manager", "en-us")
    assert (p.general.e_receipt_opt_in, p.general.has_open_booking, p.general.name_prefix) == (
        True,
        True,
        None,
    )
    work, cell = p.phones
    assert (work.type, work.country_code, work.number, work.contact_opt_in) == (
        "Work",
        "001",
        "5555551234",
        None,
    )
    assert (cell.type, cell.number, cell.contact_opt_in) == ("Cell", "4155544321", True)  # v1: an element
    office = p.addresses[0]
    assert (office.type, office.attention_line, office.line1, office.line2) == (
        "Work",
        "Finance Department",
        "1234 Rainy Street.",
        "Suite 442",
    )
    assert (office.city, office.postal_code, office.latitude, office.street) == (
        "Seattle",
        "98102",
        "38.812690000000",
        None,
    )
    assert [(e.address, e.type, e.contact) for e in p.emails] == [("mariab@example.com", "Business", True)]
    assert p.drivers_licenses[0].number == "MIL112233452"
    assert p.drivers_licenses[0].expiration == "2018-05-22"
    assert p.rate_preferences is not None
    assert (p.rate_preferences.aaa, p.rate_preferences.aarp) == (True, False)
    assert [(d.vendor, d.code) for d in p.discount_codes] == [("Marriott", "1234567899")]
    assert p.air is not None
    (aa,) = p.air.memberships
    assert (aa.vendor_code, aa.account_no, aa.status, aa.point_total, aa.next_status) == (
        "AA",
        "K12345",
        "Normal",
        "1234",
        "Super",
    )
    assert (p.air.inter_row_position, p.air.section_position, p.air.meal_code) == ("Window", "F", "VGML")
    assert (p.air.home_airport, p.air.smoking_code, p.air.other) == ("SEA", "S", None)
    assert p.car is not None
    assert [(m.vendor_code, m.account_no, m.status) for m in p.car.memberships] == [
        ("ZE", "ABCDEF", "Newbie"),
        ("XW", "GHIJK", "Gold"),
    ]
    assert p.car.memberships[0].status_benefits == "10%  discount"  # inner spaces kept
    assert (p.car.gps, p.car.ski_rack) == (True, False)
    assert p.hotel is not None
    assert (p.hotel.smoking_code, p.hotel.room_type, p.hotel.memberships) == ("N", "K", [])
    # `PreferGym` and `preferPool`, and Concur's `preferRestaraunt`, in the same document.
    assert (p.hotel.prefer_gym, p.hotel.prefer_pool, p.hotel.prefer_restaurant) == (True, True, True)
    assert (p.hotel.prefer_crib, p.hotel.prefer_early_check_in) == (False, False)
    assert [(c.name, c.value) for c in p.custom_fields][:1] == [("Employee ID", "12345")]
    assert ("Passport Number>", "AUS1234") in [(c.name, c.value) for c in p.custom_fields]
    assert (p.passports, p.tsa_info, p.rail, p.emergency_contact) == ([], None, None, None)


def test_v1_tmc_response_differs_where_the_docs_differ() -> None:
    p = corpus("v1_get-profile_tmc_response.xml")
    assert [(d.vendor, d.code) for d in p.discount_codes] == [
        ("Marriott", "1234567899"),
        ("IHG", "111222333"),
    ]
    assert p.air is not None
    assert p.air.section_position == "NOPREF"


def test_v1_data_models_parse_with_their_placeholders_and_slips() -> None:
    model = corpus("v1_profile_data-model.xml")
    assert (model.version, model.status, model.unique_id) == (
        "v1",
        "Active|Inactive",
        "{unique identifier for the user}",
    )
    assert model.car is not None
    assert len(model.car.memberships) == 1  # a CarMembership beside (not inside) an empty CarMemberships
    assert model.phones[0].type == "Cell|Other|Pager|Fax|Home|Work|Primary Mobile Phone"
    assert model.extra == {}
    old = corpus("hist-2015_v1_profile_data-model.xml")
    assert [d.vendor for d in old.discount_codes] == ["{vendor name}"]  # 2015: a Type attribute
    assert [(e.type, e.contact) for e in old.emails] == [("Business|Business2|Personal", None)]
    assert old.car is not None
    assert len(old.car.memberships) == 1


def test_v2_full_profile_from_the_tmc_guide() -> None:
    p = corpus("tmc-guide_create-full-profile_request.xml")
    assert (p.version, p.login_id, p.action, p.status) == (
        "v2",
        "dutchinw10@domain-connect.com",
        "Create",
        "Active",
    )
    g = p.general
    assert g is not None
    assert (g.name_prefix, g.first_name, g.last_name, g.name_suffix) == ("Mr", "Dutchin", "Wong", "Sr.")
    assert (g.company_employee_id, g.division, g.cost_center) == ("100011", "1000", None)  # stripped
    assert (g.rule_class, g.travel_config_id, g.gds_profile_name) == (
        "Default Travel Class",
        "113938",
        "DUTCHINW10/2",
    )
    ec = p.emergency_contact
    assert ec is not None
    assert (ec.name, ec.relationship) == ("Heather Wong", "Spouse")
    assert [(ph.type, ph.number) for ph in ec.phones] == [
        ("DayTime", "425-999-8665"),
        ("Alternate", "425-999-9695"),
    ]
    assert ec.address is not None
    assert (ec.address.street, ec.address.city, ec.address.postal_code) == (
        "601 108th Ave Suite 1000",
        "Bellevue",
        "98004",
    )
    assert [ph.number for ph in p.phones][:2] == ["888-883 -8411", "4255905248"]
    cell = p.phones[2]
    assert (cell.type, cell.contact_opt_in, cell.primary_mobile, cell.mobile_device) == (
        "Cell",
        False,
        True,
        "Unknown",
    )
    assert [(a.type, a.street, a.city, a.postal_code) for a in p.addresses] == [
        ("Home", "601 108th Ave #1000", "Bellevue", "98045"),
        ("Work", "601 108th Ave #1000", "Bellevue", "98004"),
    ]
    assert (p.has_no_passport, p.passports) == (True, [])
    assert [e.type for e in p.emails] == ["Business", "Personal", "Personal"]
    assert len(p.discount_codes) == 12
    assert (p.discount_codes[0].vendor, p.discount_codes[0].code) == (
        "Intercontinental HotelsGroup",
        "123456",
    )
    assert (p.discount_codes[1].vendor, p.discount_codes[1].code) == ("American Airlines", None)
    assert p.air is not None
    assert [(m.vendor_code, m.account_no) for m in p.air.memberships] == [("AS", "59128856")]
    assert p.rail is not None
    assert (p.rail.seat, p.rail.coach, p.rail.noise_comfort, p.rail.memberships) == (
        "Window",
        "CoachWithTable",
        "MobileSpace",
        [],
    )
    assert p.car is not None
    assert (p.car.car_type, p.car.transmission, p.car.smoking_code) == ("Standard", "Automatic", "NonSmoking")
    assert [(m.vendor_code, m.account_no, m.status) for m in p.car.memberships] == [
        ("ZI", "9WZ25K", "PREFERRED")
    ]
    assert p.hotel is not None
    assert p.hotel.smoking_code == "NonSmoking"  # v2 HotelSmokingCode
    assert [m.account_no for m in p.hotel.memberships] == ["713399498", "283629903"]
    assert (p.hotel.prefer_pool, p.hotel.prefer_foam_pillows, p.hotel.prefer_restaurant) == (
        False,
        True,
        False,
    )
    assert (p.custom_fields, p.roles) == ([], [])
    assert p.tsa_info is not None
    assert (p.tsa_info.gender, p.tsa_info.date_of_birth, p.tsa_info.no_middle_name) == (
        "Male",
        "1900-01-01",
        False,
    )
    assert (p.tsa_info.known_traveler_number, p.tsa_info.redress_number) == (None, None)
    assert p.extra == {"Password": "****"}  # the request's Password: said to be there, never shown
    assert b"Welcome123" not in orjson.dumps(p)


def test_v2_create_update_and_deactivate_requests() -> None:
    created = corpus("v2_create-user_request.xml")
    assert (created.login_id, created.action, created.version) == ("william.never@email.com", "Create", "v2")
    assert created.general is not None
    assert (created.general.first_name, created.general.rule_class, created.general.travel_config_id) == (
        "William",
        "Default Rule Class",
        "555",
    )
    assert b"password123" not in orjson.dumps(created)
    assert created.extra == {"Password": "****"}
    updated = corpus("v2_update-user_request.xml")
    assert updated.general is not None
    assert (updated.action, updated.general.first_name, updated.general.last_name) == ("Update", "Bill", None)
    basic = corpus("tmc-guide_create-basic-profile_request.xml")
    assert basic.general is not None
    assert basic.general.last_name == "Wong10"
    request = corpus("tmc-guide_deactivate-profile_request_fragment.xml")
    assert (request.login_id, request.status, request.action, request.general) == (
        "dutchinw10@domain-connect.com",
        "Inactive",
        "Update",
        None,
    )
    result = corpus("tmc-guide_deactivate-profile_result_fragment.xml")
    assert (result.login_id, result.status, result.unique_id, result.version) == (
        "dutchinw03@sureware-connect.com",
        "Inactive",
        None,  # Unique="" is blank, so None
        "v2",
    )
    assert (result.phones, result.air, result.extra) == ([], None, {})


def test_unused_tickets_keep_values_as_sent() -> None:
    p = corpus("tmc-guide_update-unused-tickets_request.xml")
    (ticket,) = p.unused_tickets
    assert (ticket.carrier, ticket.ticket_number, ticket.record_locator) == ("UA", "HETJUNCRHT", "L64A17")
    assert (ticket.base_fare, ticket.taxes, ticket.fees, ticket.currency) == (
        "731.50",
        "82.42",
        "148.42",
        "USD",
    )
    assert (ticket.issue_date, ticket.expiration_date, ticket.notes) == (
        "2017-10-13",
        "2022-10- 14",
        "TRIP CHANGE",
    )


def test_v2_identity_documents_roles_tsa_and_extras() -> None:
    p = parse_profile(SYNTHETIC)
    assert (p.version, p.login_id, p.unique_id) == ("v2", "ada.lovelace@example.com", None)
    assert p.general is not None
    assert (p.general.cost_center, p.general.company_id, p.general.uuid) == (
        "R&D",
        "p0012345abcd",
        "0b6d6c1e8a3d4d0f9b1e2a3c4d5e6f70",
    )
    assert p.general.extra == {"XmlProfileSyncID": "sync-1815"}
    assert [(x.number, x.nationality, x.expiration) for x in p.passports] == [
        ("925076473", "GB", "2031-06-30"),
        ("P1234567", "IE", "2029-03-01"),
    ]
    assert (p.passports[0].city_issued, p.passports[1].date_issued, p.has_no_passport) == (
        "London",
        None,
        False,
    )
    assert [(v.number, v.type, v.nationality, v.expiration) for v in p.visas] == [
        ("ESTA-0001", "ESTA", "US", "2026-01-15")
    ]
    assert [(n.number, n.issuing_country) for n in p.national_ids] == [("QQ123456C", "GB")]
    assert p.drivers_licenses[0].number == "LOVEL512105AA9XY"
    assert [(r.type, r.primary, r.login_id, r.first_name, r.email) for r in p.roles] == [
        ("Arranger", True, "mary@example.com", "Mary", "mary@example.com"),
        ("Manager", None, "charles@example.com", None, None),
    ]
    assert p.tsa_info is not None
    assert (p.tsa_info.gender, p.tsa_info.date_of_birth, p.tsa_info.no_middle_name) == (
        "Female",
        "1815-12-10",
        True,
    )
    assert (p.tsa_info.known_traveler_number, p.tsa_info.redress_number) == ("KTN12345678", "R1234567")
    assert p.unused_tickets[0].ticket_number == "TKT-BA-0001"
    (advantage,) = p.advantage_memberships
    assert (advantage.vendor_type, advantage.program_number, advantage.origin_code) == (
        "Rail",
        "29000012345",
        "GBLON",
    )
    cost_centre = p.custom_fields[0]  # v2: a Name attribute and the value as text
    assert (cost_centre.name, cost_centre.value) == ("Cost Centre", "HQ-42")
    assert p.emails[1].contact is False
    # Unknown elements reach consumers, wherever they sit.
    assert p.air is not None
    assert p.air.memberships[0].extra == {"IsSenator": "true"}
    assert p.air.memberships[0].expiration == "2026-02-28T00:00:00"
    assert p.air.extra == {"Seat": {"SeatNote": "Not over the wing"}}
    assert p.rail is not None
    assert p.rail.memberships[0].extra == {"BahnCardClass": "First", "BahnCardType": "Card50"}
    assert set(p.extra) == {"Sponsors", "SouthwestUnusedTickets"}
    assert p.extra["Sponsors"] == {
        "Sponsor": {
            "NonEmployeeUserType": "Contractor",
            "SponsorName": "Charles Babbage",
            "LoginID": "charles@example.com",
        }
    }


def test_card_numbers_are_masked_in_typed_fields_and_extra() -> None:
    p = parse_profile(SYNTHETIC)
    assert p.custom_fields[1].value == "****1111"  # grouped "4111 1111 1111 1111"
    assert p.rail is not None
    assert p.rail.memberships[0].account_no == "7081411234567"  # a 13-digit loyalty number, no card: kept
    assert p.air is not None
    assert p.air.memberships[0].account_no == "992001234567"  # 12 digits: not card-shaped, kept
    pan = b"4111111111111111"
    doc = SYNTHETIC.replace(b"<AccountNo>123456789</AccountNo>", b"<AccountNo>" + pan + b"</AccountNo>")
    doc = doc.replace(b">BA-CORP-1<", b">" + pan + b"<").replace(
        b"<Notes>Cancelled trip", b"<Notes>card " + pan
    )
    doc = doc.replace(
        b"<AirOther />", b'<AirOther Card="5500-0000-0000-0004" /><Wallet><Card>' + pan + b"</Card></Wallet>"
    )
    profile = parse_profile(doc)
    assert holds_no_card_number(profile) and pan not in orjson.dumps(profile)
    assert profile.hotel is not None
    assert profile.hotel.memberships[0].account_no == "****1111"
    assert profile.discount_codes[0].code == "****1111"
    assert profile.unused_tickets[0].notes == "card ****1111"
    assert profile.air is not None
    assert profile.air.extra["Wallet"] == {"Card": "****1111"}
    assert profile.air.extra["AirOther"] == {"@Card": "****0004"}


def test_a_flag_that_is_no_boolean_is_kept_as_sent() -> None:
    body = b"<ProfileResponse><General><EReceiptOptIn>maybe</EReceiptOptIn><MarketingOptIn>Y</MarketingOptIn>"
    profile = parse_profile(body + b"</General></ProfileResponse>")
    assert profile.general is not None
    assert (profile.general.e_receipt_opt_in, profile.general.marketing_opt_in) == (None, True)
    assert profile.general.extra == {"EReceiptOptIn": "maybe"}


def test_case_and_namespaces_do_not_matter() -> None:
    original = (PROFILES / "v1_get-profile_supplier_response.xml").read_bytes()
    upper = re.sub(rb"<(/?)(\w+)", lambda m: b"<" + m[1] + m[2].upper(), original)
    lower = re.sub(rb"<(/?)(\w+)", lambda m: b"<" + m[1] + b"c:" + m[2].lower(), original)
    lower = lower.replace(b"<c:profileresponse ", b'<c:profileresponse xmlns:c="urn:concur" ', 1)
    namespaced = original.replace(b"<ProfileResponse ", b'<ProfileResponse xmlns="https://example.com/p" ', 1)
    expected = parse_profile(original)
    for variant in (upper, lower, namespaced):
        assert parse_profile(variant) == expected
    assert b"<PREFERPOOL>" in upper
    assert b"<c:preferpool>" in lower


def test_unknown_elements_and_attributes_land_in_extra() -> None:
    doc = SYNTHETIC.replace(b"<General>", b"<General><Nickname>Countess</Nickname>")
    doc = doc.replace(
        b"<FirstName>Ada</FirstName>", b"<FirstName>Ada</FirstName><FirstName>Augusta</FirstName>"
    )
    doc = doc.replace(b"<JobTitle>Analyst</JobTitle>", b'<JobTitle xsi:nil="true" />')
    doc = doc.replace(b"<City>London</City>", b'<City Verified="true">London</City>', 1)
    doc = doc.replace(b'<Telephone Type="Work">', b'<Telephone Type="Work" Verified="yes"><Sms>no</Sms>')
    doc = doc.replace(b"<Telephones>", b'<Telephones Source="HR"><Pager>1234</Pager>')
    doc = doc.replace(b"<Hotel>", b"<Hotel><PreferQuietRoom>true</PreferQuietRoom>")
    doc = doc.replace(b"<HomeAirport>LHR</HomeAirport>", b"<HomeAirport><Code>LHR</Code></HomeAirport>")
    doc = doc.replace(
        b"</ProfileResponse>", b"<Loyalty><Tier>Gold</Tier><Tier>Plus</Tier></Loyalty></ProfileResponse>"
    )
    doc = doc.replace(b"</TSAInfo>", b"</TSAInfo><TSAInfo><Gender>X</Gender></TSAInfo>")
    p = parse_profile(doc)
    assert p.general is not None
    assert (p.general.first_name, p.general.job_title) == ("Ada", None)
    assert p.general.extra == {
        "Nickname": "Countess",
        "XmlProfileSyncID": "sync-1815",
        "FirstName": "Augusta",
    }
    assert p.emergency_contact is not None
    assert p.emergency_contact.address is not None
    assert p.emergency_contact.address.city == "London"
    assert p.emergency_contact.address.extra == {"City": {"@Verified": "true", "#text": "London"}}
    assert p.phones[1].extra == {"@Verified": "yes", "Sms": "no"}
    assert p.extra["Telephones"] == {"@Source": "HR", "Pager": "1234"}  # a container's own leftovers
    assert p.hotel is not None
    assert p.hotel.extra == {"PreferQuietRoom": "true"}
    assert p.air is not None
    assert p.air.home_airport == "LHR"
    assert p.air.extra["HomeAirport"] == {"Code": "LHR"}  # the structure under a text field is kept
    assert p.extra["Loyalty"] == {"Tier": ["Gold", "Plus"]}
    assert p.tsa_info is not None
    assert p.tsa_info.gender == "Female"
    assert p.extra["TSAInfo"] == {"Gender": "X"}  # a repeated section is kept, not dropped


def test_records_serialise_to_plain_json() -> None:
    data = orjson.loads(orjson.dumps(parse_profile(SYNTHETIC)))
    assert data["login_id"] == "ada.lovelace@example.com"
    assert data["passports"][0]["number"] == "925076473"
    assert data["air"]["memberships"][0]["vendor_code"] == "LH"
    assert data["general"]["e_receipt_opt_in"] is False


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_body"),
        (b"   \n", "empty_body"),
        (b"garbage", "malformed_xml"),
        (b"\x00\xff\xfe binary", "malformed_xml"),
        (b"<ProfileResponse><General>", "malformed_xml"),
        (b"<?xml version='1.0' encoding='x-nope'?><ProfileResponse/>", "malformed_xml"),
        (b"<ConnectResponse/>", "unexpected_document"),
        (b"<CorporateFOPResponse/>", "unexpected_document"),
        (
            b"<Itinerary xmlns='http://www.concursolutions.com/api/travel/trip/2010/06'/>",
            "unexpected_document",
        ),
        (
            b'<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><ProfileResponse>&x;</ProfileResponse>',
            "dtd_forbidden",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b"<ProfileResponse><General><FirstName>&lol2;</FirstName></General></ProfileResponse>",
            "dtd_forbidden",
        ),
        (b'<!DOCTYPE ProfileResponse SYSTEM "http://127.0.0.1:9/x.dtd"><ProfileResponse/>', "dtd_forbidden"),
    ],
)
def test_garbage_other_roots_and_doctypes_are_refused(body: bytes, code: str) -> None:
    assert refusal(body) == code


@given(st.binary(max_size=512))
def test_any_bytes_give_a_profile_or_a_clean_refusal(body: bytes) -> None:
    try:
        assert isinstance(parse_profile(body), Profile)
    except InvalidDocument as exc:
        assert exc.code


NAMES = [
    "General", "FirstName", "Telephones", "Telephone", "PhoneNumber", "Addresses", "Address", "City",
    "Air", "AirMemberships", "AirMembership", "AccountNo", "Seat", "Hotel", "PreferPool", "preferPool",
    "CustomFields", "CustomField", "Name", "Value", "Roles", "Role", "TSAInfo", "UnusedTickets",
    "UnusedTicket", "TicketNumber", "Passports", "Passport", "Unknown", "Extra",
]  # fmt: skip
TEXT = st.one_of(st.text(alphabet="ab 1-", max_size=12), st.just("4111111111111111"), st.just("true"))
TREE = st.recursive(
    TEXT, lambda kids: st.lists(st.tuples(st.sampled_from(NAMES), kids), max_size=4), max_leaves=30
)


def render(name: str, content: object) -> str:
    """An element named ``name`` holding text or (name, content) children; every element gets a Type."""
    if isinstance(content, str):
        inner = content.replace("&", "&amp;").replace("<", "&lt;")
    else:
        assert isinstance(content, list)
        inner = "".join(render(child, grandchild) for child, grandchild in content)
    return f'<{name} Type="{name}">{inner}</{name}>'


@given(st.lists(st.tuples(st.sampled_from(NAMES), TREE), max_size=6), st.booleans())
def test_any_profile_shaped_tree_parses_serialises_and_leaks_no_card(
    children: list[tuple[str, object]], login: bool
) -> None:
    attrs = ' LoginId="x@example.com"' if login else ""
    body = f"<ProfileResponse{attrs}>" + "".join(render(n, c) for n, c in children) + "</ProfileResponse>"
    profile = parse_profile(body.encode())
    assert holds_no_card_number(profile) and b"4111111111111111" not in orjson.dumps(profile)
    assert profile.login_id == ("x@example.com" if login else None)


PROFILE_PLACES = {
    "first name": "<General><FirstName>{}</FirstName></General>",
    "phone": "<Telephones><Telephone Type='Work'><PhoneNumber>{}</PhoneNumber></Telephone></Telephones>",
    "custom field": "<CustomFields><CustomField Name='Billing'>{}</CustomField></CustomFields>",
    "loyalty number": "<Air><AirMemberships><AirMembership><AccountNo>{}</AccountNo></AirMembership>"
    "</AirMemberships></Air>",
    "unknown element": "<Sponsors><Sponsor><Note>{}</Note></Sponsor></Sponsors>",
}


@given(
    card=spelled_card_numbers(),
    other=non_card_runs(),
    before=surrounding,
    place=st.sampled_from(sorted(PROFILE_PLACES)),
)
def test_a_card_number_anywhere_in_a_profile_is_masked_and_nothing_else(
    card: tuple[str, str], other: str, before: str, place: str
) -> None:
    digits, written = card
    value = f"{before} {written} / {other}".replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
    body = f"<ProfileResponse LoginId='x@example.com'>{PROFILE_PLACES[place].format(value)}</ProfileResponse>"
    out = orjson.dumps(parse_profile(body.encode())).decode()
    assert digits not in out.replace(other, "").replace(" ", "").replace("-", "")
    assert "****" + digits[-4:] in out and other in out  # the loyalty-like number beside it is kept
