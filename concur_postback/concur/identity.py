"""Identity v4 users (SCIM 2.0 JSON) as typed, frozen records: what an identity ESS event fetches.

Read by the same declarative reader as every Concur document (through `json_node`), so unknown
attributes (locale overrides, SAP's own schema extension) stay in ``extra`` and every string passes
the one redaction rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from concur_postback.concur.json_node import parse_json
from concur_postback.concur.reader import JSON, flag, read, record, records, text

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@dataclass(frozen=True, kw_only=True)
class IdentityName:
    given_name: str | None = text("givenName")
    middle_name: str | None = text("middleName")
    family_name: str | None = text("familyName")
    honorific_prefix: str | None = text("honorificPrefix")
    honorific_suffix: str | None = text("honorificSuffix")
    formatted: str | None = text("formatted")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class IdentityContact:
    """One of a user's `emails` or `phoneNumbers`."""

    value: str | None = text("value")
    type: str | None = text("type")
    primary: bool | None = flag("primary")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Identity:
    id: str | None = text("id")  # Concur's user UUID
    user_name: str | None = text("userName")  # the login
    display_name: str | None = text("displayName")
    external_id: str | None = text("externalId")
    active: bool | None = flag("active")
    title: str | None = text("title")
    preferred_language: str | None = text("preferredLanguage")
    timezone: str | None = text("timezone")
    name: IdentityName | None = record(IdentityName, "name")
    emails: list[IdentityContact] = records(IdentityContact, "emails")
    phone_numbers: list[IdentityContact] = records(IdentityContact, "phoneNumbers")
    company_id: str | None = text(f"{ENTERPRISE}/companyId")
    employee_number: str | None = text(f"{ENTERPRISE}/employeeNumber")
    extra: dict[str, JSON] = field(default_factory=dict)

    @property
    def login_id(self) -> str | None:
        return self.user_name


def parse_identity(data: bytes) -> Identity:
    """Read a fetched Identity v4 user; InvalidDocument if it is not a JSON object."""
    return read(Identity, parse_json(data))
