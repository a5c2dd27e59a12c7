"""The chaos run: real processes, real Redis with AOF, real PostgreSQL, and a bad day for each of them.

1,000 distinct notifications (all three kinds, user and company, 100 of them sent three times) are
posted at 20/s while: a worker is SIGKILLed mid-job (twice), Redis is SIGKILLed and restarted, Concur
answers 429, 503 and then hangs past the read timeout, the web tier gets SIGTERM under load and is
restarted, the PostgreSQL sink is unreachable for 60 s, the workers are replaced one by one by
workers with a second sink (a rolling deploy), Concur answers one 429 with Retry-After: 90 and then
503 to everything for 3 minutes. After that a profile changes A → B → A, and a lone notification
(the inbox otherwise empty) is mid-fetch when Redis goes down for 5 s.

Then: every notification acknowledged is in the first sink exactly once by event id, and in the
second if it was handed over after the rollout; nothing is in any failed registry (RQ's, failed
notifications, dead letters); `status` shows nothing left; Redis holds only its baseline plus the
dedup keys; and no token or card number appears in any log line, Redis value, AOF file or sink row.
The timeline and figures are printed.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq.intermediate_queue import IntermediateQueue
from rq.registry import FinishedJobRegistry

from concur_postback.concur.oauth import TOKEN_PATH
from concur_postback.concur.redaction import mask
from concur_postback.connections import sync_client
from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.simulator.company import company_id
from concur_postback.simulator.documents import TEMPLATES
from concur_postback.simulator.load import fetch_ess_events
from concur_postback.tokens import generate_key
from tests.chaos.harness import (
    QUEUE,
    Cluster,
    Rows,
    Sent,
    Shot,
    Timeline,
    files_contents,
    leaks,
    notification_id,
    redis_contents,
    send_in_background,
    still_started,
)
from tests.netfaults import TcpProxy
from tests.processes import Process, clean_env, cli

pytestmark = pytest.mark.slow

DISTINCT = 1000
DUPLICATED = 100  # sent three times each
RATE = 20.0  # postbacks per second
SINK_DOWN_SECONDS = 60
CONCUR_DOWN_SECONDS = 180
RETRY_AFTER_SECONDS = 90
RECOVERY_LIMIT_SECONDS = 60
ADMIN_TOKEN = "chaos-admin-" + secrets.token_hex(16)
CARD_NUMBERS = ("378282246310005", "4111111111111111")  # what the simulated Concur serves in FOP
KINDS = ("itinerary",) * 4 + ("profile",) * 3 + ("fop",) * 3
TYPES = {"itinerary": "Itinerary", "profile": "Profile", "fop": "FOP"}
EVENTS = ("CREATE", "UPDATE", "CANCEL")
# Redis keys allowed to stay once everything is delivered: the dedup keys, and small bookkeeping
# that expires or is bounded by the number of sinks, hosts and workers.
LASTING = ("cp:seen:", "cp:sinks", "cp:sink-live:", "cp:budget:", "cp:sweep:lock", "rq:",
           "cp:company:", "cp:companies")  # fmt: skip
ESS_EVENTS = 100  # ESS events about the simulator's company, every topic, every tenth redelivered


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


def with_ess_events(shots: list[Shot], simulator_url: str, env: dict[str, str], tmp_path: Path) -> list[Shot]:
    """ESS events signed by the simulator, one after every ten postbacks; the deployment trusts the
    simulator's key, takes company tokens from it and has its company connected."""
    key = tmp_path / "simulator-ess-key.pem"
    key.write_bytes(httpx.get(f"{simulator_url}/_simulator/ess-public-key", timeout=10).content)
    env.update(ESS_PUBLIC_KEYS=str(key), CONCUR_CLIENT_ID="chaos-client", CONCUR_CLIENT_SECRET="chaos-secret",
               CONCUR_TOKEN_URL=simulator_url + TOKEN_PATH)  # fmt: skip
    connected = cli(
        "company", "connect", "--company-id", company_id(), "--request-token", "-", env=env, stdin="r\n"
    )
    assert connected.returncode == 0, connected.stderr
    events = [
        Shot("ess:" + str(orjson.loads(event.body)["id"]), {}, event.body, "/events", event.headers)
        for event in fetch_ess_events(simulator_url, ESS_EVENTS)
    ]
    mixed = list(shots)
    for n, event in enumerate(events):
        mixed.insert(min(len(mixed), (n + 1) * 11), event)
    return mixed


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


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)  # polling PostgreSQL and Redis: the run's end is not an event we can await
    return True


