"""`run --simulate`: the whole flow in one command (real processes, embedded Redis, the simulator)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from concur_postback.concur.notification import Kind
from concur_postback.embedded import free_port
from concur_postback.simulator.load import fetch_ess_events, fire, plan_postbacks
from tests.processes import Process, clean_env

pytestmark = pytest.mark.slow


def test_run_simulate_fetches_from_its_own_simulator(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = clean_env(
        DATA_DIR=str(tmp_path / "data"), SINKS=f"file://{events}", CONCUR_BASE_URL="https://x.invalid"
    )
    port = free_port()
    process = Process(["run", "--simulate", "--port", str(port)], env)
    try:
        simulator_url = str(process.wait_for("run.simulator")["url"])
        assert simulator_url.startswith("http://127.0.0.1:")
        hint = str(process.wait_for("run.try_it")["command"])
        assert f"--to http://127.0.0.1:{port}/postback" in hint and simulator_url in hint
        # The web tier's line, not the simulator's (both are children writing to this stdout).
        process.wait_for(f"Uvicorn running on http://127.0.0.1:{port}", prefix=True)
        planned = plan_postbacks(3, kinds=(Kind.ITINERARY,), concur_url=simulator_url)
        result = asyncio.run(fire(f"http://127.0.0.1:{port}/postback", planned, rate=0))
        assert result.statuses == {"accepted": 3}
        for _ in range(3):
            process.wait_for("notification.delivered", timeout=60)
        assert len(events.read_bytes().splitlines()) == 3
        seen = httpx.get(f"{simulator_url}/_simulator/requests", timeout=5).json()
        assert len([r for r in seen if r["path"].startswith("/api/travel/trip/v1.1/")]) == 3
        # ESS too: the simulator's signing key trusted and its company connected by `run` itself
        signed = fetch_ess_events(simulator_url, 4)  # one event of every topic
        result = asyncio.run(fire(f"http://127.0.0.1:{port}/events", signed, rate=0))
        assert result.statuses == {"accepted": 4}
        for _ in range(4):
            process.wait_for("notification.delivered", timeout=60)
        kinds = sorted(orjson.loads(line)["kind"] for line in events.read_bytes().splitlines()[3:])
        assert kinds == ["event", "identity", "itinerary", "profile"]
    finally:
        assert process.stop(ctrl_c=True) == 0
    assert "run.stopped" in process.output
    # Ctrl-C reaches every process of the group: the embedded Redis must outlive the worker
    assert "Connection refused" not in process.output
