"""The PostgreSQL sink against a real server: schema, rows, idempotence, `table=`, failures, secrets.

The server is TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test. Each test writes to
its own table (dropped afterwards). Without a server the tests are skipped — under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from concur_postback.embedded import free_port
from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event
from concur_postback.sinks import postgres
from concur_postback.sinks.postgres import PostgresSink, lasting_refusal
from concur_postback.sinks.postgres_table import DEFAULT_TABLE, parse_table
from tests.conftest import CapturedLogs, sample_event

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "s3cret-Pa55word"  # trust auth ignores it; the tests hunt for it in names and messages

Admin = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")


# --- server, tables, URLs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_URL
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        parts = urlsplit(url)
        where = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl()  # no password
        reason = f"no PostgreSQL server at {where}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        print(reason)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture
def admin(server_url: str) -> Iterator[Admin]:
    with psycopg.connect(server_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def table(admin: Admin) -> Iterator[str]:
    name = f"concur_events_{secrets.token_hex(6)}"
    yield name
    admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def schema(admin: Admin) -> Iterator[str]:
    name = f"cp_test_{secrets.token_hex(6)}"
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def app_name() -> str:
    """A unique application_name: finds the sink's own backend in pg_stat_activity."""
    return f"cp-test-{secrets.token_hex(6)}"


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())
    return urlunsplit(parts._replace(query="&".join(q for q in (parts.query, extra) if q)))


def with_password(url: str, password: str = PASSWORD) -> str:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hosts}"))


def make_event(n: int = 0, trip_id: str | None = "TRIP-1", kind: str = "itinerary") -> Event:
    return sample_event(
        n,
        trip_id,
        kind,
        data={"n": n, "segments": [{"type": "Air", "from": "ZRH", "to": "JFK"}], "note": "é ✈"},
    )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def deliver_all(sink: PostgresSink, events: list[Event], *, close: bool = True) -> None:
    async def go() -> None:
        try:
            for event in events:
                await sink.deliver(event, event.to_json())
        finally:
            if close:
                await sink.aclose()

    run(go())


def rows(admin: Admin, table: str, schema: str | None = None) -> list[dict[str, Any]]:
    name = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    return admin.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(name)).fetchall()


def table_exists(admin: Admin, qualified: str) -> bool:
    return admin.execute("SELECT to_regclass(%s) IS NOT NULL AS found", (qualified,)).fetchone() == {
        "found": True
    }


def backends(admin: Admin, app_name: str) -> list[int]:
    found = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,))
    return [row["pid"] for row in found.fetchall()]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- schema -------------------------------------------------------------------------------------


def test_start_up_creates_table_and_indexes(server_url: str, admin: Admin, table: str) -> None:
    assert not table_exists(admin, table)
    PostgresSink.from_url(with_query(server_url, table=table))

    columns = admin.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    assert [(c["column_name"], c["data_type"], c["is_nullable"]) for c in columns] == [
        ("id", "text", "NO"),
        ("kind", "text", "NO"),
        ("event_type", "text", "NO"),
        ("received_at", "timestamp with time zone", "NO"),
        ("fetched_at", "timestamp with time zone", "YES"),
        ("trip_id", "text", "YES"),
        ("subject", "text", "NO"),
        ("login_id", "text", "YES"),
        ("event", "jsonb", "NO"),
        ("stored_at", "timestamp with time zone", "NO"),
    ]
    primary = admin.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    ).fetchall()
    assert primary == [{"attname": "id"}]
    indexes = admin.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,)).fetchall()
    definitions = " ".join(row["indexdef"] for row in indexes)
    for column in ("kind", "trip_id", "received_at"):
        assert f"({column})" in definitions


def test_start_up_is_idempotent_and_keeps_rows(server_url: str, admin: Admin, table: str) -> None:
    url = with_query(server_url, table=table)
    deliver_all(PostgresSink.from_url(url), [make_event(1)])
    PostgresSink.from_url(url)  # a second worker, or a restart
    assert [row["id"] for row in rows(admin, table)] == [make_event(1).id]


