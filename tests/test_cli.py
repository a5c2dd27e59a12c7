"""The console script end to end: real processes, real sockets, embedded Redis with AOF."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import orjson
import pytest

from concur_postback.embedded import free_port
from concur_postback.tokens import generate_key
from tests.conftest import NOTIFICATION, TOKEN
from tests.processes import Process, clean_env, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(DATA_DIR=str(tmp_path / "data"))


def start_run(env: dict[str, str]) -> tuple[Process, str, str]:
    port = free_port()
    process = Process(["run", "--port", str(port)], env)
    redis_url = str(process.wait_for("run.embedded_redis")["url"])
    process.wait_for("Uvicorn running on", prefix=True)  # listening (service.started precedes the bind)
    return process, f"http://127.0.0.1:{port}", redis_url


def test_run_with_embedded_redis_end_to_end_and_data_survives_restart(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    process, url, redis_url = start_run(run_env)
    params = {"type": "Itinerary", "oauth_token_key": TOKEN}
    try:
        first = httpx.post(url + "/postback", params=params, content=NOTIFICATION)
        assert first.status_code == 200 and first.json()["status"] == "accepted"
        processed = process.wait_for("notification.processed")
        assert processed["id"] == first.json()["id"]
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
        again = httpx.post(url + "/postback", params=params, content=NOTIFICATION)
        assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    finally:
        assert process.stop() == 0
    assert TOKEN not in process.output


def test_serve_then_burst_worker_and_status(redis_url: str) -> None:
    env = clean_env(REDIS_URL=redis_url, TOKEN_ENCRYPTION_KEY=generate_key())
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
    assert worker.stdout.count('"notification.processed"') == 5
    assert orjson.loads(cli("status", "--json", env=env).stdout)["pending"] == 0
    assert TOKEN not in server.output + worker.stdout + worker.stderr


@pytest.mark.parametrize("command", ["serve", "worker", "status", "run", "genkey"])
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help", env=clean_env())
    assert result.returncode == 0
    assert "Usage: " in result.stdout


def test_serve_without_configuration_says_what_is_missing() -> None:
    result = cli("serve", env=clean_env())
    assert result.returncode != 0
    assert "REDIS_URL and TOKEN_ENCRYPTION_KEY must be set" in result.stderr


def test_invalid_setting_is_refused_at_start() -> None:
    result = cli("status", env=clean_env(MAX_BODY_BYTES="tiny"))
    assert result.returncode != 0
    assert "max_body_bytes" in result.stderr
