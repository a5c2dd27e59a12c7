"""The console script end to end: real processes, real sockets, embedded Redis with AOF."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from concur_postback.embedded import free_port
from concur_postback.tokens import generate_key
from tests.conftest import TOKEN, Simulator
from tests.processes import Process, clean_env, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def run_env(tmp_path: Path, simulator: Simulator) -> dict[str, str]:
    return clean_env(DATA_DIR=str(tmp_path / "data"), CONCUR_BASE_URL=simulator.url, CONCUR_ALLOWED_HOSTS="")


def start_run(env: dict[str, str]) -> tuple[Process, str, str]:
    port = free_port()
    process = Process(["run", "--port", str(port)], env)
    started = process.wait_for("run.embedded_redis")
    assert "url" not in started  # it holds the password: the log names the address only
    password = (Path(env["DATA_DIR"]) / "redis" / "password").read_text().strip()
    assert password not in process.output
    redis_url = f"redis://:{password}@{started['address']}/0"
    process.wait_for("Uvicorn running on", prefix=True)  # listening (service.started precedes the bind)
    return process, f"http://127.0.0.1:{port}", redis_url


def test_run_with_embedded_redis_end_to_end_and_data_survives_restart(
    run_env: dict[str, str], tmp_path: Path, simulator: Simulator
) -> None:
    process, url, redis_url = start_run(run_env)
    params = {"type": "Itinerary", "oauth_token_key": TOKEN}
    note = simulator.notification("TRIPRUN1", "CREATE")
    try:
        first = httpx.post(url + "/postback", params=params, content=note)
        assert first.status_code == 200 and first.json()["status"] == "accepted"
        sink_line = process.wait_for("sink.event")  # the default sink: a log line per event
        assert sink_line["payload"]["trip_id"] == "TRIPRUN1"
        delivered = process.wait_for("notification.delivered")
        assert delivered["id"] == first.json()["id"]
        status = cli("status", "--json", env={**run_env, "REDIS_URL": redis_url})
        assert status.returncode == 0, status.stderr
        assert orjson.loads(status.stdout)["pending"] == 0
    finally:
        assert process.stop() == 0
    assert "run.stopped" in process.output
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists() or (
        tmp_path / "data" / "redis" / "appendonlydir"
    ).exists()
    assert (tmp_path / "data" / "token.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")

    process, url, _ = start_run(run_env)  # same data directory: the same Redis data and key
    try:
        again = httpx.post(url + "/postback", params=params, content=note)
        assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    finally:
        assert process.stop() == 0
    assert TOKEN not in process.output


def test_serve_then_burst_worker_and_status(redis_url: str, simulator: Simulator, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = clean_env(
        REDIS_URL=redis_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        CONCUR_BASE_URL=simulator.url,
        SINKS=f"file://{events}",
    )
    port = free_port()
    server = Process(["serve", "--port", str(port), "--host", "127.0.0.1"], env)
    try:
        server.wait_for("Uvicorn running on", prefix=True)
        for n in range(5):
            response = httpx.post(
                f"http://127.0.0.1:{port}/postback", params={"type": "FOP", "oauth_token_key": f"{TOKEN}{n}"}
            )
            assert response.status_code == 200
    finally:
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
        assert server.stop() in (0, -signal.SIGTERM)
    assert "service.stopped" in server.output
    assert orjson.loads(cli("status", "--json", env=env).stdout)["pending"] == 5
    shown = cli("status", env=env).stdout
    assert "pending notifications : 5" in shown
    assert "sessions (RQ jobs)    : 0 queued, 0 running, 0 failed" in shown  # no worker yet
    worker = cli("worker", "--burst", env=env)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert worker.stdout.count('"notification.delivered"') == 5
    assert len(events.read_bytes().splitlines()) == 5
    assert orjson.loads(cli("status", "--json", env=env).stdout)["pending"] == 0
    assert TOKEN not in server.output + worker.stdout + worker.stderr


@pytest.mark.parametrize("command", ["serve", "worker", "status", "run", "simulate", "genkey"])
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help", env=clean_env())
    assert result.returncode == 0
    assert "Usage: " in result.stdout


def test_status_json_is_the_only_thing_on_stdout(redis_url: str) -> None:
    """Scripts parse `status --json`: log lines (redis-py logs at DEBUG) go to stderr."""
    result = cli("status", "--json", env=clean_env(REDIS_URL=redis_url, LOG_LEVEL="DEBUG"))
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["pending"] == 0
    assert '"level":"debug"' in result.stderr


# Every command that reads the settings, with arguments that get it past click's own checks. genkey and
# `simulate fire` read none. Should one of them not refuse to start, `cli`'s timeout fails the test.
COMMANDS = {
    "serve": ["serve", "--port", "0"],
    "worker": ["worker", "--burst"],
    "run": ["run", "--port", "0"],
    "status": ["status"],
    "failed list": ["failed", "list"],
    "failed show": ["failed", "show", "no-such-id"],
    "failed requeue": ["failed", "requeue", "--all"],
    "failed purge": ["failed", "purge", "--yes"],
    "subscribe": ["subscribe", "--type", "fop", "--token", TOKEN],
    "unsubscribe": ["unsubscribe", "--type", "fop", "--token", TOKEN],
    "backfill": ["backfill", "--since", "2026-01-01", "--token", TOKEN],
    "rekey": ["rekey"],
    "simulate": ["simulate", "--port", "0"],
}
USE_THE_KEY = ["serve", "worker", "run", "backfill", "failed show", "rekey"]
USE_THE_SINKS = ["worker", "run"]
# serve is not among them: by design it starts without Redis (/readyz says 503, postbacks get 503).
USE_REDIS = [
    "worker",
    "run",
    "status",
    "failed list",
    "failed show",
    "failed requeue",
    "failed purge",
    "backfill",
    "rekey",
]
REDIS_PASSWORD = "hunter2-redis-password"
BAD_KEY = "c2hvcnQta2V5LXNlY3JldA=="  # base64 of 16 bytes, not 32


@pytest.fixture
def startup_env(tmp_path: Path) -> dict[str, str]:
    """A valid key, a Redis (with a password) that nothing listens for, and nothing left in the cwd."""
    return clean_env(
        TOKEN_ENCRYPTION_KEY=generate_key(),
        REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        REDIS_TIMEOUT_SECONDS="0.5",
        DATA_DIR=str(tmp_path / "data"),
    )


# What is wrong, the settings that make it so, what the line says, and which commands must refuse it.
PROBLEMS: list[tuple[str, dict[str, str], str, list[str]]] = [
    ("invalid value", {"MAX_BODY_BYTES": "tiny"}, "invalid configuration: MAX_BODY_BYTES: ", list(COMMANDS)),
    (
        "not a Redis URL",
        {"REDIS_URL": f"http://:{REDIS_PASSWORD}@127.0.0.1/0"},
        "invalid configuration: REDIS_URL: must be a redis://",
        USE_REDIS,
    ),
    (
        "no Redis URL",
        {"REDIS_URL": ""},
        "REDIS_URL",
        ["serve", "worker", "status", "failed list", "backfill", "rekey"],
    ),
    (
        "malformed key",
        {"TOKEN_ENCRYPTION_KEY": BAD_KEY},
        "TOKEN_ENCRYPTION_KEY must be 32 random bytes",
        USE_THE_KEY,
    ),
    (
        "relative file sink",
        {"SINKS": "file://relative.jsonl"},
        "file sink needs an absolute path",
        USE_THE_SINKS,
    ),
    ("Redis down", {}, "Redis (REDIS_URL) unavailable: ", USE_REDIS),
]
CASES = [
    pytest.param(command, change, says, id=f"{command}: {problem}")
    for problem, change, says, commands in PROBLEMS
    for command in commands
]


@pytest.mark.parametrize(
    ("command", "change", "says"),
    CASES,
)
def test_a_command_refuses_a_configuration_error_or_unreachable_redis_in_one_line(
    startup_env: dict[str, str], tmp_path: Path, command: str, change: dict[str, str], says: str
) -> None:
    result = cli(*COMMANDS[command], env={**startup_env, **change})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("concur-postback: ") and says in line
    for secret in (REDIS_PASSWORD, BAD_KEY, startup_env["TOKEN_ENCRYPTION_KEY"], TOKEN):
        assert secret not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "redis").exists()  # run started no embedded Redis either


def serve_one_itinerary(
    redis_url: str, simulator: Simulator, events: Path, trip: str, **settings: str
) -> tuple[dict[str, str], Process, str]:
    """Start `serve` with a file sink, post one itinerary about ``trip``; return env, server and its id."""
    env = clean_env(
        REDIS_URL=redis_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        CONCUR_BASE_URL=simulator.url,
        SINKS=f"file://{events}",
        WORKER_HEARTBEAT_TTL_SECONDS="4",
        **settings,
    )
    port = free_port()
    server = Process(["serve", "--port", str(port), "--host", "127.0.0.1"], env)
    server.wait_for("Uvicorn running on", prefix=True)
    posted = httpx.post(
        f"http://127.0.0.1:{port}/postback",
        params={"type": "Itinerary", "oauth_token_key": TOKEN},
        content=simulator.notification(trip),
    )
    return env, server, str(posted.json()["id"])


def delivered_ids(events: Path) -> list[str]:
    return [orjson.loads(line)["notification_id"] for line in events.read_bytes().splitlines()]


def test_a_job_abandoned_by_a_killed_worker_is_delivered_exactly_once(
    redis_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    simulator.fault(match="/TRIPKILL", status=0, delay_ms=30_000, times=1)  # Concur hangs on the first try
    env, server, ident = serve_one_itinerary(
        redis_url, simulator, events, "TRIPKILL", JOB_TIMEOUT_SECONDS="20", WORKER_MAINTENANCE_SECONDS="2"
    )

    first = Process(["worker"], env)
    assert simulator.arrivals.get(timeout=30).path.endswith("/TRIPKILL")  # the fetch is in flight ...
    first.popen.kill()  # ... when the worker dies
    first.popen.wait()
    killed_at = time.monotonic()

    second = Process(["worker"], env)
    delivered = second.wait_for("notification.delivered", timeout=150)
    recovered_after = time.monotonic() - killed_at
    assert delivered["id"] == ident
    assert recovered_after < 30  # the heartbeat lapses after 4 s; a clean-up runs every 2 s
    assert delivered_ids(events) == [ident]
    second.stop()
    server.stop()


def test_a_job_outliving_its_heartbeat_ttl_is_not_taken_from_a_live_worker(
    redis_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    """The running job beats from a thread: with a 4 s TTL and Concur answering after 12 s, a second
    worker cleaning the registry every second must leave the job alone (one fetch, one delivery)."""
    events = tmp_path / "events.jsonl"
    simulator.fault(match="/TRIPSLOW", status=0, delay_ms=12_000, times=1)
    env, server, ident = serve_one_itinerary(
        redis_url, simulator, events, "TRIPSLOW", JOB_TIMEOUT_SECONDS="30", WORKER_MAINTENANCE_SECONDS="1"
    )

    busy = Process(["worker"], env)
    assert simulator.arrivals.get(timeout=30).path.endswith("/TRIPSLOW")
    idle = Process(["worker"], env)  # cleans the registries every second while the fetch hangs
    idle.wait_for("Worker ", prefix=True)  # started: RQ logs "Worker <name>: started with PID …"
    assert busy.wait_for("notification.delivered", timeout=60)["id"] == ident
    idle.stop()
    busy.stop()
    server.stop()
    assert [r["path"] for r in simulator.requests()].count("/api/travel/trip/v1.1/TRIPSLOW") == 1
    assert "notification.delivered" not in idle.output
    assert delivered_ids(events) == [ident]


def test_a_retry_horizon_longer_than_the_token_ttl_is_refused_at_start() -> None:
    env = clean_env(
        REDIS_URL="redis://127.0.0.1:1/0", TOKEN_TTL_SECONDS="3600", FETCH_RETRY_HORIZON_SECONDS="7200"
    )
    result = cli("status", env=env)
    assert result.returncode != 0
    assert "FETCH_RETRY_HORIZON_SECONDS (7200) must not exceed TOKEN_TTL_SECONDS (3600)" in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_an_admin_listener_keeps_probes_and_metrics_off_the_public_port(
    redis_url: str, tmp_path: Path, workers: int
) -> None:
    port, admin = free_port(), free_port()
    env = clean_env(REDIS_URL=redis_url, TOKEN_ENCRYPTION_KEY=generate_key(), ADMIN_PORT=str(admin))
    args = ["serve", "--port", str(port), "--host", "127.0.0.1", "--workers", str(workers)]
    server = Process(args, env)
    try:
        # Both sockets listen from here on: a connection waits in the backlog for a worker process.
        server.wait_for("Uvicorn running on", prefix=True)
        public, private = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        params = {"type": "FOP", "oauth_token_key": TOKEN}
        assert httpx.post(public + "/postback", params=params).status_code == 200
        for path in ("/metrics", "/healthz", "/readyz"):
            assert httpx.get(public + path).status_code == 404  # queue depths are nobody else's business
            assert httpx.get(private + path).status_code == 200
        assert httpx.post(private + "/postback", params=params).status_code == 404
        assert "queue_depth" in httpx.get(private + "/metrics").text
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


def test_an_admin_port_that_is_the_public_port_is_refused(redis_url: str) -> None:
    env = clean_env(REDIS_URL=redis_url, TOKEN_ENCRYPTION_KEY=generate_key(), ADMIN_PORT="8123")
    refused = cli("serve", "--port", "8123", env=env)
    assert refused.returncode == 2 and "ADMIN_PORT 8123 is also the public --port" in refused.stderr
