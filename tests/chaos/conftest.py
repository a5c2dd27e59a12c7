"""Fixtures of the runs with real processes: the PostgreSQL tables their sinks write to."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.chaos.harness import Rows
from tests.sinks.test_postgres import server_url  # noqa: F401 - fixture


@pytest.fixture
def tables(server_url: str) -> Iterator[tuple[list[str], Callable[[str], Rows]]]:  # noqa: F811
    names = [f"chaos_{secrets.token_hex(4)}_{n}" for n in (1, 2)]

    def reader(table: str) -> Rows:
        def rows() -> list[dict[str, Any]]:
            with psycopg.connect(server_url) as conn:
                exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
                if exists is None or exists[0] is None:
                    return []
                query = sql.SQL("SELECT id, kind, trip_id, login_id, event::text AS event FROM {}").format(
                    sql.Identifier(table)
                )
                cursor = conn.execute(query)
                names_ = [column.name for column in cursor.description or []]
                return [dict(zip(names_, row, strict=True)) for row in cursor.fetchall()]

        return rows

    yield names, reader
    with psycopg.connect(server_url, autocommit=True) as conn:
        for table in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