def test_workers_starting_together_create_the_table_once(server_url: str, admin: Admin, table: str) -> None:
    url = with_query(server_url, table=table)
    with ThreadPoolExecutor(8) as pool:
        sinks = list(pool.map(lambda _: PostgresSink.from_url(url), range(8)))
    assert len(sinks) == 8
    assert table_exists(admin, table)


def test_without_start_up_check_the_first_delivery_creates_the_table(
    server_url: str, admin: Admin, table: str
) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=table), check=False)
    assert not table_exists(admin, table)
    deliver_all(sink, [make_event(1)])
    assert len(rows(admin, table)) == 1


def test_existing_table_with_other_columns_is_refused_at_start_up(
    server_url: str, admin: Admin, table: str
) -> None:
    admin.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, body jsonb)").format(sql.Identifier(table)))
    with pytest.raises(ConfigurationError, match="exists with other columns"):
        PostgresSink.from_url(with_query(server_url, table=table))


# --- rows ---------------------------------------------------------------------------------------


def test_event_is_stored_with_its_columns_and_as_jsonb(server_url: str, admin: Admin, table: str) -> None:
    event = make_event(7)
    before = datetime.now(UTC)
    deliver_all(PostgresSink.from_url(with_query(server_url, table=table)), [event])

    (row,) = rows(admin, table)
    stored_at = row.pop("stored_at")
    assert row == {
        "id": event.id,
        "kind": "itinerary",
        "event_type": "UPDATE",
        "received_at": datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC),
        "fetched_at": datetime(2026, 11, 22, 10, 0, 1, tzinfo=UTC),
        "trip_id": "TRIP-1",
        "subject": "login:traveller@example.com",
        "login_id": "traveller@example.com",
        "event": orjson.loads(event.to_json()),
    }
    assert row["event"]["data"]["segments"][0]["to"] == "JFK"
    assert row["event"]["data"]["note"] == "é ✈"
    assert abs(stored_at - before) < timedelta(minutes=5)  # the server's clock: now() at insert
    # the jsonb column is queryable as such
    found = admin.execute(
        sql.SQL("SELECT event->'data'->>'n' AS n FROM {} WHERE event @> %s::jsonb").format(
            sql.Identifier(table)
        ),
        ('{"kind": "itinerary"}',),
    ).fetchall()
    assert found == [{"n": "7"}]


def test_null_columns_stay_null(server_url: str, admin: Admin, table: str) -> None:
    event = replace(make_event(3, trip_id=None, kind="profile"), fetched_at=None, login_id=None, data=None)
    deliver_all(PostgresSink.from_url(with_query(server_url, table=table)), [event])
    (row,) = rows(admin, table)
    assert (row["kind"], row["trip_id"], row["fetched_at"], row["login_id"]) == ("profile", None, None, None)
    assert row["event"]["data"] is None


def test_redelivered_event_changes_nothing(server_url: str, admin: Admin, table: str) -> None:
    url = with_query(server_url, table=table)
    event = make_event(1)
    deliver_all(PostgresSink.from_url(url), [event])
    (first,) = rows(admin, table)

    # the same event again, from the same sink and from another worker's sink; even a payload that
    # differs (a later fetch of the same change) is not written: the same id is the same change
    later = replace(event, fetched_at="2026-11-22T11:00:00.000Z", data={"n": 999})
    deliver_all(PostgresSink.from_url(url), [event, event, later])

    assert rows(admin, table) == [first]


def test_two_events_make_two_rows(server_url: str, admin: Admin, table: str) -> None:
    trip, profile = make_event(1), make_event(2, trip_id=None, kind="profile")
    deliver_all(PostgresSink.from_url(with_query(server_url, table=table)), [trip, profile])
    stored = rows(admin, table)
    assert [(row["id"], row["kind"]) for row in stored] == [(trip.id, "itinerary"), (profile.id, "profile")]


