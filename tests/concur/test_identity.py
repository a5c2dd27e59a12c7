"""Identity v4 users (SCIM JSON) read into typed records: Concur's examples, nothing lost."""

from __future__ import annotations

import json

import pytest

from concur_postback.concur.identity import parse_identity
from concur_postback.errors import InvalidDocument
from tests.conftest import CORPUS

USER = CORPUS / "ess" / "api-reference__profile__v4.identity__2.json"


def test_the_documented_user_reads_into_the_record_with_the_rest_in_extra() -> None:
    user = parse_identity(USER.read_bytes())
    assert (user.id, user.active) == ("3df11695-e8bb-40ff-8e98-c85913ab2789", True)
    assert user.user_name == "John11_17_1@sap.com"
    assert user.name is not None and (user.name.given_name, user.name.honorific_suffix) == ("John", "VI")
    assert user.company_id == "aa076ada-80a9-4f57-8e98-9300b1c3171d"
    assert user.employee_number == "1234_employeeNumber"
    assert user.emails[0].value == user.login_id
    assert user.extra["meta"]["version"] == "4"  # values become text, as XML's
    assert user.name.extra == {"familyNamePrefix": None}  # null stays null


def test_a_card_number_in_a_user_is_masked() -> None:
    body = json.dumps(
        {"id": "u", "nickName": "4111 1111 1111 1111", "emails": [{"value": "5555555555554444"}]}
    )
    user = parse_identity(body.encode())
    assert user.extra["nickName"] == "****1111" and user.emails[0].value == "****4444"


@pytest.mark.parametrize("body", [b"[]", b"{", b'{"a": ' * 70 + b"1" + b"}" * 70])
def test_what_is_not_a_user_is_an_invalid_document(body: bytes) -> None:
    with pytest.raises(InvalidDocument):
        parse_identity(body)
