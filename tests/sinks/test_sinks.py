"""`SINKS` → sinks by id: the id comes from the whole URL, so two URLs are two sinks; a URL twice is
a mistake caught at start-up; the id never shows a credential."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError
from concur_postback.sinks import build_sinks, sink_id, sink_label


def test_urls_that_differ_only_in_a_query_or_a_user_are_different_sinks(
    make_settings: Callable[..., Settings],
) -> None:
    urls = ["https://h.example/in?tenant=a", "https://h.example/in?tenant=b", "https://u:p1@h.example/in"]
    sinks = build_sinks(make_settings(sinks=" ".join(urls)))
    assert list(sinks) == [sink_id(url) for url in urls] and len(set(sinks)) == 3
    labels = [sink_label(ident, sink) for ident, sink in sinks.items()]
    assert len(set(labels)) == 3  # the display names collide; the labels do not
    assert not any("p1" in text for text in (*sinks, *labels))
    assert sink_id("https://u:p1@h.example/in") != sink_id("https://v:p1@h.example/in")


def test_a_rotated_password_is_the_same_sink(make_settings: Callable[..., Settings]) -> None:
    """What a sink still owes must reach it after its password changes; and the password is not
    hashed into the id, so the id cannot be used to check guesses at it."""
    assert sink_id("postgresql://app:old@db:5432/x") == sink_id("postgresql://app:new@db:5432/x")
    assert sink_id("postgresql://app:old@db:5432/x") == sink_id("postgresql://app@db:5432/x")
    with pytest.raises(ConfigurationError, match="repeats an earlier one"):
        build_sinks(make_settings(sinks="https://u:a@h.example/in https://u:b@h.example/in"))


def test_the_same_url_twice_is_refused_at_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    url = f"file://{tmp_path}/events.jsonl"
    with pytest.raises(ConfigurationError, match=r"sink 3 \(file\) repeats an earlier one"):
        build_sinks(make_settings(sinks=f"{url}, log: {url}"))
