"""The one backoff schedule and the Retry-After reader (backoff.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from concur_postback.backoff import backoff_delay, gave_up, next_try, retry_after_seconds


@given(st.integers(1, 200), st.floats(0.01, 10), st.floats(0.01, 3600))
def test_delay_is_in_the_upper_half_of_the_capped_exponential(attempt: int, base: float, cap: float) -> None:
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= backoff_delay(attempt, base, cap) <= ceiling


def test_delay_grows_then_stops_at_the_cap() -> None:
    assert 0.5 <= backoff_delay(1, 1, 300) <= 1
    assert 4 <= backoff_delay(4, 1, 300) <= 8
    assert 150 <= backoff_delay(40, 1, 300) <= 300  # 2**39 s, capped


def test_retry_after_wins_when_it_asks_for_longer() -> None:
    assert backoff_delay(1, 1, 20, retry_after=90) == 90
    assert backoff_delay(10, 1, 20, retry_after=0.1) >= 10


def test_next_try_is_none_past_the_horizon() -> None:
    assert next_try(1, 1, 20, retry_after=None, now=1000, horizon_end=2000) is not None
    assert next_try(1, 1, 20, retry_after=3600, now=1000, horizon_end=2000) is None


def test_gave_up_names_the_setting_and_the_time_spent() -> None:
    said = gave_up("HTTP 503", 12, since=0, now=7200, limit="FETCH_RETRY_HORIZON_SECONDS")
    assert said == "gave up after 12 attempt(s) in 2.0 h (FETCH_RETRY_HORIZON_SECONDS): HTTP 503"


@pytest.mark.parametrize(
    ("value", "seconds"), [("120", 120.0), ("0", 0.0), ("-5", 0.0), ("1.5", 1.5), (None, None), ("", None)]
)
def test_retry_after_as_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    found = retry_after_seconds(later)
    assert found is not None
    assert 80 <= found <= 90
    past = format_datetime(datetime.fromtimestamp(time.time() - 3600, UTC), usegmt=True)
    assert retry_after_seconds(past) == 0.0


@pytest.mark.parametrize("value", ["soon", "Mon, 99 Foo 2026", "1e999999x"])
def test_unreadable_retry_after_is_none(value: str) -> None:
    assert retry_after_seconds(value) is None
