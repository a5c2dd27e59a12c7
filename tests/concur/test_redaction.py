"""The card-number rule: every Luhn-valid number masked wherever it stands, nothing else changed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from concur_postback.concur.redaction import luhn_valid, mask, mask_card_field, scrub_card_numbers
from tests.cards import non_card_runs, spelled_card_numbers, surrounding


def test_mask_shows_last_four_only() -> None:
    assert mask("4111111111111111") == "****1111"
    assert mask("short") == "****"


@pytest.mark.parametrize(
    "text",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111",
     "4111  1111  1111  1111", "4111_1111_1111_1111", "4111/1111/1111/1111", "4 1 1 1-1111 1111 1111"],
)  # fmt: skip
def test_card_numbers_are_masked_however_they_are_written(text: str) -> None:
    assert scrub_card_numbers(f"card: {text}.") == "card: ****1111."


def test_the_examples_from_the_field() -> None:
    assert scrub_card_numbers("guarantee 4111 1111 1111 1111") == "guarantee ****1111"
    assert scrub_card_numbers("cc 5500-0000-0000-0004") == "cc ****0004"
    assert scrub_card_numbers("VI 4111111111111111") == "VI ****1111"
    # a card number beside other digits, split from them by a single space, is still found
    assert scrub_card_numbers("call 0044 4111 1111 1111 1111 now") == "call 0044 ****1111 now"
    assert scrub_card_numbers("a 4111111111111111 b 5500000000000004") == "a ****1111 b ****0004"


@pytest.mark.parametrize(
    "text",
    ["MasterTicketNumber 0167423874521", "loyalty 6001234567890123", "+44 20 7946 0958 123",
     "2013-02-13T08:12:35", "+1 425 555 0100", "PNR 123456", "12/2030", "38.812690000000",
     "41111111111111111234", "4111111111111112"],
)  # fmt: skip
def test_what_is_no_card_number_is_left_exactly_as_sent(text: str) -> None:
    assert scrub_card_numbers(text) == text


def test_a_card_field_is_masked_whatever_it_holds() -> None:
    assert mask_card_field("4111-1111-1111-1112") == "****1112"  # not Luhn-valid: masked all the same
    assert mask_card_field("XXXXXXXXXXXX1111") == "****1111"
    assert mask_card_field("****1111") == "****1111"
    assert mask_card_field("1234") == "****"


@given(card=spelled_card_numbers(), before=surrounding, after=surrounding)
def test_a_card_number_in_any_spelling_anywhere_never_survives(
    card: tuple[str, str], before: str, after: str
) -> None:
    digits, written = card
    masked = scrub_card_numbers(f"{before}{written}{after}")
    assert digits not in masked.replace(" ", "").replace("-", "")
    assert "****" + digits[-4:] in masked
    assert masked.startswith(before) and masked.endswith(after)  # the text around it is untouched


@given(run=non_card_runs(), before=surrounding, after=surrounding)
def test_a_digit_run_that_is_no_card_number_always_arrives_unchanged(
    run: str, before: str, after: str
) -> None:
    assert not luhn_valid(run)
    text = f"{before}{run}{after}"
    assert scrub_card_numbers(text) == text


@given(st.text())
def test_scrubbing_is_idempotent_and_never_lengthens_text(text: str) -> None:
    once = scrub_card_numbers(text)
    assert scrub_card_numbers(once) == once and len(once) <= len(text)
