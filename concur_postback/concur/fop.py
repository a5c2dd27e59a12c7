"""A user's forms of payment (``GET /api/travelprofile/v2.0/fop``), read without keeping a card number.

Concur answers with ``<CorporateFOPResponse LoginId="…">`` (v2; v1 sent ``UniqueID="…"``, and the v2
data model calls the attribute ``unique``) holding ``<CreditCards><CreditCard DisplayName="…">``. v1
cards list their uses as ``<Usages>BusinessAir,BusinessCar</Usages>``; v2 cards have a ``<UsageType>``
(Business, or Corporate for a "ghost" card) and ``<Segments><Segment Type="Air" Default="true"
Mandatory="…"/>`` saying which booking kinds the card pays for by default.

This module is where the full card number stops: ``AccountNo`` (and look-alikes such as ``CardNumber``)
is masked to its last four as it is read, CVV-like fields are masked entirely, and both rules also
apply to whatever lands in ``extra``, so no record built here can carry a usable card number to a sink
or a log. Free-text card fields additionally get 13-19 digit runs masked, as ``extra`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from concur_postback.concur.documents import (
    JSON,
    Fields,
    add_value,
    element_data,
    parse,
    scrub_card_numbers,
    to_bool,
)
from concur_postback.concur.notification import mask
from concur_postback.concur.xml import local_name

__all__ = ["BillingAddress", "Card", "FormOfPayment", "SegmentDefault", "parse_fop"]

ROOT = "CorporateFOPResponse"

# Element or attribute names whose value is a card number (compared without case).
_NUMBER_NAMES = ("AccountNo", "AccountNumber", "CardNumber", "CardNo", "CreditCardNumber", "PAN")
# Names of card verification codes: never useful downstream, never kept, not even in part.
_CVV_NAMES = (
    "CVV",
    "CVV2",
    "CVC",
    "CVC2",
    "CVN",
    "CID",
    "CSC",
    "SecurityCode",
    "CardSecurityCode",
    "CardVerificationValue",
    "CardVerificationCode",
    "VerificationCode",
)


@dataclass(frozen=True)
class BillingAddress:
    """A card's billing address, which suppliers need to charge it (Concur's element names noted)."""

    street: str | None = None  # StreetAddress
    city: str | None = None
    state: str | None = None  # StateProvince
    postal_code: str | None = None  # ZipCode
    country: str | None = None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentDefault:
    """One booking kind (Air, Hotel, Car, Rail, Ground) a v2 card is listed for.

    ``default``: the card is the user's default for that kind; ``mandatory``: it must be used for it
    (Corporate ghost cards only). None when Concur sent nothing, or something that is not a boolean
    (kept as sent in ``extra`` then).
    """

    type: str | None
    default: bool | None = None
    mandatory: bool | None = None
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Card:
    """One ``<CreditCard>``. ``masked_number`` is all that is kept of the account number: ``****1111``.

    ``expiration`` is as sent (``YYYY-MM`` in every example). ``is_corporate`` is derived from
    ``usage_type`` (Concur's "Corporate (Ghost) card"; None when no usage type was sent). v1 sent
    ``usages`` (a comma-separated list, split here), v2 sends ``segments``.
    """

    display_name: str | None = None
    vendor: str | None = None  # card type, a code in v1 (AX, VI) and a name in v2 (Visa, AmericanExpress)
    masked_number: str | None = None
    expiration: str | None = None
    name_on_card: str | None = None
    usage_type: str | None = None
    is_corporate: bool | None = None
    usages: list[str] = field(default_factory=list)
    segments: list[SegmentDefault] = field(default_factory=list)
    billing_address: BillingAddress | None = None
    extra: dict[str, JSON] = field(default_factory=dict)

    @property
    def default_for(self) -> list[str]:
        """The booking kinds this card is the default for (v2 segments with ``Default="true"``)."""
        return [s.type for s in self.segments if s.default and s.type]


@dataclass(frozen=True)
class FormOfPayment:
    """A ``<CorporateFOPResponse>``. ``login_id`` (v2) and ``unique_id`` (v1) are kept exactly as sent."""

    login_id: str | None = None
    unique_id: str | None = None
    cards: list[Card] = field(default_factory=list)
    extra: dict[str, JSON] = field(default_factory=dict)


def parse_fop(data: bytes) -> FormOfPayment:
    """Read a form-of-payment document; InvalidDocument if it is malformed or not a CorporateFOPResponse."""
    record = _Record(parse(data, ROOT), scrub=False)
    login_id = record.text("LoginId")
    unique_id = record.text("UniqueID", "Unique")
    cards: list[Card] = []
    for element in record.fields.all("CreditCards", "CreditCard"):
        if local_name(element).lower() == "creditcard":  # tolerated: a card outside <CreditCards>
            cards.append(_card(element))
            continue
        box = _Record(element)
        cards.extend(_card(card) for card in box.fields.all("CreditCard"))
        record.keep(local_name(element), box.extra())
    return FormOfPayment(login_id=login_id, unique_id=unique_id, cards=cards, extra=record.extra())


def _card(element: etree._Element) -> Card:
    record = _Record(element)
    display_name = record.text("DisplayName")
    vendor = record.text("Vendor", "VendorCode", "CardType")
    number = record.text(*_NUMBER_NAMES, scrub=False)
    expiration = record.text("ExpDate", "ExpirationDate", "Expiration", "ExpiryDate")
    name_on_card = record.text("NameOnCard", "CardholderName")
    usage_type = record.text("UsageType")
    usages: list[str] = []
    for usage in record.fields.all("Usages", "Usage"):
        text = scrub_card_numbers(",".join(map(str, usage.itertext())))
        usages.extend(part.strip() for part in text.split(",") if part.strip())
        if usage.attrib or len(usage):  # not the documented plain list: keep its shape too
            record.keep(local_name(usage), element_data(usage))
    segments: list[SegmentDefault] = []
    for found in record.fields.all("Segments", "Segment"):
        if local_name(found).lower() == "segment":
            segments.append(_segment(found))
            continue
        box = _Record(found)
        segments.extend(_segment(segment) for segment in box.fields.all("Segment"))
        record.keep(local_name(found), box.extra())
    address = record.one("BillingAddress")
    return Card(
        display_name=display_name,
        vendor=vendor,
        masked_number=_mask_number(number) if number is not None else None,
        expiration=expiration,
        name_on_card=name_on_card,
        usage_type=usage_type,
        is_corporate=usage_type.lower() == "corporate" if usage_type is not None else None,
        usages=usages,
        segments=segments,
        billing_address=_address(address) if address is not None else None,
        extra=record.extra(),
    )


def _segment(element: etree._Element) -> SegmentDefault:
    record = _Record(element)
    return SegmentDefault(
        type=record.text("Type", "SegmentType"),
        default=record.flag("Default", "IsDefault"),
        mandatory=record.flag("Mandatory", "IsMandatory"),
        extra=record.extra(),
    )


def _address(element: etree._Element) -> BillingAddress:
    record = _Record(element)
    return BillingAddress(
        street=record.text("StreetAddress", "Street"),
        city=record.text("City"),
        state=record.text("StateProvince", "State"),
        postal_code=record.text("ZipCode", "PostalCode"),
        country=record.text("Country", "CountryCode"),
        extra=record.extra(),
    )


class _Record:
    """``Fields`` for one element, reading single values from an attribute or a child, losing nothing.

    ``Fields.text`` consumes every child of a name but returns only the first, and a flag that is not a
    boolean would vanish; here repeats and unreadable flags are kept for ``extra``, which is redacted
    (card numbers to their last four, CVVs entirely) whatever element they sit in.
    """

    def __init__(self, element: etree._Element, *, scrub: bool = True) -> None:
        self.fields = Fields(element)
        self._scrub = scrub
        self._kept: list[tuple[str, JSON]] = []

    def text(self, *names: str, scrub: bool | None = None) -> str | None:
        found = self._find(names)
        if found is None:
            return None
        value = found[1]
        return scrub_card_numbers(value) if (self._scrub if scrub is None else scrub) else value

    def flag(self, *names: str) -> bool | None:
        found = self._find(names)
        if found is None:
            return None
        value = to_bool(found[1])
        if value is None:
            self.keep(*found)
        return value

    def one(self, name: str) -> etree._Element | None:
        """The first child called ``name``; any further ones are kept for ``extra``."""
        found = self.fields.all(name)
        for element in found[1:]:
            self.keep(local_name(element), element_data(element))
        return found[0] if found else None

    def keep(self, name: str, value: JSON) -> None:
        """Add something read but not modelled to ``extra`` (empty values carry nothing)."""
        if value not in (None, "", {}, []):
            self._kept.append((name, value))

    def extra(self) -> dict[str, JSON]:
        data = self.fields.extra()
        for name, value in self._kept:
            add_value(data, name, value)
        return {key: _redact(value, _hider(key)) for key, value in data.items()}

    def _find(self, names: tuple[str, ...]) -> tuple[str, str] | None:
        """(name, stripped text) of the first of ``names`` sent, as an attribute or else a child."""
        for name in names:
            value = self.fields.attr(name)
            if value is not None:
                return f"@{name}", value
            element = self.one(name)
            if element is not None:
                if element.attrib or len(element):  # its attributes and structure are kept too
                    self.keep(local_name(element), element_data(element))
                text = "".join(map(str, element.itertext())).strip()
                return (local_name(element), text) if text else None
        return None


def _mask_number(value: str) -> str:
    """The last four of a card number, ignoring the spaces and dashes it may be grouped with."""
    compact = re.sub(r"[\s-]", "", value)
    return compact if compact.startswith("****") else mask(compact)  # already masked (by scrubbing)


def _mask_all(value: str) -> str:
    return "****"


_HIDERS: dict[str, Callable[[str], str]] = {
    **{name.lower(): _mask_number for name in _NUMBER_NAMES},
    **{name.lower(): _mask_all for name in _CVV_NAMES},
}


def _hider(key: str) -> Callable[[str], str] | None:
    return _HIDERS.get(key.lstrip("@").lower())


def _redact(value: JSON, hide: Callable[[str], str] | None) -> JSON:
    """``value`` with every text under a card-number or CVV name hidden (an element's text, attributes
    and descendants alike)."""
    if isinstance(value, str):
        return hide(value) if hide is not None and value else value
    if isinstance(value, list):
        return [_redact(item, hide) for item in value]
    if isinstance(value, dict):
        return {key: _redact(item, hide or _hider(key)) for key, item in value.items()}
    return value
