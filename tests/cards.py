"""Hypothesis strategies for card numbers as people write them, and digit runs that are not cards."""

from __future__ import annotations

from hypothesis import strategies as st

from concur_postback.concur.redaction import luhn_valid


def _check_digit(body: str) -> str:
    return next(d for d in "0123456789" if luhn_valid(body + d))


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of 13-19 digits, as its bare digits."""
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return body + _check_digit(body)


@st.composite
def spelled(draw: st.DrawFn, digits: str) -> str:
    """``digits`` written as people do: bare, or split anywhere by single spaces or dashes."""
    out = digits[0]
    for digit in digits[1:]:
        out += draw(st.sampled_from(["", "", "", " ", "-"])) + digit
    return out


@st.composite
def spelled_card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, as written) of a card number."""
    digits = draw(card_numbers())
    return digits, draw(spelled(digits))


@st.composite
def non_card_runs(draw: st.DrawFn) -> str:
    """A bare run of 13-19 digits that fails Luhn: a ticket, loyalty or phone number."""
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return body + draw(st.sampled_from([d for d in "0123456789" if not luhn_valid(body + d)]))


# Text around a number that cannot join it: no digits, and never ending in a space or dash before it.
surrounding = st.text(st.characters(blacklist_categories=["Nd", "Cs", "Cc"]), max_size=30).map(
    lambda text: text.strip(" -")
)
