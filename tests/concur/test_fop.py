from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from concur_postback.concur.fop import BillingAddress, Card, FormOfPayment, SegmentDefault, parse_fop
from concur_postback.errors import InvalidDocument
from tests.cards import non_card_runs, spelled_card_numbers, surrounding
from tests.conftest import CORPUS

FOP_CORPUS = CORPUS / "fop"
PAN_RE = re.compile(rb"(?<!\d)\d{13,19}(?!\d)")

# Every CorporateFOPResponse in the corpus, by the file that parses (the .fixed.xml copy of a malformed
# original): login_id, unique_id, card count, and per card checked (index, display name, vendor,
# expiration, masked number, usages or default-for segments, billing city).
EXPECTED: dict[str, dict[str, Any]] = {
    "v1_get-fop_air-supplier_response.xml": {
        "ids": (None, "3Dkw7WlCshi$281kedhn"),
        "cards": 1,
        "card": (0, "American Express", "AX", "2015-05", "****2345", ["BusinessAir"], [], "Seattle"),
    },
    "v1_get-fop_tmc_response.xml": {
        "ids": (None, "3Dkw7WlCshi$281kedhn"),
        "cards": 2,
        "card": (1, "Visa", "VI", "2013-07", "****9876", ["Hotel"], [], "Seattle"),
    },
    "v2_post-fop_request.xml": {
        "ids": ("developer@concur.com", None),
        "cards": 1,
        "card": (0, "My Visa Card", "Visa", "2020-09", "****1111", [], [], "Bellevue"),
    },
    "tmc-guide_create-fop_request.fixed.xml": {
        "ids": ("dutchinw10@domain-connect.com", None),
        "cards": 1,
        "card": (0, "My Visa Card", "Visa", "2021-09", "****XXX1", [], [], "Bellevue"),
    },
    "tmc-guide_update-fop_request.fixed.xml": {
        "ids": ("dutchinw10@domain-connect.com", None),
        "cards": 4,
        "card": (
            0,
            "AMEX Corporate",
            "AmericanExpress",
            "2021-07",
            "****XXX1",
            [],
            ["Air", "Hotel", "Car", "Rail"],
            "Bellevue",
        ),
    },
    "hist-2021-06_tmc-guide_get-fop_response.xml": {
        # The doc wraps the attribute value over two lines; XML turns that newline into a space.
        "ids": ("demo2@amex- connect.com", None),
        "cards": 1,
        "card": (0, "Air Default", "AmericanExpress", "2018-09", "****####", [], [], "Test"),
    },
}
MALFORMED = ["tmc-guide_create-fop_request.xml", "tmc-guide_update-fop_request.xml"]


def corpus_file(name: str) -> bytes:
    return (FOP_CORPUS / name).read_bytes()


def fop(*cards: str, attrs: str = ' LoginId="cm@example.com"', ns: str = "", extra: str = "") -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    body = "".join(cards)
    root = f"CorporateFOPResponse{xmlns}{attrs}"
    return f"<{root}><CreditCards>{body}</CreditCards>{extra}</CorporateFOPResponse>".encode()


def card(inner: str = "", *, attrs: str = ' DisplayName="Mine"', number: str = "4111111111111111") -> str:
    return f"<CreditCard{attrs}><Vendor>Visa</Vendor><AccountNo>{number}</AccountNo>{inner}</CreditCard>"


def dumped(result: FormOfPayment) -> bytes:
    return orjson.dumps(result)


def test_the_corpus_holds_exactly_the_documents_checked_here() -> None:
    names = {p.name for p in FOP_CORPUS.glob("*.xml")}
    readable = {n for n in names if n.removesuffix(".xml") + ".fixed.xml" not in names}
    assert readable == set(EXPECTED), "a new FOP example appeared: add its values to EXPECTED"
    assert set(MALFORMED) <= names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_document_parses_to_its_values(name: str) -> None:
    expected = EXPECTED[name]
    result = parse_fop(corpus_file(name))
    assert (result.login_id, result.unique_id) == expected["ids"]
    assert len(result.cards) == expected["cards"]
    index, display, vendor, expiration, masked, usages, default_for, city = expected["card"]
    got = result.cards[index]
    assert (got.display_name, got.vendor, got.expiration) == (display, vendor, expiration)
    assert got.masked_number == masked
    assert got.usages == usages
    assert got.default_for == default_for
    assert got.billing_address is not None
    assert got.billing_address.city == city
    assert result.extra == {}
    assert all(c.extra == {} and c.billing_address and c.billing_address.extra == {} for c in result.cards)


