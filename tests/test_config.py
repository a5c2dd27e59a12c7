"""README.md's configuration table and `Settings` state every setting once (issue 11: they had
drifted apart): the same names, the same defaults, and each row's meaning is the field's description."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from concur_postback.config import Settings, env_name
from concur_postback.metrics import MULTIPROC_ENV

README = Path(__file__).resolve().parents[1] / "README.md"
# Documented in the table, read by a library instead of Settings: prometheus-client reads it at import.
READ_ELSEWHERE = {MULTIPROC_ENV}
UNSET = "unset"
UNITS = {"days": 86400, "h": 3600}  # the README's notes on long durations: `259200` (3 days)
DEFAULT_CELL = re.compile(r"`(?P<value>[^`]*)`(?: \((?P<count>\d+) (?P<unit>days|h)\))?")


@pytest.fixture(scope="module")
def table() -> dict[str, tuple[str, str]]:
    """The rows of the table under `## Configuration`: variable -> (default, meaning), as written."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert cells(lines[0]) == ["Variable", "Default", "Meaning"] and set(lines[1]) <= set("|-")
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[2:]:
        variable, default, meaning = cells(line)
        name = variable.strip("`")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"one variable per row, in backticks: {variable!r}"
        assert name not in rows, f"{name} has two rows"
        rows[name] = (default, meaning)
    return rows


def cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


FIELDS = list(Settings.model_fields)


def test_the_table_names_every_setting_and_nothing_else(table: dict[str, tuple[str, str]]) -> None:
    assert set(table) - READ_ELSEWHERE == {env_name(field) for field in FIELDS}
    assert set(table) >= READ_ELSEWHERE  # the exceptions are documented too


@pytest.mark.parametrize("field", FIELDS)
def test_the_table_shows_the_default(table: dict[str, tuple[str, str]], field: str) -> None:
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    shown = table[env_name(field)][0]
    if default is None:
        assert shown == UNSET
        return
    match = DEFAULT_CELL.fullmatch(shown)
    assert match, f"{env_name(field)}: default {shown!r} is neither `value` nor `value` (N days|h)"
    value = match["value"]
    if isinstance(default, bool):
        assert value == str(default).lower()  # `true` / `false`, as the environment spells them
    elif isinstance(default, int | float):
        assert type(default)(value) == default  # `2.0` and `2` are both 2.0; `2.5` is no int
        if match["count"]:
            assert int(match["count"]) * UNITS[match["unit"]] == default
    elif isinstance(default, list):
        assert value == ", ".join(default)
    else:
        assert value == str(default)  # str, StrEnum, Path


@pytest.mark.parametrize("field", FIELDS)
def test_the_table_s_meaning_is_the_description(table: dict[str, tuple[str, str]], field: str) -> None:
    assert table[env_name(field)][1] == Settings.model_fields[field].description
