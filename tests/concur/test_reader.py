"""The reader's shared rules, on records made up for the purpose: names, nothing lost, redaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from concur_postback.concur.fop import FOP_REDACTION, parse_fop
from concur_postback.concur.reader import (
    JSON,
    REDACTION,
    VERBATIM,
    card_number,
    count,
    flag,
    read,
    record,
    records,
    text,
)
from concur_postback.concur.summaries import parse_trip_summaries
from concur_postback.concur.trips import parse_trip
from concur_postback.concur.xml import parse


@dataclass(frozen=True, kw_only=True)
class Item:
    code: str | None = text("Code")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Thing:
    name: str | None = text("Name")
    seat: str | None = text("Seat/Row")
    nights: int | None = count("Nights")
    smoking: bool | None = flag("Smoking")
    card: str | None = card_number("AccountNo")
    first: Item | None = record(Item, "First")
    items: list[Item] = records(Item, "Items", "Item")
    extra: dict[str, JSON] = field(default_factory=dict)


def thing(xml: str) -> Thing:
    return read(Thing, parse(xml.encode()))


def test_a_field_is_an_attribute_or_a_child_in_any_case_and_namespace() -> None:
    assert thing('<Thing name="A"/>').name == "A"
    assert thing("<t:thing xmlns:t='urn:x'><t:NAME>A</t:NAME></t:thing>").name == "A"


def test_what_no_field_reads_is_kept_in_extra() -> None:
    got = thing(
        "<Thing Kind='k'><Name>A</Name><Name>B</Name><Nights>two</Nights><Smoking>maybe</Smoking>"
        "<Seat><Row>12</Row><Window>Y</Window></Seat><New><Deep a='1'>x</Deep></New></Thing>"
    )
    assert (got.name, got.nights, got.smoking, got.seat) == ("A", None, None, "12")
    assert got.extra == {
        "@Kind": "k",
        "New": {"Deep": {"@a": "1", "#text": "x"}},
        "Seat": {"Window": "Y"},  # what a nested group's fields leave
        "Name": "B",  # a repeat that disagrees
        "Nights": "two",  # not a count
        "Smoking": "maybe",  # not a flag
    }


def test_records_and_lists_bare_or_in_their_container() -> None:
    got = thing(
        "<Thing><First><Code>1</Code></First><First><Code>2</Code></First>"
        "<Items><Item><Code>a</Code></Item><Other>o</Other></Items><Item><Code>b</Code></Item></Thing>"
    )
    assert got.first == Item(code="1")
    assert [item.code for item in got.items] == ["a", "b"]
    assert got.extra == {"First": {"Code": "2"}, "Items": {"Other": "o"}}  # kept, not mislabelled


def test_every_string_is_redacted_and_card_fields_always() -> None:
    got = thing(
        "<Thing Note='cc 4111 1111 1111 1111'><Name>VI 4111111111111111</Name>"
        "<AccountNo>1234 5678 9</AccountNo><CVV>123</CVV><Password>secret</Password>"
        "<Ticket>0167423874521</Ticket></Thing>"
    )
    assert (got.name, got.card) == ("VI ****1111", "****6789")
    assert got.extra == {"@Note": "cc ****1111", "CVV": "123", "Password": "****", "Ticket": "0167423874521"}
    # CVV means a card code only in a form of payment (elsewhere a CID may be a customer id)
    assert read(Thing, parse(b"<Thing><CVV>123</CVV></Thing>"), FOP_REDACTION).extra == {"CVV": "****"}


def test_a_policy_names_its_own_card_fields_and_verbatim_changes_nothing() -> None:
    node = "<Item><Code>4111111111111111</Code><AccountNo>4111111111111112</AccountNo></Item>"
    assert read(Item, parse(node.encode())).extra == {"AccountNo": "4111111111111112"}  # a loyalty number
    fop_like = REDACTION.including(["AccountNo"])
    assert read(Item, parse(node.encode()), fop_like).extra == {"AccountNo": "****1112"}
    assert read(Item, parse(node.encode()), VERBATIM).code == "4111111111111111"


def test_element_names_are_redacted_too() -> None:
    trip = parse_trip(
        b"<Itinerary><Bookings><Booking><Segments><_4111111111111111/></Segments>"
        b"<Charges><C4111-1111-1111-1111/></Charges></Booking></Bookings><n4111111111111111>x</n4111111111111111>"
        b"<n4000000000061111>y</n4000000000061111></Itinerary>"
    )
    [booking] = trip.bookings
    assert (booking.segments[0].kind, booking.charges[0].kind) == ("_****1111", "C****1111")
    assert trip.extra == {"n****1111": ["x", "y"]}  # two names that mask alike: both kept


def test_a_card_field_already_masked_shows_only_its_last_four() -> None:
    fop = parse_fop(
        b"<CorporateFOPResponse><CreditCard><AccountNo>**** 4111 1111 1111 1111</AccountNo></CreditCard>"
        b"<CreditCard><AccountNo>XXXXXXXXXXXX1234</AccountNo></CreditCard></CorporateFOPResponse>"
    )
    assert [card.masked_number for card in fop.cards] == ["****1111", "****1234"]


def test_attributes_and_mixed_text_are_never_lost() -> None:
    xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    got = thing(
        f'<Thing {xsi} xmlns:a="urn:a" a:Name="one" xsi:type="T" Items="i" First="f">'
        "<Name>two</Name>before <b>bold</b> after</Thing>"
    )
    assert got.name == "one"  # the attribute comes first ...
    assert got.extra == {
        "@type": "T",  # schema markup is kept, never read as a field
        "@Items": "i",  # an attribute named like a list or a record holds neither: kept
        "@First": "f",
        "b": "bold",
        "#text": "before after",  # text around child elements too
        "Name": "two",  # ... and the child that disagrees is kept
    }


def test_an_empty_first_choice_gives_way_to_the_next_name() -> None:
    page = parse_trip_summaries(
        b"<ConnectResponse><Metadata><Paging><Page/><CurrentPage>2</CurrentPage><TotalPages>3</TotalPages>"
        b"</Paging></Metadata><Data/></ConnectResponse>"
    )
    assert page.paging is not None and (page.paging.page, page.paging.total_pages) == (2, 3)