def test_v2_card_reads_every_documented_field() -> None:
    result = parse_fop(corpus_file("v2_post-fop_request.xml"))
    assert result.cards == [
        Card(
            display_name="My Visa Card",
            vendor="Visa",
            masked_number="****1111",
            expiration="2020-09",
            name_on_card="Concur Developer",
            usage_type="Business",
            is_corporate=False,
            segments=[SegmentDefault(type=kind, default=False) for kind in ("Air", "Hotel", "Car", "Rail")],
            billing_address=BillingAddress(
                street="123 Home St", city="Bellevue", state="WA", postal_code="98006", country="US"
            ),
        )
    ]


def test_v1_usages_are_split_and_ground_segments_are_kept() -> None:
    v1 = parse_fop(corpus_file("v1_get-fop_tmc_response.xml"))
    assert [c.usages for c in v1.cards] == [["BusinessAir", "BusinessCar"], ["Hotel"]]
    assert v1.cards[0].usage_type is None and v1.cards[0].is_corporate is None
    hist = parse_fop(corpus_file("hist-2021-06_tmc-guide_get-fop_response.xml"))
    assert [s.type for s in hist.cards[0].segments] == ["Air", "Hotel", "Car", "Rail", "Ground"]
    update = parse_fop(corpus_file("tmc-guide_update-fop_request.fixed.xml"))
    assert [c.default_for != [] for c in update.cards] == [True, False, True, False]
    assert update.cards[2].masked_number == "****###1"  # sent with a leading space: " 4####…1"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_card_number_from_the_corpus_survives(name: str) -> None:
    data = corpus_file(name)
    out = dumped(parse_fop(data))
    for pan in PAN_RE.findall(data):
        assert pan not in out
    assert not PAN_RE.search(out)
    sent = [m.strip() for m in re.findall(rb"<AccountNo>(.*?)</AccountNo>", data)]
    assert {n for n in sent if n.isdigit()} <= set(PAN_RE.findall(data))  # the check above saw them
    masked = [c.masked_number for c in parse_fop(data).cards]
    assert masked == ["****" + n[-4:].decode() for n in sent]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_corpus_originals_are_refused(name: str) -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_fop(corpus_file(name))
    assert caught.value.code == "malformed_xml"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_body"),
        (b"not xml", "malformed_xml"),
        (b"\x00\xff\xfe garbage", "malformed_xml"),
        (b"<CorporateFOPResponse><CreditCards>", "malformed_xml"),
        (b"<ProfileResponse LoginId='x'/>", "unexpected_document"),
        (b"<Error><Message>Forbidden Request</Message></Error>", "unexpected_document"),
        (
            b'<!DOCTYPE CorporateFOPResponse SYSTEM "http://127.0.0.1:9/x.dtd"><CorporateFOPResponse/>',
            "dtd_forbidden",
        ),
        (
            b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<CorporateFOPResponse><CreditCards><CreditCard><NameOnCard>&x;</NameOnCard></CreditCard>"
            b"</CreditCards></CorporateFOPResponse>",
            "dtd_forbidden",
        ),
    ],
)
def test_garbage_other_roots_and_doctypes_are_refused(data: bytes, code: str) -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_fop(data)
    assert caught.value.code == code


