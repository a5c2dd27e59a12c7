"""README.md's Redis schema table is keys.SCHEMA, and SCHEMA names every key keys.py defines."""

from __future__ import annotations

from pathlib import Path

from concur_postback import keys

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_shows_the_schema_table() -> None:
    assert keys.schema_table() in README.read_text()


def test_every_key_is_in_the_schema_once() -> None:
    defined = {
        value
        for name, value in vars(keys).items()
        if name.endswith(("_KEY", "_PREFIX")) and isinstance(value, str)
    }
    listed = [spec.key.split("<", 1)[0] for section in keys.SCHEMA for spec in section.keys]
    assert sorted(listed) == sorted(defined)
    assert all(key.startswith(keys.PREFIX) for key in listed)