@pytest.mark.parametrize("pool_size", [1, 3])
def test_concurrent_deliveries_share_a_pool_of_at_most_pool_size_connections(
    server_url: str, admin: Admin, table: str, app_name: str, pool_size: int
) -> None:
    sink = PostgresSink.from_url(
        with_query(server_url, table=table, application_name=app_name, pool_size=str(pool_size))
    )
    events = [make_event(n % 30) for n in range(60)]  # every event twice, concurrently
    seen: set[int] = set()

    async def go() -> None:
        try:
            for _ in range(3):
                await asyncio.gather(*(sink.deliver(event, event.to_json()) for event in events))
                seen.update(backends(admin, app_name))
        finally:
            await sink.aclose()

    run(go())
    assert len(rows(admin, table)) == 30
    assert 1 <= len(seen) <= pool_size
    if pool_size > 1:
        assert len(seen) > 1  # a batch does not wait on one connection
    wait_for(lambda: backends(admin, app_name) == [])  # aclose closed them


def test_default_pool_size_and_bad_pool_sizes_are_refused(server_url: str) -> None:
    assert PostgresSink.from_url(server_url, check=False).pool_size == 4
    for bad in ("0", "-1", "x", "1.5", "101", "\u0663"):
        with pytest.raises(ConfigurationError, match="pool_size"):
            PostgresSink.from_url(with_query(server_url, pool_size=bad), check=False)
    with pytest.raises(ConfigurationError, match="at most once"):
        PostgresSink.from_url(f"{server_url}?pool_size=2&pool_size=3", check=False)


def test_a_new_event_loop_gets_a_new_pool(server_url: str, admin: Admin, table: str, app_name: str) -> None:
    """asyncio.run per call: the pool of a finished loop is not reused; its connections are let go."""
    sink = PostgresSink.from_url(with_query(server_url, table=table, application_name=app_name))
    deliver_all(sink, [make_event(1)], close=False)
    first = set(backends(admin, app_name))
    deliver_all(sink, [make_event(2)], close=False)
    gc.collect()
    wait_for(lambda: not first & set(backends(admin, app_name)))
    deliver_all(sink, [make_event(3)])
    assert len(rows(admin, table)) == 3
    wait_for(lambda: backends(admin, app_name) == [])


# --- table= -------------------------------------------------------------------------------------


def test_table_parameter_is_honoured_and_stripped_before_connecting(
    server_url: str, admin: Admin, table: str, app_name: str
) -> None:
    # libpq refuses unknown URL parameters, so connecting at all shows `table` was removed; the
    # other parameters still reach libpq (application_name shows up in pg_stat_activity)
    sink = PostgresSink.from_url(with_query(server_url, application_name=app_name, table=table))
    assert sink.table == (table,)
    assert sink.name.endswith(f"?application_name={app_name}&table={table}")

    async def go() -> None:
        try:
            await sink.deliver(make_event(1), make_event(1).to_json())
            assert len(backends(admin, app_name)) == 1
        finally:
            await sink.aclose()

    run(go())
    assert len(rows(admin, table)) == 1


def test_table_in_a_schema(server_url: str, admin: Admin, schema: str) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=f"{schema}.events"))
    assert sink.table == (schema, "events")
    deliver_all(sink, [make_event(1)])
    assert len(rows(admin, "events", schema)) == 1


def test_table_name_is_folded_to_lower_case_like_unquoted_sql(
    server_url: str, admin: Admin, table: str
) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=table.upper()))
    assert sink.table == (table,)
    deliver_all(sink, [make_event(1)])
    assert len(rows(admin, table)) == 1


def test_long_table_name_gets_distinct_index_names(server_url: str, admin: Admin) -> None:
    name = "t" * 50 + secrets.token_hex(6)  # 62 characters: "<name>_received_at_idx" would be cut
    try:
        PostgresSink.from_url(with_query(server_url, table=name))
        indexes = admin.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (name,)).fetchall()
        assert len({row["indexname"] for row in indexes}) == 4  # primary key + 3
    finally:
        admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def test_default_table() -> None:
    sink = PostgresSink.from_url("postgresql://db.example.com/concur", check=False)
    assert sink.table == (DEFAULT_TABLE,) == ("concur_events",)
    assert sink.name == "postgresql://db.example.com/concur?table=concur_events"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a-b",
        "a b",
        "events;DROP TABLE x",
        'ev"ents',
        "ev'ents",
        "1events",
        "a.b.c",
        ".events",
        "events.",
        "x" * 64,
        "tåble",
        "events%00",
        "pg_catalog.pg_class(",
    ],
)
def test_bad_table_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid table="):
        PostgresSink.from_url(f"postgresql://postgres@127.0.0.1:5432/test?table={quote(name, safe='')}")


