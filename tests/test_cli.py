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
    redis_url = str(process.wait_for("run.embedded_redis")["url"])
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
    assert "pending notifications : 5" in cli("status", env=env).stdout
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


def test_serve_without_configuration_says_what_is_missing() -> None:
    result = cli("serve", env=clean_env())
    assert result.returncode != 0
    assert "REDIS_URL and TOKEN_ENCRYPTION_KEY must be set" in result.stderr


def test_invalid_setting_is_refused_at_start() -> None:
    result = cli("status", env=clean_env(MAX_BODY_BYTES="tiny"))
    assert result.returncode != 0
    assert "max_body_bytes" in result.stderr


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
