"""A user's forms of payment (``GET /api/travelprofile/v2.0/fop``), read without keeping a card number.

Concur answers with ``<CorporateFOPResponse LoginId="…">`` (v2; v1 sent ``UniqueID="…"``, and the v2
data model calls the attribute ``unique``) holding ``<CreditCards><CreditCard DisplayName="…">``. v1
cards list their uses as ``<Usages>BusinessAir,BusinessCar</Usages>``; v2 cards have a ``<UsageType>``
(Business, or Corporate for a "ghost" card) and ``<Segments><Segment Type="Air" Default="true"
Mandatory="…"/>`` saying which booking kinds the card pays for by default.

This module is where the full card number stops: ``AccountNo`` (and look-alikes such as ``CardNumber``)
is masked to its last four as it is read, whatever it holds, here and anywhere in ``extra``; CVV-like
fields are hidden entirely (`FOP_REDACTION`), and every other string has its card numbers masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concur_postback.concur.reader import (
    JSON,
    REDACTION,
    card_number,
    derived,
    flag,
    read,
    record,
    records,
    text,
    text_list,
)
from concur_postback.concur.xml import parse

__all__ = ["BillingAddress", "Card", "FormOfPayment", "SegmentDefault", "parse_fop"]

ROOT = "CorporateFOPResponse"
# In a form of payment an account number is a card number, wherever it stands, and these are its codes.
_NUMBER_NAMES = ("AccountNo", "AccountNumber", "CardNumber", "CardNo", "CreditCardNumber", "PAN")
_CVV_NAMES = ("CVV", "CVV2", "CVC", "CVC2", "CVN", "CID", "CSC", "SecurityCode", "CardSecurityCode")
_CVV_LONG_NAMES = ("CardVerificationValue", "CardVerificationCode", "VerificationCode")
FOP_REDACTION = REDACTION.including(_NUMBER_NAMES, (*_CVV_NAMES, *_CVV_LONG_NAMES))


@dataclass(frozen=True, kw_only=True)
class BillingAddress:
    """A card's billing address, which suppliers need to charge it."""

    street: str | None = text("StreetAddress", "Street")
    city: str | None = text("City")
    state: str | None = text("StateProvince", "State")
    postal_code: str | None = text("ZipCode", "PostalCode")
    country: str | None = text("Country", "CountryCode")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SegmentDefault:
    """One booking kind (Air, Hotel, Car, Rail, Ground) a v2 card is listed for.

    ``default``: the card is the user's default for that kind; ``mandatory``: it must be used for it
    (Corporate ghost cards only). None when Concur sent nothing, or something that is not a boolean
    (kept as sent in ``extra`` then).
    """

    type: str | None = text("Type", "SegmentType")
    default: bool | None = flag("Default", "IsDefault")
    mandatory: bool | None = flag("Mandatory", "IsMandatory")
    extra: dict[str, JSON] = field(default_factory=dict)


def _is_corporate(values: dict[str, object]) -> bool | None:
    usage_type = values["usage_type"]
    return usage_type.lower() == "corporate" if isinstance(usage_type, str) else None


@dataclass(frozen=True, kw_only=True)
class Card:
    """One ``<CreditCard>``. ``masked_number`` is all that is kept of the account number: ``****1111``.

    ``expiration`` is as sent (``YYYY-MM`` in every example). ``is_corporate`` is derived from
    ``usage_type`` (Concur's "Corporate (Ghost) card"; None when no usage type was sent). v1 sent
    ``usages`` (a comma-separated list, split here), v2 sends ``segments``.
    """

    display_name: str | None = text("DisplayName")
    vendor: str | None = text("Vendor", "VendorCode", "CardType")  # AX, VI in v1; Visa, AmericanExpress in v2
    masked_number: str | None = card_number(*_NUMBER_NAMES)
    expiration: str | None = text("ExpDate", "ExpirationDate", "Expiration", "ExpiryDate")
    name_on_card: str | None = text("NameOnCard", "CardholderName")
    usage_type: str | None = text("UsageType")
    is_corporate: bool | None = derived(_is_corporate)
    usages: list[str] = text_list("Usages", "Usage")
    segments: list[SegmentDefault] = records(SegmentDefault, "Segments", "Segment")
    billing_address: BillingAddress | None = record(BillingAddress, "BillingAddress")
    extra: dict[str, JSON] = field(default_factory=dict)

    @property
    def default_for(self) -> list[str]:
        """The booking kinds this card is the default for (v2 segments with ``Default="true"``)."""
        return [s.type for s in self.segments if s.default and s.type]


@dataclass(frozen=True, kw_only=True)
class FormOfPayment:
    """A ``<CorporateFOPResponse>``. ``login_id`` (v2) and ``unique_id`` (v1) are kept exactly as sent."""

    login_id: str | None = text("LoginId")
    unique_id: str | None = text("UniqueID", "Unique")
    cards: list[Card] = records(Card, "CreditCards", "CreditCard")
    extra: dict[str, JSON] = field(default_factory=dict)


def parse_fop(data: bytes) -> FormOfPayment:
    """Read a form-of-payment document; InvalidDocument if it is malformed or not a CorporateFOPResponse."""
    return read(FormOfPayment, parse(data, ROOT), FOP_REDACTION)