def test_table_given_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at most once"):
        PostgresSink.from_url("postgresql://postgres@127.0.0.1/test?table=a&table=b", check=False)


@given(st.text(max_size=80))
def test_table_names_are_either_safe_identifiers_or_refused(value: str) -> None:
    try:
        parts = parse_table(value)
    except ConfigurationError:
        return
    assert 1 <= len(parts) <= 2
    for part in parts:
        assert 1 <= len(part) <= 63
        assert part[0].isalpha() or part[0] == "_"
        assert set(part) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")


# --- configuration errors -----------------------------------------------------------------------


def test_unreachable_server_is_only_logged_at_start_up(captured_logs: CapturedLogs) -> None:
    """A worker restarted during a database outage starts; its deliveries wait and retry."""
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/test?table=events"
    sink = PostgresSink.from_url(url)
    (warning,) = captured_logs.named("sink.unreachable_at_start")
    assert "OperationalError" in warning["reason"]
    assert "127.0.0.1" in warning["reason"]
    assert PASSWORD not in captured_logs.text
    with pytest.raises(SinkError) as caught:
        run(sink.deliver(make_event(1), make_event(1).to_json()))
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ('FATAL:  database "nosuch" does not exist', True),
        ('FATAL:  role "nosuch" does not exist', True),
        ('FATAL:  password authentication failed for user "app"', True),
        ("FATAL:  sorry, too many clients already", False),
        ("FATAL:  the database system is starting up", False),
        ("FATAL:  the database system is shutting down", False),
        ("FATAL:  the database system is in recovery mode", False),
        ("Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?", False),
        ('could not translate host name "db" to address: Name or service not known', False),
    ],
)
def test_only_a_lasting_refusal_stops_start_up(message: str, refused: bool) -> None:
    """A database restarting or full when a worker starts is an outage to wait out, not a typo."""
    assert (
        lasting_refusal(
            f'connection failed: connection to server at "127.0.0.1", port 5432 failed: {message}'
        )
        is refused
    )


def test_a_server_that_refuses_the_connection_is_refused_at_start_up(server_url: str) -> None:
    parts = urlsplit(server_url)
    url = urlunsplit(parts._replace(path="/no_such_database_here", query="table=events"))
    with pytest.raises(ConfigurationError) as caught:
        PostgresSink.from_url(url)
    message = str(caught.value)
    assert "cannot connect" in message
    assert "no_such_database_here" in message
    assert "\n" not in message


def test_other_scheme_and_bad_libpq_parameters_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresSink.from_url("mysql://user@host/db", check=False)
    with pytest.raises(ConfigurationError, match="invalid URL") as caught:
        PostgresSink.from_url(f"postgresql://u:{PASSWORD}@host/db?no_such_option=1", check=False)
    assert PASSWORD not in str(caught.value)


def test_postgres_scheme_is_accepted(server_url: str, admin: Admin, table: str) -> None:
    url = with_query(server_url, table=table).replace("postgresql://", "postgres://", 1)
    assert url.startswith("postgres://")
    deliver_all(PostgresSink.from_url(url), [make_event(1)])
    assert len(rows(admin, table)) == 1


# --- secrets ------------------------------------------------------------------------------------


def test_name_hides_the_password() -> None:
    sink = PostgresSink.from_url(
        f"postgresql://concur:{quote(PASSWORD, safe='')}@db.example.com:5432/travel?sslmode=require&table=ev",
        check=False,
    )
    assert sink.name == "postgresql://concur:****@db.example.com:5432/travel?sslmode=require&table=ev"
    assert PASSWORD not in repr(sink)

    in_query = PostgresSink.from_url(f"postgres://db.example.com/travel?password={PASSWORD}", check=False)
    assert in_query.name == "postgresql://db.example.com/travel?password=****&table=concur_events"


