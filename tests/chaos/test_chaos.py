"""The chaos run: real processes, real Redis with AOF, real PostgreSQL, and a bad day for each of them.

1,000 distinct notifications (all three kinds, user and company, 100 of them sent three times) are
posted at 30/s while: a worker is SIGKILLed mid-job (twice), Redis is SIGKILLed and restarted, Concur
answers 429, 503 and then hangs past the read timeout, the PostgreSQL sink is unreachable for 60 s,
and the web tier gets SIGTERM under load and is restarted. Then every acknowledged notification
must be in PostgreSQL exactly once, abandoned jobs must have been re-queued within 60 s, `status`
must show nothing left, and no token or card number may appear in any log line, Redis value, AOF
file or sink row. The timeline and figures are printed.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg
import pytest
from psycopg import sql
from redis import Redis
from redis.exceptions import RedisError

from concur_postback.connections import sync_client
from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.tokens import generate_key
from tests.chaos.harness import (
    Sent,
    Shot,
    TcpProxy,
    Timeline,
    files_contents,
    leaks,
    redis_contents,
    send_in_background,
    started_entries,
    still_started,
)
from tests.processes import Process, clean_env, cli
from tests.sinks.test_postgres import server_url  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

DISTINCT = 1000
DUPLICATED = 100  # sent three times each
RATE = 30.0  # postbacks per second
SINK_DOWN_SECONDS = 60
RECOVERY_LIMIT_SECONDS = 60
QUEUE = "concur-postback"
ADMIN_TOKEN = "chaos-admin-" + secrets.token_hex(16)
CARD_NUMBERS = ("378282246310005", "4111111111111111")  # what the simulated Concur serves in FOP
KINDS = ("itinerary",) * 4 + ("profile",) * 3 + ("fop",) * 3
TYPES = {"itinerary": "Itinerary", "profile": "Profile", "fop": "FOP"}
EVENTS = ("CREATE", "UPDATE", "CANCEL")


def plan(simulator_url: str) -> tuple[list[Shot], list[str]]:
    """The shots in posting order (copies a few places after their original), and the tokens."""
    shots, tokens = [], [ADMIN_TOKEN]
    for n in range(DISTINCT):
        kind = KINDS[n % len(KINDS)]
        params = {"type": TYPES[kind]}
        if n % 5 == 0:  # a company notification: an administrator's token names the traveller
            login = f"chaos{n:04d}@example.com"
            params |= {"oauth_token_key": ADMIN_TOKEN, "userid_type": "login", "userid_value": login}
        else:
            token = secrets.token_hex(16) + f"{n:06d}"
            tokens.append(token)
            login = f"traveller-{token[-6:]}@example.com"  # the simulator's login for a user token
            params["oauth_token_key"] = token
        body = b""
        if kind == "itinerary":
            trip = f"CHAOS{n:04d}"
            body = (
                f"<Notification><ObjectType>ITINERARY</ObjectType>"
                f"<ObjectURI>{simulator_url}/api/travel/trip/v1.1/{trip}</ObjectURI>"
                f"<EventDateTime>2026-11-22T10:{n // 60 % 60:02d}:{n % 60:02d}</EventDateTime>"
                f"<EventType>{EVENTS[n % 3]}</EventType><Context/><TripId>{trip}</TripId></Notification>"
            ).encode()
            key = f"itinerary:{trip}"
        else:
            key = f"{kind}:{login}"
        shots.append(Shot(key, params, body))
    rng = random.Random(6)
    for original in sorted(rng.sample(range(DISTINCT), DUPLICATED), reverse=True):
        for _ in range(2):
            shots.insert(min(len(shots), original + rng.randint(1, 40)), shots[original])
    return shots, tokens


class Cluster:
    """The processes of one deployment, started and broken on request."""

    def __init__(self, env: dict[str, str], web_port: int) -> None:
        self.env = env
        self.web_port = web_port
        self.retired: list[Process] = []
        self.web = self._serve()
        self.workers = [self._worker() for _ in range(2)]

    def _serve(self) -> Process:
        web = Process(["serve", "--host", "127.0.0.1", "--port", str(self.web_port)], self.env)
        web.wait_for("Uvicorn running on", prefix=True)
        return web

    def _worker(self) -> Process:
        worker = Process(["worker"], self.env)
        worker.wait_for("*** Listening on", prefix=True)
        return worker

    def restart_web(self) -> None:
        """SIGTERM: uvicorn stops accepting, finishes what it has, the committer flushes; then anew."""
        self.web.stop()
        self.retired.append(self.web)
        self.web = self._serve()

    def kill_worker_mid_job(self, index: int, redis: Redis) -> tuple[list[str], float]:
        """SIGKILL worker ``index`` while it runs a job and start a replacement; return the abandoned
        entries and when the kill happened."""
        worker = self.workers[index]
        deadline = time.monotonic() + 30
        while not (entries := started_entries(redis, QUEUE, worker.popen.pid)):
            assert time.monotonic() < deadline, "the worker never ran a job"
            time.sleep(0.01)  # polling RQ's registry: no event to await from another process
        worker.kill()
        killed_at = time.monotonic()
        self.retired.append(worker)
        self.workers[index] = self._worker()
        return entries, killed_at

    def all(self) -> list[Process]:
        return [*self.retired, self.web, *self.workers]

    def stop(self) -> None:
        for process in (self.web, *self.workers):
            if process.popen.poll() is None:
                process.stop()


def watch_recovery(
    redis_url: str, entries: list[str], killed_at: float, out: list[float]
) -> threading.Thread:
    """Record how long each abandoned entry stays in RQ's started registry after the kill."""

    def watch() -> None:
        redis = sync_client(redis_url, connect_timeout=2)
        waiting = set(entries)
        while waiting and time.monotonic() - killed_at < 180:
            for entry in list(waiting):
                try:
                    if not still_started(redis, QUEUE, entry):
                        waiting.discard(entry)
                        out.append(time.monotonic() - killed_at)
                except RedisError:
                    pass  # Redis restarting
            time.sleep(0.1)
        out.extend(float("inf") for _ in waiting)

    thread = threading.Thread(target=watch, name="recovery", daemon=True)
    thread.start()
    return thread