def post(web_port: int, **params: str) -> str:
    response = httpx.post(f"http://127.0.0.1:{web_port}/postback", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_nothing_is_lost_duplicated_or_leaked_through_a_bad_day(
    tmp_path: Path,
    server_url: str,
    tables: tuple[list[str], Callable[[str], Rows]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (first_table, second_table), reader = tables
    rows, second_rows = reader(first_table), reader(second_table)
    redis_server = EmbeddedRedis(tmp_path / "redis", appendfsync="everysec").start()
    database = urlsplit(server_url)
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432)
    proxy.up()
    user = database.netloc.rpartition("@")[0]
    sink = database._replace(netloc=f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}")
    sink_url = f"{sink.geturl()}?connect_timeout=2&table="
    sim_port = free_port()
    simulator_url = f"http://127.0.0.1:{sim_port}"
    env = clean_env(
        REDIS_URL=redis_server.url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        CONCUR_BASE_URL=simulator_url,
        CONCUR_ALLOWED_HOSTS="",
        SINKS=sink_url + first_table,
        CONCUR_READ_TIMEOUT_SECONDS="3",
        FETCH_BACKOFF_MAX_SECONDS="20",
        SINK_BACKOFF_MAX_SECONDS="10",
        WORKER_HEARTBEAT_TTL_SECONDS="8",
    )
    simulator = Process(["simulate", "--port", str(sim_port), "--latency-ms", "100"], env)
    simulator.wait_for("Uvicorn running on", prefix=True)
    shots, tokens = plan(simulator_url)
    shots = with_ess_events(shots, simulator_url, env, tmp_path)
    web_port = free_port()
    cluster = Cluster(env, web_port)
    redis = sync_client(redis_server.url, connect_timeout=2)
    baseline = data_by_owner(redis)
    expected = {shot.key for shot in shots}
    timeline = Timeline()
    recoveries: list[float] = []
    watchers = []
    concur = httpx.Client(base_url=simulator_url)
    try:
        timeline.mark(
            f"posting {len(shots)} postbacks and ESS events ({len(expected)} distinct) at {RATE:.0f}/s"
        )
        sender, result = send_in_background(f"http://127.0.0.1:{web_port}", shots, RATE)

        def at(second: float) -> None:
            if (wait := second - timeline.now()) > 0:
                time.sleep(wait)  # the script's schedule, not synchronisation

        def kill_worker(index: int) -> None:
            entries, killed_at = cluster.kill_worker_mid_job(index, redis)
            watchers.append(watch_recovery(redis_server.url, entries, killed_at, recoveries))
            timeline.mark(
                f"SIGKILL worker {index + 1} mid-job ({len(entries)} job(s) abandoned); replacement started"
            )

        def fault(**spec: Any) -> None:
            concur.post("/_simulator/faults", json=spec).raise_for_status()

        at(3)
        kill_worker(0)

        at(6)
        fault(match="/", status=429, times=40, retry_after="1")
        fault(match="/", status=503, times=40)
        fault(match="/", status=0, delay_ms=8000, times=10)  # past the 3 s read timeout
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

        at(28)
        cluster.roll({**env, "SINKS": f"{sink_url}{first_table} {sink_url}{second_table}"})
        rolled = timeline.mark("rolling deploy done: both workers replaced by workers with a second sink")
        rolled_at = timeline.start + rolled

        at(38)
        fault(match="/", status=429, times=1, retry_after=str(RETRY_AFTER_SECONDS))
        fault(match="/", status=503, seconds=CONCUR_DOWN_SECONDS + 2)
        concur_down = timeline.mark(
            f"Concur: one 429 with Retry-After: {RETRY_AFTER_SECONDS}, then 503 to everything for "
            f"{CONCUR_DOWN_SECONDS} s"
        )

        at(50)
        outage = current_status(env)
        retrying = sum(counts["retrying"] for counts in outage["sinks"].values())
        timeline.mark(
            f"status: {outage['pending']} pending, {outage['fetch_retries']} waiting for Concur, "
            f"{retrying} sink deliveries retrying"
        )

        at(sink_down + SINK_DOWN_SECONDS)
        proxy.up()
        timeline.mark("PostgreSQL sink reachable again")

        sender.join()
        sent: Sent = result[0]
        timeline.mark(f"sender done: {len(sent.acknowledged)} distinct acknowledged", at=sent.seconds)

        at(concur_down + CONCUR_DOWN_SECONDS / 2)
        midway = current_status(env)
        timeline.mark(
            f"status with Concur down: {midway['fetch_retries']} waiting for Concur, "
            f"{midway['failed_notifications']} failed, {midway['jobs']['failed']} failed jobs"
        )

        at(concur_down + CONCUR_DOWN_SECONDS + 2)
        timeline.mark("Concur answers again")
        if wait_until(lambda: {notification_id(row) for row in rows()} >= set(sent.ids), 120):
            timeline.mark(f"all {len(sent.ids)} acknowledged notifications in PostgreSQL")

        a_b_a = change_a_profile_a_b_a(concur, web_port, rows)
        timeline.mark("a profile changed A -> B -> A, each delivered")

        lone, lone_delivered = lone_notification_through_a_redis_outage(concur, web_port, redis_server, rows)
        timeline.mark(
            f"a lone notification, Redis gone mid-fetch for 5 s: delivered {lone_delivered:.1f} s after"
        )

        if wait_until(lambda: not pending_work(current_status(env)), 60):
            timeline.mark("status: nothing pending, queued, running, retrying or failed")
        for watcher in watchers:
            watcher.join()
        running = (cluster.web, *cluster.workers)
        unexpected_exits = [p.popen.args for p in running if p.popen.poll() is not None]
    finally:
        cluster.stop()
        simulator.stop()
        proxy.close()
        concur.close()

    stored, stored_second = rows(), second_rows()
    status = current_status(env)
    census = lasting_keys(redis)
    orphans = [describe_key(redis, key) for key in census[:20]]
    data = data_by_owner(redis)
    # RQ's own: jobs of the last result TTL (60 s), listed in its finished registry until they expire.
    finished = FinishedJobRegistry(QUEUE, connection=redis).key
    finished_expiries = [score for _, score in redis.zrange(finished, 0, -1, withscores=True)]
    outputs = {f"{p.popen.args[3]}-{p.popen.pid}": p.output for p in cluster.all()}
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, text in outputs.items():
        (logs / f"{name}.log").write_text(text)
    secrets_ = [token[:-4] for token in tokens] + list(CARD_NUMBERS)  # the last four may show
    secrets_ += ["sim-at-", "sim-rt-"]  # the simulator's company tokens, sealed wherever they are kept
    found = [
        *(leak for name, text in outputs.items() for leak in leaks(f"log of {name}", text, secrets_)),
        *leaks("Redis", redis_contents(redis), secrets_),
        *leaks("Redis data directory (AOF)", files_contents(redis_server.data_dir), secrets_),
        *leaks("PostgreSQL rows", "\n".join(map(str, stored + stored_second)), secrets_),
    ]
    redis.close()
    redis_server.stop()

    delivered = Counter(notification_id(row) for row in stored)
    after_rollout = {ident for ident, acknowledged in sent.ids.items() if acknowledged > rolled_at}
    with capsys.disabled():
        print("\n\nchaos run timeline\n" + timeline.render())
        print(f"\n  answers to the sender: {dict(sent.answers)}")
        print(f"  abandoned jobs re-queued after: {', '.join(f'{s:.1f} s' for s in sorted(recoveries))}")
        print(f"  first sink: {len(stored)} rows for {len(sent.ids)} acknowledged notifications")
        print(
            f"  second sink: {len(stored_second)} rows ({len(after_rollout)} acknowledged after the rollout)"
        )
        print(f"  Redis data at the start: {dict(baseline)}; at the end: {dict(data)}")
        print(f"  left over: {pending_work(status) or 'nothing'}")
        print(f"  logs of every process: {logs}")

    assert not unexpected_exits, f"a process died on its own: {unexpected_exits}"
    assert not sent.refused, sent.refused[:10]
    assert sent.acknowledged == expected
    assert set(delivered) == {*sent.ids, lone, *a_b_a}  # every acknowledged notification, nothing else ...
    assert max(delivered.values()) == 1  # ... once each
    postbacks = [row for row in stored if orjson.loads(row["event"])["source"] == "postback"]
    trips = Counter(row["trip_id"] for row in postbacks if row["kind"] == "itinerary")
    assert max(trips.values()) == 1  # one change, one event
    ess = Counter(orjson.loads(row["event"])["ess_event_id"] for row in stored if row not in postbacks)
    assert set(ess) == {key.removeprefix("ess:") for key in expected if key.startswith("ess:")}
    assert max(ess.values()) == 1  # an ESS event redelivered is one event
    second = {notification_id(row) for row in stored_second}
    assert second <= set(delivered) and after_rollout <= second
    assert len(recoveries) >= 2, "each kill abandons at least one job"
    assert max(recoveries) <= RECOVERY_LIMIT_SECONDS
    assert retrying > 0 and outage["fetch_retries"] > 0  # status showed both outages ...
    assert midway["fetch_retries"] > 0 and midway["failed_notifications"] == midway["jobs"]["failed"] == 0
    assert not pending_work(status)  # ... and shows nothing left now
    assert census == [], orphans  # Redis holds the dedup keys and bookkeeping, nothing else
    assert data["bookkeeping"] - baseline["bookkeeping"] <= 16 * 1024  # what LASTING allows: a few kB
    assert all(expiry <= time.time() + 60 for expiry in finished_expiries)
    assert found == []
    # the scan was not vacuous: card data went through to the sink, masked to its last four digits
    assert all("0005" in row["event"] and "1111" in row["event"] for row in stored if row["kind"] == "fop")


def change_a_profile_a_b_a(concur: httpx.Client, web_port: int, rows: Rows) -> list[str]:
    """Three profile notifications of one traveller, each processed before the next, Concur serving
    state A, B, then A again: three events with three ids, the last one A."""
    token = "chaos-aba-" + secrets.token_hex(12)
    a = TEMPLATES["profile_v2"].replace("{{LOGIN_ID}}", "aba@example.com")
    b = a.replace("<FirstName>", "<FirstName>B", 1)
    ids = []
    for body in (a, b, a):
        concur.post(
            "/_simulator/faults", json={"match": token, "status": 200, "body": body}
        ).raise_for_status()
        ids.append(post(web_port, type="Profile", oauth_token_key=token))
        assert wait_until(lambda: ids[-1] in {notification_id(row) for row in rows()}, 60)
    events = {
        notification_id(row): orjson.loads(row["event"]) for row in rows() if notification_id(row) in ids
    }
    assert len({events[ident]["id"] for ident in ids}) == 3
    assert events[ids[0]]["data"] == events[ids[2]]["data"] != events[ids[1]]["data"]
    return ids


def lone_notification_through_a_redis_outage(
    concur: httpx.Client, web_port: int, redis_server: EmbeddedRedis, rows: Rows
) -> tuple[str, float]:
    """A notification alone in the pipeline whose worker loses Redis mid-fetch, for longer than its
    Redis client retries: it must come back by itself (no inbox arrival to wake anything)."""
    token = "chaos-lone-" + secrets.token_hex(12)
    concur.post("/_simulator/faults", json={"match": token, "status": 0, "delay_ms": 2000}).raise_for_status()
    ident = post(web_port, type="FOP", oauth_token_key=token)
    seen = lambda: any(r["token"] == mask(token) for r in concur.get("/_simulator/requests").json())  # noqa: E731
    assert wait_until(seen, 30)
    began = time.monotonic()
    redis_server.kill()
    time.sleep(5)  # the fault: Redis gone for 5 s, from mid-fetch to past the hand-over
    redis_server.start()
    assert wait_until(lambda: ident in {notification_id(row) for row in rows()}, 60)
    return ident, time.monotonic() - began


def lasting_keys(redis: Redis) -> list[str]:
    """Keys that should not outlast the run: anything but the dedup keys and bounded bookkeeping, and
    any RQ job hash that would not expire — but for the one session job waiting in the queue (the
    starters keep it there; a queued job's hash expires only once it has run)."""
    queued = [job.decode() for queue in redis.scan_iter("rq:queue:*") if redis.type(queue) == b"list"
              for job in redis.lrange(queue, 0, -1)]  # fmt: skip
    waiting = {f"rq:job:{job}" for job in queued[:1]}
    left = []
    for raw in redis.scan_iter(count=1000):
        key = raw.decode()
        if not key.startswith(LASTING) or (
            key.startswith("rq:job:") and redis.ttl(key) == -1 and key not in waiting
        ):
            left.append(key)
    return sorted(left)


def describe_key(redis: Redis, key: str) -> str:
    """A left-over key with what tells how it was left: its type, expiry and, for an RQ job, its state
    and the RQ lists that still name it."""
    kind, ttl = redis.type(key).decode(), redis.ttl(key)
    if not key.startswith("rq:job:") or kind != "hash":
        return f"{key} ({kind}, ttl {ttl})"
    job_id = key.removeprefix("rq:job:")
    fields = {k.decode(): v.decode() for k, v in redis.hgetall(key).items() if k != b"data"}
    names = ("status", "created_at", "started_at", "ended_at", "worker_name")
    state = {name: fields.get(name) for name in names}
    lists = [
        name
        for name in (f"rq:queue:{QUEUE}", IntermediateQueue.get_intermediate_queue_key(f"rq:queue:{QUEUE}"))
        if job_id.encode() in redis.lrange(name, 0, -1)
    ]
    registries = [
        name
        for name in redis.scan_iter(match=f"rq:*:{QUEUE}", _type="zset")
        if any(m.decode().startswith(job_id) for m in redis.zrange(name, 0, -1))
    ]
    return f"{key} (hash, ttl {ttl}): {state}, listed in {lists + [r.decode() for r in registries]}"


def data_by_owner(redis: Redis) -> Counter[str]:
    """What the keys that stay take (MEMORY USAGE, without Redis's own buffers and caches), as dedup
    keys, RQ's own (its finished jobs of the last minute) and our bookkeeping; keys that expire within
    two minutes are not counted."""
    data: Counter[str] = Counter()
    for raw in redis.scan_iter(count=1000):
        if 0 < redis.ttl(raw) <= 120:
            continue
        key = raw.decode()
        owner = (
            "dedup keys" if key.startswith("cp:seen:") else "rq" if key.startswith("rq:") else "bookkeeping"
        )
        data[owner] += redis.memory_usage(raw) or 0
    return data


def current_status(env: dict[str, str]) -> dict[str, Any]:
    return dict(orjson.loads(cli("status", "--json", env=env).stdout))


def pending_work(status: dict[str, Any]) -> list[str]:
    """What `status` still counts as not done (empty when the pipeline is drained)."""
    names = ("pending", "inbox", "in_progress", "fetch_retries", "failed_notifications")
    left = [f"{name} {status[name]}" for name in names if status[name]]
    waiting = {"queued": 1}  # the next session, kept waiting by the starters (no notifications in it)
    jobs = status["jobs"].items()
    left += [f"jobs {state} {count}" for state, count in jobs if count > waiting.get(state, 0)]
    for sink, counts in status["sinks"].items():
        left += [f"{sink} {what} {count}" for what, count in counts.items() if count]
    left += [f"no live worker has {sink}" for sink in status["sinks_without_a_live_worker"]]
    return left