def test_namespaces_and_case_are_ignored() -> None:
    data = (
        b"<f:corporatefopresponse xmlns:f='https://www.concursolutions.com/ns/FormOfPayment' UNIQUEID='u1'>"
        b"<f:CREDITCARDS><f:creditcard displayname='Amex'><f:VENDOR>AX</f:VENDOR>"
        b"<f:accountNO>378282246310005</f:accountNO><f:segments><f:segment type='Car' DEFAULT='TRUE'/>"
        b"</f:segments></f:creditcard></f:CREDITCARDS></f:corporatefopresponse>"
    )
    result = parse_fop(data)
    assert result.unique_id == "u1"
    assert (result.cards[0].display_name, result.cards[0].vendor) == ("Amex", "AX")
    assert (result.cards[0].masked_number, result.cards[0].default_for) == ("****0005", ["Car"])
    default_ns = parse_fop(fop(card(), ns="urn:x"))
    assert default_ns.login_id == "cm@example.com" and default_ns.cards[0].masked_number == "****1111"


def test_empty_response_has_no_cards() -> None:
    assert parse_fop(b"<CorporateFOPResponse/>") == FormOfPayment()
    assert parse_fop(fop()).cards == []


def test_unknown_elements_and_attributes_land_in_extra() -> None:
    inner = (
        "<Nickname>Travel</Nickname><BillingAddress Kind='home'><City>Paris</City><County>X</County>"
        "</BillingAddress><Segments Version='2'><Segment Type='Air' Default='true' Priority='1'/>"
        "</Segments><Loyalty><Program>AF</Program></Loyalty>"
    )
    data = fop(
        card(inner, attrs=' DisplayName="Mine" Status="Active"'),
        attrs=' LoginId="cm@example.com" Region="EU"',
        extra="<Paging><Page>1</Page></Paging>",
    )
    result = parse_fop(data.replace(b"<CreditCards>", b"<CreditCards Count='1'>"))
    assert result.extra == {"@Region": "EU", "Paging": {"Page": "1"}, "CreditCards": {"@Count": "1"}}
    got = result.cards[0]
    assert got.extra == {
        "@Status": "Active",
        "Nickname": "Travel",
        "Loyalty": {"Program": "AF"},
        "Segments": {"@Version": "2"},
    }
    assert got.billing_address == BillingAddress(city="Paris", extra={"@Kind": "home", "County": "X"})
    assert got.segments == [SegmentDefault(type="Air", default=True, extra={"@Priority": "1"})]


def test_repeats_and_unreadable_flags_are_kept_not_dropped() -> None:
    inner = (
        "<Vendor>MasterCard</Vendor><ExpDate>2030-01</ExpDate><ExpDate>2031-01</ExpDate>"
        "<Segments><Segment Type='Hotel' Default='maybe' Mandatory='true'/></Segments>"
        "<Usages>BusinessAir, BusinessHotel ,</Usages>"
    )
    got = parse_fop(fop(card(inner))).cards[0]
    assert (got.vendor, got.expiration) == ("Visa", "2030-01")
    assert got.extra == {"Vendor": "MasterCard", "ExpDate": "2031-01"}
    assert got.segments == [
        SegmentDefault(type="Hotel", default=None, mandatory=True, extra={"@Default": "maybe"})
    ]
    assert got.usages == ["BusinessAir", "BusinessHotel"]
    assert got.default_for == []


def test_usage_type_corporate_marks_a_ghost_card() -> None:
    got = parse_fop(fop(card("<UsageType> Corporate </UsageType>"))).cards[0]
    assert (got.usage_type, got.is_corporate) == ("Corporate", True)


@pytest.mark.parametrize(
    ("number_xml", "masked"),
    [
        ("<AccountNo>4111111111111111</AccountNo>", "****1111"),
        ("<AccountNo> 4111 1111 1111 1111 </AccountNo>", "****1111"),
        ("<AccountNumber>4111-1111-1111-1111</AccountNumber>", "****1111"),
        ("<CardNumber>5555555555554444</CardNumber>", "****4444"),
        ("<accountno>12345678</accountno>", "****"),
    ],
)
def test_card_number_is_masked_to_its_last_four(number_xml: str, masked: str) -> None:
    data = fop(f"<CreditCard>{number_xml}</CreditCard>")
    result = parse_fop(data)
    assert result.cards[0].masked_number == masked
    digits = re.sub(r"\D", "", number_xml).encode()
    assert digits not in re.sub(rb"\D", b"", dumped(result))