def test_failures_never_show_the_password(server_url: str, admin: Admin, table: str) -> None:
    sink = PostgresSink.from_url(with_query(with_password(server_url), table=table))
    assert PASSWORD not in sink.name
    bad = replace(make_event(1), received_at="not a time")
    with pytest.raises(SinkError) as caught:
        deliver_all(sink, [bad])
    assert PASSWORD not in str(caught.value)
    assert bad.id in str(caught.value)


# --- delivery failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"received_at": "not a time"}, "timestamp"),
        ({"subject": "login:a\x00b"}, "NUL"),
        ({"data": {"text": "a\x00b"}}, "Unicode"),  # jsonb refuses \u0000
    ],
    ids=["timestamp", "nul-in-text", "nul-in-jsonb"],
)
def test_data_the_table_cannot_take_is_a_permanent_failure(
    server_url: str, admin: Admin, table: str, change: dict[str, Any], expected: str
) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=table))
    bad, good = replace(make_event(1), **change), make_event(2)

    async def go() -> None:
        try:
            with pytest.raises(SinkError, match=expected) as caught:
                await sink.deliver(bad, bad.to_json())
            assert caught.value.permanent
            assert isinstance(caught.value.__cause__, psycopg.DataError)
            assert "CONTEXT" not in str(caught.value)  # could quote the statement
            await sink.deliver(good, good.to_json())  # the connection is still usable
        finally:
            await sink.aclose()

    run(go())
    assert [row["id"] for row in rows(admin, table)] == [good.id]


def test_payload_that_is_not_json_is_a_permanent_failure(server_url: str, table: str) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=table))
    for payload in (b"{not json", b"\xff\xfe"):
        with pytest.raises(SinkError) as caught:
            run(sink.deliver(make_event(1), payload))
        assert caught.value.permanent


def test_server_unreachable_after_start_up_is_a_retryable_failure() -> None:
    sink = PostgresSink.from_url(
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/test?table=events", check=False
    )
    with pytest.raises(SinkError) as caught:
        run(sink.deliver(make_event(1), make_event(1).to_json()))
    assert not caught.value.permanent
    assert "cannot connect" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_connection_killed_server_side_is_replaced_and_the_delivery_succeeds(
    server_url: str, admin: Admin, table: str, app_name: str, captured_logs: CapturedLogs
) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=table, application_name=app_name))

    async def go() -> None:
        try:
            await sink.deliver(make_event(1), make_event(1).to_json())
            (pid,) = backends(admin, app_name)
            assert admin.execute("SELECT pg_terminate_backend(%s) AS done", (pid,)).fetchone() == {
                "done": True
            }
            wait_for(lambda: backends(admin, app_name) == [])

            await sink.deliver(make_event(2), make_event(2).to_json())  # reconnects, retries once

            now = backends(admin, app_name)
            assert now
            assert pid not in now
        finally:
            await sink.aclose()

    run(go())
    assert len(rows(admin, table)) == 2
    (retry,) = captured_logs.named("sink.postgres.retry")
    assert retry["event_id"] == make_event(2).id
    assert "57P01" in retry["reason"] or "OperationalError" in retry["reason"]


def test_every_connection_killed_at_once_costs_each_delivery_at_most_one_retry(
    server_url: str, admin: Admin, table: str, app_name: str, captured_logs: CapturedLogs
) -> None:
    """As a server restart does: the idle connections are all broken, and the first failure has the
    pool test them, so no delivery of the next batch fails."""
    sink = PostgresSink.from_url(with_query(server_url, table=table, application_name=app_name))
    first, second = [make_event(n) for n in range(40)], [make_event(n) for n in range(40, 80)]

    async def go() -> None:
        try:
            await asyncio.gather(*(sink.deliver(event, event.to_json()) for event in first))
            killed = backends(admin, app_name)
            assert len(killed) > 1
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (killed,))
            wait_for(lambda: not set(killed) & set(backends(admin, app_name)))
            await asyncio.gather(*(sink.deliver(event, event.to_json()) for event in second))
        finally:
            await sink.aclose()

    run(go())
    assert len(rows(admin, table)) == 80
    retried = [line["event_id"] for line in captured_logs.named("sink.postgres.retry")]
    assert retried
    assert len(retried) == len(set(retried))