@pytest.fixture
def chaos_table(server_url: str) -> Iterator[tuple[str, Callable[[], list[dict[str, Any]]]]]:  # noqa: F811
    table = f"chaos_{secrets.token_hex(4)}"

    def rows() -> list[dict[str, Any]]:
        with psycopg.connect(server_url) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if exists is None or exists[0] is None:
                return []
            query = sql.SQL("SELECT kind, trip_id, login_id, event::text AS event FROM {}").format(
                sql.Identifier(table)
            )
            cursor = conn.execute(query)
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    yield table, rows
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def row_key(row: dict[str, Any]) -> str:
    return f"itinerary:{row['trip_id']}" if row["kind"] == "itinerary" else f"{row['kind']}:{row['login_id']}"


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)  # polling PostgreSQL and Redis: the run's end is not an event we can await
    return True


def test_nothing_is_lost_duplicated_or_leaked_through_a_bad_day(
    tmp_path: Path,
    server_url: str,  # noqa: F811
    chaos_table: tuple[str, Callable[[], list[dict[str, Any]]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, rows = chaos_table
    redis_server = EmbeddedRedis(tmp_path / "redis", appendfsync="everysec").start()
    database = urlsplit(server_url)
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432)
    proxy.up()
    user = database.netloc.rpartition("@")[0]
    sink = database._replace(netloc=f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}")
    sim_port = free_port()
    simulator_url = f"http://127.0.0.1:{sim_port}"
    env = clean_env(
        REDIS_URL=redis_server.url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        CONCUR_BASE_URL=simulator_url,
        CONCUR_ALLOWED_HOSTS="",
        SINKS=f"{sink.geturl()}?table={table}&connect_timeout=2",
        CONCUR_READ_TIMEOUT_SECONDS="3",
        SINK_ATTEMPTS="30",
        SINK_BACKOFF_MAX_SECONDS="10",
    )
    simulator = Process(["simulate", "--port", str(sim_port), "--latency-ms", "100"], env)
    simulator.wait_for("Uvicorn running on", prefix=True)
    web_port = free_port()
    cluster = Cluster(env, web_port)
    redis = sync_client(redis_server.url, connect_timeout=2)
    shots, tokens = plan(simulator_url)
    expected = {shot.key for shot in shots}
    timeline = Timeline()
    recoveries: list[float] = []
    watchers = []
    try:
        timeline.mark(f"posting {len(shots)} postbacks ({DISTINCT} distinct) at {RATE:.0f}/s")
        sender, result = send_in_background(f"http://127.0.0.1:{web_port}/postback", shots, RATE)

        def at(second: float) -> None:
            if (wait := second - timeline.now()) > 0:
                time.sleep(wait)  # the script's schedule, not synchronisation

        def kill_worker(index: int) -> None:
            entries, killed_at = cluster.kill_worker_mid_job(index, redis)
            watchers.append(watch_recovery(redis_server.url, entries, killed_at, recoveries))
            timeline.mark(
                f"SIGKILL worker {index + 1} mid-job ({len(entries)} job(s) abandoned); replacement started"
            )

        at(3)
        kill_worker(0)

        at(6)
        with httpx.Client(base_url=simulator_url) as client:
            for fault in (
                {"match": "/api/", "status": 429, "times": 40, "retry_after": "1"},
                {"match": "/api/", "status": 503, "times": 40},
                {"match": "/api/", "status": 0, "delay_ms": 8000, "times": 10},  # past the 3 s read timeout
            ):
                client.post("/_simulator/faults", json=fault).raise_for_status()
        timeline.mark("Concur answers 40 x 429, then 40 x 503, then hangs 10 times")

        at(10)
        redis_server.kill()
        timeline.mark("SIGKILL Redis")
        redis_server.start()
        timeline.mark("Redis restarted from its AOF")

        at(15)
        timeline.mark("SIGTERM web tier under load")
        cluster.restart_web()
        timeline.mark("web tier restarted")

        at(20)
        proxy.down()
        sink_down = timeline.mark(f"PostgreSQL sink unreachable for {SINK_DOWN_SECONDS} s")

        at(24)
        kill_worker(1)

        at(50)
        outage = current_status(env)
        retrying = sum(counts["retrying"] for counts in outage["sinks"].values())
        timeline.mark(
            f"status during the outage: {outage['pending']} pending, {retrying} sink deliveries retrying"
        )

        at(sink_down + SINK_DOWN_SECONDS)
        proxy.up()
        timeline.mark("PostgreSQL sink reachable again")

        sender.join()
        sent: Sent = result[0]
        timeline.mark(f"sender done: {len(sent.acknowledged)} distinct acknowledged", at=sent.seconds)
        if wait_until(lambda: len(rows()) >= len(expected), 180):
            timeline.mark(f"all {len(expected)} notifications in PostgreSQL")
        if wait_until(lambda: not pending_work(current_status(env)), 60):
            timeline.mark("status: nothing pending, queued, running, failed or retrying")
        for watcher in watchers:
            watcher.join()
        running = (cluster.web, *cluster.workers)
        unexpected_exits = [p.popen.args for p in running if p.popen.poll() is not None]
    finally:
        cluster.stop()
        simulator.stop()
        proxy.close()

    stored = rows()
    keys = Counter(row_key(row) for row in stored)
    status = current_status(env)
    outputs = {f"{p.popen.args[3]}-{p.popen.pid}": p.output for p in cluster.all()}
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, text in outputs.items():
        (logs / f"{name}.log").write_text(text)
    secrets_ = [token[:-4] for token in tokens] + list(CARD_NUMBERS)  # the last four may show
    found = [
        *(leak for name, text in outputs.items() for leak in leaks(f"log of {name}", text, secrets_)),
        *leaks("Redis", redis_contents(redis), secrets_),
        *leaks("Redis data directory (AOF)", files_contents(redis_server.data_dir), secrets_),
        *leaks("PostgreSQL rows", "\n".join(map(str, stored)), secrets_),
    ]
    redis.close()
    redis_server.stop()

    with capsys.disabled():
        print("\n\nchaos run timeline\n" + timeline.render())
        print(f"\n  answers to the sender: {dict(sent.answers)}")
        print(f"  abandoned jobs re-queued after: {', '.join(f'{s:.1f} s' for s in sorted(recoveries))}")
        print(
            f"  rows in PostgreSQL: {len(stored)} ({len(keys)} distinct); left over: {pending_work(status)}"
        )
        print(f"  logs of every process: {logs}")

    assert not unexpected_exits, f"a process died on its own: {unexpected_exits}"
    assert not sent.refused, sent.refused[:10]
    assert sent.acknowledged == expected
    assert set(keys) == expected  # nothing lost, nothing extra ...
    assert max(keys.values()) == 1  # ... and nothing twice
    assert len(recoveries) >= 2, "each kill abandons at least one job"
    assert max(recoveries) <= RECOVERY_LIMIT_SECONDS
    assert retrying > 0  # status showed the outage ...
    assert not pending_work(status)  # ... and shows nothing left now
    assert found == []
    # the scan was not vacuous: card data went through to the sink, masked to its last four digits
    assert all("0005" in row["event"] and "1111" in row["event"] for row in stored if row["kind"] == "fop")


def current_status(env: dict[str, str]) -> dict[str, Any]:
    return dict(orjson.loads(cli("status", "--json", env=env).stdout))


def pending_work(status: dict[str, Any]) -> list[str]:
    """What `status` still counts as not done (empty when the pipeline is drained)."""
    left = [f"{name} {status[name]}" for name in ("pending", "inbox") if status[name]]
    left += [f"jobs {state} {count}" for state, count in status["jobs"].items() if count]
    for sink, counts in status["sinks"].items():
        left += [f"{sink} {what} {count}" for what, count in counts.items() if count]
    return left