def test_card_numbers_and_cvvs_never_reach_extra() -> None:
    inner = (
        "<AccountNo>4000056655665556</AccountNo>"  # a second number: kept, masked
        "<CardNumber>6011 0009 9013 9424</CardNumber><CVV>737</CVV><cid>8431</cid>"
        "<Token><Pan>30569309025904</Pan><SecurityCode>906</SecurityCode></Token>"
        "<Note>paid with 3530111333300000</Note><LegacyNumber>1234567890</LegacyNumber>"
    )
    data = fop(card(inner, attrs=' DisplayName="Visa 4242424242424242" CVC2="246"'))
    result = parse_fop(data)
    got = result.cards[0]
    assert got.masked_number == "****1111"
    assert got.display_name == "Visa ****4242"
    assert got.extra == {
        "@CVC2": "****",
        "AccountNo": "****5556",
        "CardNumber": "****9424",
        "CVV": "****",
        "cid": "****",
        "Token": {"Pan": "****5904", "SecurityCode": "****"},
        "Note": "paid with ****0000",
        "LegacyNumber": "1234567890",  # not card-shaped and not under a card-number name: as sent
    }
    out = re.sub(rb"\D", b"", dumped(result))
    for secret in (b"4111111111111111", b"4000056655665556", b"6011000990139424", b"30569309025904"):
        assert secret not in out
    for cvv in (b"737", b"8431", b"906", b"246"):
        assert cvv not in dumped(result)


def test_number_as_attribute_and_structured_number_are_masked() -> None:
    data = fop(
        "<CreditCard AccountNo='4111111111111111'/>"
        "<CreditCard><AccountNo Type='PAN'>378282246310005</AccountNo></CreditCard>"
    )
    first, second = parse_fop(data).cards
    assert (first.masked_number, first.extra) == ("****1111", {})
    assert second.masked_number == "****0005"
    assert second.extra == {"AccountNo": {"@Type": "****", "#text": "****0005"}}
    assert b"378282246310005" not in dumped(parse_fop(data))


def test_records_are_frozen_and_json_serialisable() -> None:
    result = parse_fop(corpus_file("tmc-guide_update-fop_request.fixed.xml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.login_id = "other"  # type: ignore[misc]
    loaded = orjson.loads(dumped(result))
    assert loaded["login_id"] == "dutchinw10@domain-connect.com"
    assert loaded["cards"][0]["segments"][0] == {
        "type": "Air",
        "default": True,
        "mandatory": None,
        "extra": {},
    }
    assert loaded["cards"][3]["billing_address"]["postal_code"] == "98004"


@given(st.binary(max_size=512))
def test_any_bytes_give_a_form_of_payment_or_a_clean_refusal(data: bytes) -> None:
    try:
        result = parse_fop(data)
    except InvalidDocument as exc:
        assert exc.code
    else:
        assert isinstance(result, FormOfPayment)


@given(
    card=spelled_card_numbers(),
    other=non_card_runs(),
    text=surrounding,
    where=st.sampled_from(["AccountNo", "CardNumber", "Remarks", "DisplayName", "City"]),
)
def test_generated_cards_never_leak_their_number(
    card: tuple[str, str], other: str, text: str, where: str
) -> None:
    """A card number anywhere, however spelled, is masked; a field that holds one is masked whatever
    it holds; a digit run that is no card number arrives as sent."""
    digits, written = card
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
    value = f"{escaped} {written} / {other}"
    if where == "DisplayName":
        xml = f"<CreditCard DisplayName='{value}'/>"
    elif where == "City":
        xml = f"<CreditCard><BillingAddress><City>{value}</City></BillingAddress></CreditCard>"
    else:
        xml = f"<CreditCard><{where}>{value}</{where}><AccountNo>{other}</AccountNo></CreditCard>"
    try:
        result = parse_fop(fop(xml))
    except InvalidDocument:  # characters XML does not allow
        return
    out = dumped(result).decode()
    assert digits not in out.replace(other, "").replace(" ", "").replace("-", "")
    [card_record] = result.cards
    assert card_record.masked_number == (None if where in ("DisplayName", "City") else "****" + other[-4:])
    if where in ("Remarks", "DisplayName", "City"):
        assert other in out  # not a card number, not in a card field: untouched