def test_table_dropped_while_running_is_created_again(server_url: str, admin: Admin, table: str) -> None:
    sink = PostgresSink.from_url(with_query(server_url, table=table))

    async def go() -> None:
        try:
            await sink.deliver(make_event(1), make_event(1).to_json())
            admin.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
            await sink.deliver(make_event(2), make_event(2).to_json())
        finally:
            await sink.aclose()

    run(go())
    assert [row["id"] for row in rows(admin, table)] == [make_event(2).id]


class Proxy:
    """A TCP proxy to the server that the test can cut (every connection) and restore."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            self._listener.close()
            self._listener = None
        for sock in self._sockets:
            self._shut(sock)
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if isinstance(self.target, str):
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(self.target)
            else:
                upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(sink)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(admin: Admin) -> Iterator[Proxy]:
    host, port = admin.info.host, admin.info.port
    target: tuple[str, int] | str = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    running = Proxy(target)
    running.start()
    yield running
    running.stop()


def proxied_sink(admin: Admin, table: str, proxy: Proxy) -> PostgresSink:
    info = admin.info
    netloc = f"{quote(info.user, safe='')}:{quote(PASSWORD, safe='')}@127.0.0.1:{proxy.port}"
    return PostgresSink.from_url(f"postgresql://{netloc}/{quote(info.dbname, safe='')}?table={table}")


def test_connection_lost_and_server_still_unreachable_is_retryable_then_recovers(
    admin: Admin, table: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "RECHECK_SECONDS", 0.0)  # every delivery asks the server again
    sink = proxied_sink(admin, table, proxy)

    async def go() -> None:
        try:
            await sink.deliver(make_event(1), make_event(1).to_json())
            proxy.stop()  # the connection dies and no new one can be made

            for _ in range(2):  # the pool's wait, then (pool dropped) our own attempt
                with pytest.raises(SinkError) as caught:
                    await sink.deliver(make_event(2), make_event(2).to_json())
                assert not caught.value.permanent
                assert "cannot connect" in str(caught.value)
                assert "Connection refused" in str(caught.value)
                assert PASSWORD not in str(caught.value)

            proxy.start()  # the next attempt (the worker's retry) succeeds on a new pool
            await sink.deliver(make_event(2), make_event(2).to_json())
        finally:
            await sink.aclose()

    run(go())
    assert [row["id"] for row in rows(admin, table)] == [make_event(1).id, make_event(2).id]


def test_while_unreachable_one_attempt_answers_for_a_whole_batch(
    admin: Admin, table: str, proxy: Proxy
) -> None:
    """A batch of deliveries during an outage fails at once, each with the reason of one attempt,
    instead of each waiting connect_timeout for a pool that cannot connect."""
    sink = proxied_sink(admin, table, proxy)
    attempts = 0
    connect = psycopg.AsyncConnection.connect

    async def counted(*args: Any, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        nonlocal attempts
        attempts += 1
        return await connect(*args, **kwargs)

    async def go() -> list[BaseException | None]:
        try:
            await sink.deliver(make_event(0), make_event(0).to_json())
            proxy.stop()
            with pytest.raises(SinkError):  # finds the server gone: the pool is dropped
                await sink.deliver(make_event(1), make_event(1).to_json())
            nonlocal attempts
            attempts = 0
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(psycopg.AsyncConnection, "connect", counted)
                batch = [make_event(n) for n in range(2, 42)]
                return await asyncio.gather(
                    *(sink.deliver(event, event.to_json()) for event in batch), return_exceptions=True
                )
        finally:
            await sink.aclose()

    outcomes = run(go())
    assert all(isinstance(outcome, SinkError) and not outcome.permanent for outcome in outcomes)
    assert attempts <= 1
