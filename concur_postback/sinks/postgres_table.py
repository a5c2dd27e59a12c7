"""The table the PostgreSQL sink writes: its columns, once, and everything made from them.

One list of columns gives the ``CREATE TABLE``, its indexes, the start-up check that an existing
table has every column, and the ``INSERT``; a column added here is added everywhere. The whole event
is stored as ``event`` (jsonb); the other columns copy the fields one queries by.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql

from concur_postback.errors import ConfigurationError
from concur_postback.events import Event

DEFAULT_TABLE = "concur_events"
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the SQL type, also the cast of the inserted value (the driver sends text)
    constraint: str = ""
    indexed: bool = False
    value: Callable[[Event, str], object] | None = None  # from the event and its JSON; None: the default


def _field(name: str) -> Callable[[Event, str], object]:
    return lambda event, _document: getattr(event, name)


COLUMNS = (
    Column("id", "text", "PRIMARY KEY", value=_field("id")),
    Column("kind", "text", "NOT NULL", indexed=True, value=_field("kind")),
    Column("event_type", "text", "NOT NULL", value=_field("event_type")),
    Column("received_at", "timestamptz", "NOT NULL", indexed=True, value=_field("received_at")),
    Column("fetched_at", "timestamptz", value=_field("fetched_at")),
    Column("trip_id", "text", indexed=True, value=_field("trip_id")),
    Column("subject", "text", "NOT NULL", value=_field("subject")),
    Column("login_id", "text", value=_field("login_id")),
    Column("event", "jsonb", "NOT NULL", value=lambda _event, document: document),
    Column("stored_at", "timestamptz", "NOT NULL DEFAULT now()"),
)


class Table:
    """``name`` or ``schema.name`` (validated by ``parse_table``) and its statements."""

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.parts = parts
        self.qualified = ".".join(parts)
        self._identifier = sql.Identifier(*parts)
        self._inserted = tuple(column for column in COLUMNS if column.value is not None)
        self.insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING").format(
            self._identifier,
            sql.SQL(", ").join(sql.Identifier(column.name) for column in self._inserted),
            sql.SQL(", ").join(sql.SQL("%s::" + column.type) for column in self._inserted),
        )

    def row(self, event: Event, document: str) -> tuple[object, ...]:
        """The INSERT's parameters."""
        return tuple(column.value(event, document) for column in self._inserted if column.value)

    def schema(self) -> sql.Composed:
        """Create the table and its indexes if missing, and check an existing table has every column:
        one script (no parameters, so several statements go in one execute), run as one transaction."""
        digest = hashlib.sha256(f"concur_postback:{self.qualified}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        table = self._identifier
        definitions = sql.SQL(", ").join(
            sql.SQL("{} " + f"{column.type} {column.constraint}".strip()).format(sql.Identifier(column.name))
            for column in COLUMNS
        )
        statements: list[sql.Composable] = [
            # Concurrent CREATE ... IF NOT EXISTS can collide (several workers starting at once): queue them.
            sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(key)),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, definitions),
        ]
        statements += [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(index_name(self.parts[-1], column.name)), table, sql.Identifier(column.name)
            )
            for column in COLUMNS
            if column.indexed
        ]
        names = sql.SQL(", ").join(sql.Identifier(column.name) for column in COLUMNS)
        statements.append(sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, table))
        return sql.SQL("; ").join(statements)


def parse_table(value: str) -> tuple[str, ...]:
    """``name`` or ``schema.name``: letters, digits, underscores, not starting with a digit; lower-cased."""
    parts = tuple(value.lower().split("."))
    valid = len(parts) <= 2 and all(_IDENTIFIER.fullmatch(p) and len(p) <= MAX_IDENTIFIER for p in parts)
    if not valid or not value.isascii():
        raise ConfigurationError(
            f"postgres sink: invalid table={value!r}: use letters, digits and underscores (not first),"
            f" at most {MAX_IDENTIFIER} characters, optionally as schema.table"
        )
    return parts


def index_name(table: str, column: str) -> str:
    name = f"{table}_{column}_idx"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]  # distinct long tables, distinct index names
    suffix = f"_{digest}_{column}_idx"
    return table[: MAX_IDENTIFIER - len(suffix)] + suffix
